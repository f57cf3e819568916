// The training loop of one rank: data -> forward/backward over micro-batches -> clip -> AdamW,
// with logging, metrics, validation and checkpoints.
#include <sys/resource.h>
#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>

#include <fmt/format.h>

#include "hokusai/checkpoint.hpp"
#include "hokusai/data.hpp"
#include "hokusai/log.hpp"
#include "hokusai/train.hpp"
#include "kernels/peak.hpp"
#include "parallel/gradient_sync.hpp"
#include "train/step_meter.hpp"
// MPI builds (HOKUSAI_HAVE_MPI) run data parallelism; a build without MPI (the emulated ARM
// build) is one process and compiles the multi-rank paths out: comms_ is always null there.
#if HOKUSAI_HAVE_MPI
#include "comm/collectives.hpp"
#include "comm/grid_comm.hpp"
#include "parallel/pipeline.hpp"
#include "parallel/tensor_parallel.hpp"
#endif

namespace hokusai {

namespace fs = std::filesystem;

namespace {

std::string default_run_dir(const std::string& name) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return (fs::path("runs") / ((name.empty() ? "run" : name) + "-" + stamp)).string();
}

// "4..7" or, interleaved, "2..3, 10..11"
std::string stage_layer_list(const ModelDims& d) {
  std::string out;
  for (int c = 0; c < d.chunks; ++c) {
    const int64_t first = d.global_layer(c * d.chunk_layers());
    out += fmt::format("{}{}..{}", c ? ", " : "", first, first + d.chunk_layers() - 1);
  }
  return out;
}

std::string format_duration(double seconds) {
  const auto s = int64_t(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}


// Sum of x over the pipeline stages and the data-parallel ranks (identity on one process).
double sum_over_pp_and_dp(const comm::GridComms* comms, double x) {
#if HOKUSAI_HAVE_MPI
  if (!comms) return x;
  x = comms->pp.allreduce(x, comm::Reduce::sum);
  x = comms->dp.allreduce(x, comm::Reduce::sum);
#else
  (void)comms;
#endif
  return x;
}

int dp_size(const comm::GridComms* comms) {
#if HOKUSAI_HAVE_MPI
  if (comms) return comms->dp.size();
#endif
  return 1;
}

void world_barrier(const comm::GridComms* comms) {
#if HOKUSAI_HAVE_MPI
  if (comms) comms->world.barrier();
#endif
}

// One rank's training run, one member function per phase: setup (constructor), an optimizer
// step, logging, validation, checkpoints. train() drives it.
class Trainer {
 public:
  Trainer(Config cfg, const TrainOptions& opts);
  TrainSummary run();

 private:
  void check_layout() const;
  void open_run_dir();
  void setup_model();
  void report_setup();
  void measure_dp_baseline();
  void report_comm() const;
  StepStats step();
  double update(double lr);  // clip + AdamW (+ ZeRO-1 collectives); returns the gradient norm
  double evaluate();
  void evaluate_and_log();
  // Runs the step's micro-batches (1F1B over the pipeline when pp > 1); returns the loss sum of
  // this rank's micro-batches on the last stage (0 on other stages).
  double forward_backward(const Model<float>::GradsReady& ready_last);
  void save();
  bool stop_requested() const;
  // Where this rank's checkpoints go: the run directory, or with model parallelism one
  // directory per pipeline stage and tp rank, <run_dir>[/pp-stage-<s>][/tp-rank-<r>] (each holds
  // its slice of the arenas; serial_index maps a tp slice back).
  std::string checkpoint_root() const {
    return checkpoint_shard_root(cfg_.logging.run_dir, pp_size_, pp_rank_, tp_size_, tp_rank_);
  }

  using clock = std::chrono::steady_clock;
  Config cfg_;
  const TrainOptions& opts_;
  const comm::GridComms* comms_;
  const clock::time_point t_start_ = clock::now();
  int world_ = 1, rank_ = 0, dp_rank_ = 0, tp_size_ = 1, tp_rank_ = 0, pp_size_ = 1, pp_rank_ = 0;
  bool lead_ = true;  // rank 0 writes logs, metrics and config; dp rank 0 of each tp slice its checkpoint
  TrainSummary summary_;
  std::optional<std::string> resume_from_;
  std::unique_ptr<Log> log_;
  std::shared_ptr<spdlog::logger> lg_;
  int threads_ = 1;
  kernels::GemmWorkspace gemm_workspace_;  // native GEMM packing buffers, reused every call
  ComputeContext ctx_;
  std::unique_ptr<DataLoader> data_;
  bool can_eval_ = false;
  std::unique_ptr<Model<float>> model_;
  int64_t B_ = 0, T_ = 0, n_params_ = 0, step_ = 0, first_step_ = 0;
  std::unique_ptr<parallel::GradientSync> sync_;  // dp buckets, tied-embedding sum, ZeRO-1, global norm
  TensorParallelOps tp_ops_;  // the model's tp reductions (tp > 1)
  std::unique_ptr<AdamW> adam_;
  uint64_t thash_ = 0;
  int accum_ = 1;
  double tokens_per_step_ = 0, flops_per_token_ = 0, peak_ = 0;
  std::ofstream metrics_;
  std::unique_ptr<ProgressLine> progress_;
  std::unique_ptr<StepMeter> meter_;  // log lines and metrics.jsonl of the steps since the last log
#if HOKUSAI_HAVE_MPI
  std::optional<parallel::Pipeline> pipe_;
#endif
  double tp_comm_s_ = 0.0;      // time inside tensor-parallel reductions (accumulated by tp_ops_)
  double memory_estimate_mb_ = 0.0;  // the start-up memory account's peak, checked against the peak RSS
  double dp_blocking_s_ = 0.0, dp_exposed_total_ = 0.0;
  std::vector<int32_t> tokens_, targets_;
};

Trainer::Trainer(Config cfg, const TrainOptions& opts) : cfg_(std::move(cfg)), opts_(opts), comms_(opts.comms) {
  validate(cfg_);
#if HOKUSAI_HAVE_MPI
  world_ = comms_ ? comms_->world.size() : 1;
  rank_ = comms_ ? comms_->world.rank() : 0;
  dp_rank_ = comms_ ? comms_->dp.rank() : 0;
  tp_size_ = comms_ ? comms_->tp.size() : 1;
  tp_rank_ = comms_ ? comms_->tp.rank() : 0;
  pp_size_ = comms_ ? comms_->pp.size() : 1;
  pp_rank_ = comms_ ? comms_->pp.rank() : 0;
#endif
  lead_ = rank_ == 0;
  check_layout();
  open_run_dir();

  threads_ = cfg_.kernels.threads > 0                         ? cfg_.kernels.threads
             : opts_.default_threads > 0 && !std::getenv("OMP_NUM_THREADS") ? opts_.default_threads
                                                                        : omp_get_max_threads();
  omp_set_num_threads(threads_);
  ctx_.gemm.backend = kernels::parse_gemm_backend(cfg_.kernels.gemm);
  ctx_.gemm.threads = threads_;
  ctx_.gemm.workspace = &gemm_workspace_;
  if (!kernels::gemm_backend_available(ctx_.gemm.backend))
    throw ConfigError("kernels.gemm: " + cfg_.kernels.gemm + " is not in this build: choose another backend");

  const std::vector<std::string> search = {fs::path(cfg_.source).parent_path().string(), HOKUSAI_SOURCE_DIR};
  const int64_t samples[3] = {cfg_.train.steps * cfg_.train.global_batch,
                              int64_t(cfg_.logging.eval_batches) * cfg_.train.micro_batch, 0};
  auto data_log = log_->get("data");
  data_ = std::make_unique<DataLoader>(cfg_, search, samples, [&](const std::string& m) { data_log->info("{}", m); });
  can_eval_ = data_->has(DataLoader::valid);

  setup_model();
  report_setup();
  if (lead_) metrics_.open(fs::path(summary_.run_dir) / "metrics.jsonl", std::ios::app);
  // Under mpirun, stdout is a pseudo-terminal forwarded into the job's output: no redrawn line.
  progress_ = std::make_unique<ProgressLine>(lead_ && world_ == 1 && cfg_.logging.progress && !opts_.quiet);
  meter_ = std::make_unique<StepMeter>(StepMeter::Rates{tokens_per_step_, flops_per_token_, peak_, world_}, comms_,
                                       lead_ ? &metrics_ : nullptr, lg_, *progress_);
  measure_dp_baseline();
  tokens_.resize(size_t(B_ * T_));
  targets_.resize(size_t(B_ * T_));
}

void Trainer::check_layout() const {
#if !HOKUSAI_HAVE_MPI
  for (const auto& [axis, ranks] : {std::pair{"pp", cfg_.parallel.pp}, {"tp", cfg_.parallel.tp}, {"dp", cfg_.parallel.dp}})
    if (ranks != 1)
      throw ConfigError(fmt::format("parallel.{}={}: this build has no MPI (HOKUSAI_WITH_MPI=OFF) and runs one "
                                    "process: set parallel.{} to 1 or use an MPI build",
                                    axis, ranks, axis));
#endif
  if (cfg_.parallel.tp * cfg_.parallel.pp * cfg_.parallel.dp != world_)
    throw ConfigError(fmt::format("parallel.tp*pp*dp = {}*{}*{} but the job has {} rank(s): make their product the "
                                  "rank count (mpirun -np)",
                                  cfg_.parallel.tp, cfg_.parallel.pp, cfg_.parallel.dp, world_));
}

void Trainer::open_run_dir() {
  if (cfg_.logging.run_dir.empty()) {
    if (opts_.resume) throw ConfigError("--resume needs logging.run_dir: the run directory to continue");
    cfg_.logging.run_dir = default_run_dir(opts_.name);
  }
  const std::string& run_dir = cfg_.logging.run_dir;
  summary_.run_dir = run_dir;
  if (opts_.resume) {
    resume_from_ = latest_checkpoint(checkpoint_root());
    if (!resume_from_)
      throw ConfigError(fmt::format("--resume: rank {} finds no checkpoint in '{}/checkpoints' (check logging.run_dir "
                                    "and that the layout matches the saved run's)",
                                    rank_, checkpoint_root()));
    // Shards save one after another: a job killed in between leaves some a step ahead. Every
    // rank resumes from the newest step all of them have.
    double step = double(checkpoint_step(*resume_from_));
#if HOKUSAI_HAVE_MPI
    if (comms_) step = comms_->world.allreduce(step, comm::Reduce::min);
#endif
    resume_from_ = checkpoint_at(checkpoint_root(), int64_t(step));
    if (!resume_from_)
      throw ConfigError(fmt::format("--resume: rank {} has no checkpoint of step {} in '{}/checkpoints', the newest "
                                    "step every shard has: raise checkpoint.keep (the shards were pruned apart)",
                                    rank_, int64_t(step), checkpoint_root()));
  }
  if (lead_) fs::create_directories(run_dir);
  world_barrier(comms_);  // the run directory exists before anyone writes
  log_ = std::make_unique<Log>(rank_, lead_ && !opts_.quiet, lead_ ? (fs::path(run_dir) / "train.log").string() : "");
  lg_ = log_->get("train");
  if (lead_) std::ofstream(fs::path(run_dir) / "config.yaml") << dump_config(cfg_);
}

void Trainer::setup_model() {
  comm::ParallelGrid grid = comm::ParallelGrid::single();
#if HOKUSAI_HAVE_MPI
  if (comms_) grid = comms_->grid;
  if (comms_ && comms_->tp.size() > 1) {
    tp_ops_ = parallel::tensor_parallel_ops(comms_->tp, &tp_comm_s_, comm::parse_allreduce_algorithm(cfg_.comm.tp_allreduce));
    ctx_.tp = &tp_ops_;
  }
#endif
  const ModelDims dims =
      ModelDims::from(cfg_.model, grid, cfg_.parallel.stage_layers, pp_size_ > 1 ? cfg_.parallel.virtual_stages : 1);
  B_ = cfg_.train.micro_batch;
  T_ = cfg_.train.seq_len;
  accum_ = cfg_.train.global_batch / (cfg_.train.micro_batch * cfg_.parallel.dp);
  const auto& rs = cfg_.parallel.recompute_stages;
  const bool recomputes = rs.empty() || std::find(rs.begin(), rs.end(), pp_rank_) != rs.end();
  const Recompute recompute = recomputes ? parse_recompute(cfg_.parallel.recompute) : Recompute::none;
  int slots = 1;
#if HOKUSAI_HAVE_MPI
  if (pp_size_ > 1) slots = parallel::Pipeline::slots(pp_size_, pp_rank_, accum_, dims.chunks);
#endif
  model_ = std::make_unique<Model<float>>(dims, B_, T_, slots, recompute);
#if HOKUSAI_HAVE_MPI
  if (pp_size_ > 1) pipe_.emplace(comms_->pp, *model_, B_, T_);
#endif
  model_->init(cfg_.train.seed);
  n_params_ = arena_size(model_->table());
  sync_ = std::make_unique<parallel::GradientSync>(comms_, *model_, cfg_);
  // ZeRO-1: this data-parallel rank owns parameters shard.begin .. shard.end of the arena.
  const comm::Range shard = sync_->shard();
  adam_ = std::make_unique<AdamW>(model_->table(), cfg_.optimizer, shard);
  thash_ = table_hash(model_->table());
  if (resume_from_) {
    CheckpointData ck = load_checkpoint(*resume_from_, thash_, true);
    model_->load_params(ck.params);
    adam_->m.assign(ck.m.begin() + shard.begin, ck.m.begin() + shard.end);
    adam_->v.assign(ck.v.begin() + shard.begin, ck.v.begin() + shard.end);
    adam_->t = ck.adam_t;
    step_ = ck.step;
    lg_->info("resumed from {} at step {}", *resume_from_, step_);
  }
  first_step_ = step_;
  tokens_per_step_ = double(cfg_.train.global_batch) * double(T_);
  flops_per_token_ = train_flops_per_token(cfg_.model, T_);
}

void Trainer::report_setup() {
  peak_ = cfg_.kernels.peak_gflops;
  if (peak_ <= 0) {
    const auto probe = kernels::probe_peak_fp32(threads_);
    peak_ = probe.peak_gflops();
    lg_->info("peak probe ({}): {:.1f} GFLOP/s per core; MFU peak {:.1f} GFLOP/s for {} threads "
              "(all threads measured together now: {:.1f})",
              probe.isa, probe.per_core_gflops, peak_, threads_, probe.all_gflops);
  }
  const ModelDims& d = model_->dims();
  lg_->info("model: {} L={} C={} NH={} F={} V={} (padded {}), {:.2f}M parameters{}, {:.1f} MFLOP/token",
            cfg_.model.family, d.L_total, d.C, d.NH_total, d.F_total, d.V, d.Vp, double(n_params_) / 1e6,
            world_ > 1 ? " on rank 0" : "", flops_per_token_ / 1e6);
  lg_->info("batch: {} x {} tokens per micro-batch, {} micro-batches per step ({} tokens); gemm={}{} threads={}",
            B_, T_, accum_, tokens_per_step_, cfg_.kernels.gemm,
            ctx_.gemm.backend == kernels::GemmBackend::native
                ? " (" + std::string(kernels::sgemm_kernel_name(ctx_.gemm.isa)) + ")"
                : std::string(),
            threads_);
  lg_->info("run directory: {}", summary_.run_dir);
  // Memory of this rank by owner (the peak RSS at the end is the check of this account).
  const double mb = 1.0 / (1 << 20);
  const double params_mb = 4.0 * double(n_params_) * mb, opt_mb = 8.0 * double(adam_->m.size()) * mb;
  const double act_mb = double(model_->activation_bytes()) * mb;
  // Communication buffers: the pipeline's transfer buffers, and the data-parallel reduction's
  // scratch (a ring step's chunk per bucket in flight: arena / dp). With ZeRO-1, dp rank 0
  // gathers the full Adam state (2 x arena) at each checkpoint: the peak is the larger of the two.
  double comm_mb = 0.0, gather_mb = 0.0;
  const int dp = dp_size(comms_);
#if HOKUSAI_HAVE_MPI
  if (pipe_) comm_mb += double(pipe_->buffer_bytes()) * mb;
#endif
  const double dp_scratch_mb = dp > 1 ? params_mb / dp : 0.0;
  if (sync_->zero1() && dp_rank_ == 0) gather_mb = 2.0 * params_mb;
  const double steady_mb = 2 * params_mb + opt_mb + act_mb + comm_mb + dp_scratch_mb;
  memory_estimate_mb_ = steady_mb + std::max(0.0, gather_mb - dp_scratch_mb);
  lg_->info("memory (rank {}): parameters {:.1f} MiB, gradients {:.1f} MiB, optimizer state {:.1f} MiB{}, "
            "activations and scratch {:.1f} MiB ({} micro-batch slot(s), recompute {}), communication buffers "
            "{:.1f} MiB, total {:.1f} MiB{}",
            rank_, params_mb, params_mb, opt_mb, sync_->zero1() ? " (ZeRO-1 shard)" : "", act_mb, model_->slots(),
            model_->recompute() == Recompute::none ? "none" : cfg_.parallel.recompute, comm_mb + dp_scratch_mb,
            steady_mb,
            gather_mb > 0 ? fmt::format(", {:.1f} MiB at a checkpoint (ZeRO-1 Adam state gathered here)",
                                        memory_estimate_mb_)
                          : std::string());
  if (pp_size_ > 1)
    lg_->info("pipeline: {} stages, {} over {} micro-batches per step (bubble {:.0f}% modelled); stage {} holds "
              "layers {}{}{}",
              pp_size_, d.chunks > 1 ? fmt::format("interleaved 1F1B with {} chunks per stage", d.chunks) : "1F1B",
              accum_, 100.0 * (pp_size_ - 1) / (d.chunks * accum_ + pp_size_ - 1), pp_rank_, stage_layer_list(d),
              d.has_embedding ? " and the embedding" : "",
              d.has_head ? (d.tied && !d.has_embedding ? " and the head (tied wte copy)" : " and the head") : "");
  if (dp_size(comms_) > 1)
    lg_->info("data parallel: {} ranks, each {} micro-batches of {} per step; {}", cfg_.parallel.dp, accum_, B_,
              sync_->zero1() ? "ZeRO-1: gradients reduce-scattered, each rank updates its shard of parameters and Adam state "
                       "(" + std::to_string(sync_->shard().size()) + " of " + std::to_string(n_params_) +
                           "), parameters all-gathered"
                     : std::string("gradients summed in per-layer buckets overlapped with backward"));
  report_comm();
}

// The placement and one line per collective the run uses, with the algorithm chosen for it.
void Trainer::report_comm() const {
#if HOKUSAI_HAVE_MPI
  if (!comms_ || world_ == 1) return;
  for (const std::string& line : comms_->placement.description) lg_->info("{}", line);
  const int tp = tp_size_;
  const int64_t act_bytes = 4 * B_ * T_ * int64_t(cfg_.model.hidden);
  if (tp > 1)
    lg_->info("comm: tp activation allreduce over {} ranks ({:.2f} MB per call): {} (comm.tp_allreduce: {})", tp,
              1e-6 * double(act_bytes),
              cfg_.comm.tp_allreduce == "automatic" ? comm::describe_policy(act_bytes, act_bytes, tp, comm::Layout::flat)
                                                    : cfg_.comm.tp_allreduce,
              cfg_.comm.tp_allreduce);
  if (pp_size_ > 1)
    lg_->info("comm: pipeline activations and gradients ({:.2f} MB per micro-batch): non-blocking point-to-point, "
              "tagged by micro-batch", 1e-6 * double(act_bytes));
  for (const std::string& line : sync_->describe()) lg_->info("{}", line);
#endif
}

// One blocking allreduce of the whole gradient arena: the communication the overlap must hide.
void Trainer::measure_dp_baseline() {
  const parallel::GradientSync::Timed t = sync_->measure_blocking_allreduce();
  dp_blocking_s_ = t.seconds;
  if (dp_blocking_s_ > 0)
    lg_->info("data parallel: one blocking {} allreduce of the {:.1f} MB gradient arena takes {:.1f} ms", t.algorithm,
              4e-6 * double(n_params_), 1e3 * dp_blocking_s_);
}

StepStats Trainer::step() {
  ++step_;
  StepStats st;
  st.lr = learning_rate(cfg_, step_);
  const auto t_step = clock::now();
  const double tp_before = tp_comm_s_;
  model_->zero_grads();
  // The last micro-batch's backward finalises each bucket: the sync reduces it while backward
  // goes on, and completes the rest after.
  const double loss_sum = forward_backward(sync_->on_ready());
#if HOKUSAI_HAVE_MPI
  if (pipe_) st.time.pp_wait = pipe_->take_wait_seconds();
#endif
  st.time.dp_exposed = sync_->finish();
  dp_exposed_total_ += st.time.dp_exposed;
  st.loss = sum_over_pp_and_dp(comms_, loss_sum) / tokens_per_step_;
  if (!std::isfinite(st.loss))
    throw std::runtime_error(fmt::format("step {}: loss is {} (diverged): lower optimizer.lr or raise "
                                         "schedule.warmup_steps, then --resume from the last checkpoint",
                                         step_, st.loss));
  const auto t_update = clock::now();
  st.grad_norm = update(st.lr);
  const auto t_end = clock::now();
  st.time.optimizer = std::chrono::duration<double>(t_end - t_update).count();
  st.time.tp_comm = tp_comm_s_ - tp_before;
  st.time.compute = std::chrono::duration<double>(t_end - t_step).count() - st.time.optimizer - st.time.tp_comm -
                    st.time.pp_wait - st.time.dp_exposed;
  return st;
}

double Trainer::forward_backward(const Model<float>::GradsReady& ready_last) {
  const float dloss = float(1.0 / tokens_per_step_);
#if HOKUSAI_HAVE_MPI
  if (pipe_)
    return pipe_->train(
        ctx_, accum_,
        [&](int micro, int32_t* tokens, int32_t* targets) {
          data_->fill_micro_batch(step_ - 1, micro, dp_rank_, tokens, targets);
        },
        dloss, ready_last);
#endif
  double loss_sum = 0.0;
  for (int micro = 0; micro < accum_; ++micro) {
    data_->fill_micro_batch(step_ - 1, micro, dp_rank_, tokens_.data(), targets_.data());
    loss_sum += model_->forward(ctx_, tokens_.data(), targets_.data(), B_, T_);
    model_->backward(ctx_, tokens_.data(), targets_.data(), dloss, micro == accum_ - 1 ? ready_last : nullptr);
  }
  return loss_sum;
}

double Trainer::update(double lr) {
  float* params = model_->params().data();
  float* grads = model_->grads().data();
  const double norm = sync_->grad_norm(ctx_);
  const comm::Range shard = sync_->shard();
  clip_to_norm(grads + shard.begin, shard.size(), norm, cfg_.optimizer.grad_clip);
  adam_->step(params, grads, lr);
  sync_->after_step(params);
  return norm;
}

// Mean loss per token over a fixed set of validation samples (the first eval_batches * B),
// the batches dealt round-robin to the data-parallel ranks, through the pipeline when pp > 1.
double Trainer::evaluate() {
  const int dp = dp_size(comms_);
  const int mine = (cfg_.logging.eval_batches - dp_rank_ + dp - 1) / dp;  // batches r, r + dp, ...
  const auto batch = [&](int i, int32_t* tokens, int32_t* targets) {
    data_->fill(DataLoader::valid, int64_t(dp_rank_ + i * dp) * B_, B_, tokens, targets);
  };
  double total = 0.0;
#if HOKUSAI_HAVE_MPI
  if (pipe_) total = pipe_->forward_only(ctx_, mine, batch);
#endif
  if (pp_size_ == 1)
    for (int i = 0; i < mine; ++i) {
      batch(i, tokens_.data(), targets_.data());
      total += model_->forward(ctx_, tokens_.data(), targets_.data(), B_, T_);
    }
  return sum_over_pp_and_dp(comms_, total) / double(int64_t(cfg_.logging.eval_batches) * B_ * T_);
}

void Trainer::evaluate_and_log() {
  if (!can_eval_) return;
  const double val = evaluate();
  summary_.last_val_loss = val;
  if (lead_) metrics_ << fmt::format("{{\"step\":{},\"val_loss\":{:.6f}}}\n", step_, val) << std::flush;
  progress_->clear();
  lg_->info("step {:>6} | val_loss {:.4f}", step_, val);
}

void Trainer::save() {
  // Every data-parallel rank holds the same parameters; with ZeRO-1 the Adam state is sharded
  // and gathered to rank 0 first. Rank 0 writes.
  const bool zero1 = sync_->zero1();
  const std::vector<float> full_m = sync_->gather_shards(adam_->m), full_v = sync_->gather_shards(adam_->v);
  if (dp_rank_ == 0) {  // rank 0 of each data-parallel group: one writer per tp slice
    const CheckpointView ck{step_, step_ * cfg_.train.global_batch, adam_->t, model_->params(),
                            zero1 ? std::span<const float>(full_m) : std::span<const float>(adam_->m),
                            zero1 ? std::span<const float>(full_v) : std::span<const float>(adam_->v)};
    const std::string dir = save_checkpoint(checkpoint_root(), cfg_, thash_, ck, cfg_.checkpoint.keep);
    progress_->clear();
    lg_->info("checkpoint saved: {}", dir);
  }
  world_barrier(comms_);  // nobody exits before the checkpoint is complete
}

// A stop request reaches ranks at slightly different times: they agree before acting.
bool Trainer::stop_requested() const {
  double stop = opts_.stop && opts_.stop->load() ? 1.0 : 0.0;
#if HOKUSAI_HAVE_MPI
  if (comms_) stop = comms_->world.allreduce(stop, comm::Reduce::max);
#endif
  return stop > 0;
}

TrainSummary Trainer::run() {
  const auto loop_start = clock::now();
  while (step_ < cfg_.train.steps) {
    const auto t0 = clock::now();
    const StepStats st = step();
    summary_.losses.push_back(st.loss);
    meter_->add(st, std::chrono::duration<double>(clock::now() - t0).count());
    const bool last = step_ == cfg_.train.steps;
    if (step_ % cfg_.logging.interval == 0 || last) meter_->log(step_, cfg_.train.steps, st);
    if (cfg_.logging.eval_interval > 0 && step_ % cfg_.logging.eval_interval == 0 && !last) evaluate_and_log();
    if (cfg_.checkpoint.interval > 0 && step_ % cfg_.checkpoint.interval == 0 && !last) save();
    if (stop_requested()) {
      progress_->clear();
      lg_->warn("stop signal received: saving a checkpoint at step {} and exiting", step_);
      save();
      summary_.preempted = true;
      break;
    }
    const double elapsed = std::chrono::duration<double>(clock::now() - loop_start).count();
    const double eta = elapsed / double(step_ - first_step_) * double(cfg_.train.steps - step_);
    progress_->draw(fmt::format("step {}/{} ({:.0f}%) | loss {:.4f} | ETA {}", step_, cfg_.train.steps,
                                100.0 * double(step_) / double(cfg_.train.steps), st.loss, format_duration(eta)));
  }
  if (!summary_.preempted) {
    evaluate_and_log();
    save();
  }
  progress_->clear();
  summary_.steps_done = step_;
  const double steps_run = double(std::max<int64_t>(1, step_ - first_step_));
  summary_.dp_exposed_fraction = dp_blocking_s_ > 0 ? dp_exposed_total_ / steps_run / dp_blocking_s_ : 0.0;
  if (dp_blocking_s_ > 0)
    lg_->info("data-parallel communication not hidden behind backward: {:.1f} ms per step = {:.0f}% of the {:.1f} ms "
              "a blocking gradient allreduce takes",
              1e3 * dp_exposed_total_ / steps_run, 100.0 * summary_.dp_exposed_fraction, 1e3 * dp_blocking_s_);
  summary_.seconds = std::chrono::duration<double>(clock::now() - t_start_).count();
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const double rss_mb = double(usage.ru_maxrss) / 1024.0;
  lg_->info("peak resident memory (rank {}): {:.1f} MiB ({:+.0f}% against the {:.1f} MiB accounted at start)", rank_,
            rss_mb, 100.0 * (rss_mb - memory_estimate_mb_) / memory_estimate_mb_, memory_estimate_mb_);
  lg_->info("done: {} steps in {}{}", step_ - first_step_, format_duration(summary_.seconds),
            summary_.last_val_loss >= 0 ? fmt::format(", val_loss {:.4f}", summary_.last_val_loss) : "");
  return summary_;
}

}  // namespace

TrainSummary train(Config cfg, const TrainOptions& opts) { return Trainer(std::move(cfg), opts).run(); }

}  // namespace hokusai
