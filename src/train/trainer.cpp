// The training loop of one rank: data -> forward/backward over micro-batches (this rank's
// pipeline stage) -> gradient sync -> clip -> AdamW, with logging, validation and checkpoints.
// The run directory and checkpoints are train/run_dir's, the metrics train/step_meter's, the
// gradient sync parallel/gradient_sync's.
#include <sys/resource.h>
#include <unistd.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <climits>
#include <functional>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "comm/collectives.hpp"
#include "comm/grid_comm.hpp"
#include "ckpt/hf_import.hpp"
#include "comm/shared.hpp"
#include "hokusai/checkpoint.hpp"
#include "hokusai/data.hpp"
#include "hokusai/log.hpp"
#include "hokusai/train.hpp"
#include "kernels/ops.hpp"
#include "kernels/peak.hpp"
#include "parallel/gradient_sync.hpp"
#include "parallel/pipeline.hpp"
#include "parallel/tensor_parallel.hpp"
#include "plan/cost.hpp"
#include "train/run_dir.hpp"
#include "train/setup_report.hpp"
#include "train/step_meter.hpp"
#include "train/watchdog.hpp"

namespace hokusai {

namespace fs = std::filesystem;

namespace {

std::string format_duration(double seconds) {
  const auto s = int64_t(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// Sum of x over the pipeline stages and the data-parallel ranks.
double sum_over_pp_and_dp(const comm::GridComms& comms, double x) {
  return comms.dp.allreduce(comms.pp.allreduce(x, comm::Reduce::sum), comm::Reduce::sum);
}

// One rank's training run: setup (constructor), the step, validation, and the loop that logs,
// evaluates, saves and stops. train() drives it.
class Trainer {
 public:
  Trainer(Config cfg, const comm::GridComms& comms, const TrainOptions& opts);
  TrainSummary run();

 private:
  void setup_model();
  void check_memory(int stage, Recompute recompute) const;  // throws when the stage cannot fit
  void report_setup();  // the peak probe, then train/setup_report's lines
  void load_initial_weights();  // --init-from: this rank's slices of serial weights
  StepStats step();
  void update(double lr, double norm);  // clip, AdamW on this rank's shard, ZeRO-1 all-gather
  bool skip_nonfinite(StepStats& st);      // agreed over ranks; throws past train.skip_nonfinite
  bool skip_overflow(StepStats& st);       // fp16: gradients overflowed at the loss scale; halves it
  double evaluate();
  void evaluate_and_log();
  void save(bool final_save);  // final: the end of the run or a stop signal (synchronous)
  void finish_save(bool must_succeed = false);  // collective: agree on the save in flight, report it

  Config cfg_;
  const comm::GridComms& comms_;
  const TrainOptions& opts_;
  const double t_start_ = comm::wall_time();
  int rank_ = 0;
  bool lead_ = true;  // rank 0 writes logs, metrics and config
  RunDirectory run_dir_;
  TrainSummary summary_;
  std::unique_ptr<Log> log_;
  std::shared_ptr<spdlog::logger> lg_;
  int threads_ = 1;
  kernels::GemmWorkspace gemm_workspace_;  // native GEMM packing buffers, reused every call
  ComputeContext ctx_;
  std::unique_ptr<DataLoader> data_;
  bool can_eval_ = false;
  std::unique_ptr<Model<float>> model_;
  std::unique_ptr<parallel::Pipeline> pipe_;       // this rank's stage: 1F1B over the micro-batches
  std::unique_ptr<parallel::GradientSync> sync_;  // dp buckets, tied-embedding sum, ZeRO-1, global norm
  TensorParallelOps tp_ops_;                      // the model's tp reductions (tp > 1)
  std::unique_ptr<AdamW> adam_;
  int64_t B_ = 0, T_ = 0, n_params_ = 0, step_ = 0, first_step_ = 0;
  int64_t consumed_ = 0;  // training samples drawn so far (saved; the data position on resume)
  double save_blocked_s_ = 0;  // how long the save in flight blocked training so far
  bool save_in_background_ = false;  // the save in flight was started with checkpoint.async
  bool interval_advised_ = false;
  uint64_t thash_ = 0;
  int accum_ = 1;
  double tokens_per_step_ = 0, flops_per_token_ = 0, peak_ = 0;
  std::unique_ptr<MetricsFile> metrics_;  // rank 0 only
  std::unique_ptr<ProgressLine> progress_;
  std::unique_ptr<StepMeter> meter_;  // log lines and metrics.jsonl of the steps since the last log
  std::unique_ptr<Watchdog> watchdog_;  // ends the job when this rank stops making progress
  double tp_comm_s_ = 0.0;            // time inside tensor-parallel reductions (accumulated by tp_ops_)
  double memory_estimate_mb_ = 0.0;   // the start-up memory account's peak, checked against the peak RSS
  double dp_blocking_s_ = 0.0, dp_exposed_total_ = 0.0;
  int skipped_in_a_row_ = 0;
  int64_t skipped_total_ = 0;
  // fp16's dynamic loss scale (1 and unused otherwise): the loss gradient's factor, halved on an
  // overflow, doubled after train.loss_scale_window good steps in a row.
  bool scaled_ = false;
  double loss_scale_ = 1.0;
  int64_t good_steps_ = 0, overflow_total_ = 0;
};

Trainer::Trainer(Config cfg, const comm::GridComms& comms, const TrainOptions& opts)
    : cfg_((validate(cfg), check_rank_count(cfg, comms.world.size()), std::move(cfg))),
      comms_(comms),
      opts_(opts),
      rank_(comms.world.rank()),
      lead_(rank_ == 0),
      run_dir_(cfg_, opts.name, opts.resume, comms) {
  summary_.run_dir = run_dir_.path();
  log_ = std::make_unique<Log>(rank_, lead_ && !opts_.quiet, lead_ ? (fs::path(run_dir_.path()) / "train.log").string() : "");
  lg_ = log_->get("train");
  if (!run_dir_.resume_note().empty()) lg_->warn("{}", run_dir_.resume_note());
  if (lead_) std::ofstream(fs::path(run_dir_.path()) / "config.yaml") << dump_config(cfg_);

  threads_ = cfg_.kernels.threads > 0                         ? cfg_.kernels.threads
             : opts_.default_threads > 0 && !std::getenv("OMP_NUM_THREADS") ? opts_.default_threads
                                                                        : omp_get_max_threads();
  omp_set_num_threads(threads_);
  ctx_.gemm.backend = cfg_.kernels.gemm;
  ctx_.gemm.threads = threads_;
  ctx_.gemm.workspace = &gemm_workspace_;
  ctx_.gemm.precision = cfg_.train.precision;
  scaled_ = cfg_.train.precision == kernels::Precision::fp16;
  if (scaled_) loss_scale_ = cfg_.train.loss_scale;
  if (!kernels::gemm_backend_available(ctx_.gemm.backend))
    throw ConfigError("kernels.gemm: " + std::string(name_of(cfg_.kernels.gemm)) +
                      " is not in this build: choose another backend");

  // The model first: a model that cannot fit is refused before any data index is built.
  setup_model();
  const std::vector<std::string> search = {fs::path(cfg_.source).parent_path().string(), HOKUSAI_SOURCE_DIR};
  const int64_t samples[3] = {consumed_ + std::max<int64_t>(0, cfg_.train.steps - step_) * cfg_.train.global_batch,
                              int64_t(cfg_.logging.eval_batches) * cfg_.train.micro_batch, 0};
  auto data_log = log_->get("data");
  data_ = std::make_unique<DataLoader>(cfg_, search, samples, [&](const std::string& m) { data_log->info("{}", m); });
  can_eval_ = data_->has(DataLoader::valid);
  report_setup();
  if (cfg_.checkpoint.mtbf_hours > 0) {
    if (const auto earlier = measured_costs(run_dir_.path())) {
      interval_advised_ = true;
      lg_->info("{} (measured by the earlier part of this run)",
                checkpoint_interval_advice(earlier->save_seconds, earlier->step_seconds, cfg_.checkpoint));
    } else {
      lg_->info("checkpoint.mtbf_hours={}: the interval advice (Young's rule) follows the first save, which measures "
                "what a save costs",
                cfg_.checkpoint.mtbf_hours);
    }
  }
  if (lead_) metrics_ = std::make_unique<MetricsFile>((fs::path(run_dir_.path()) / "metrics.jsonl").string());
  // Under mpirun, stdout is a pseudo-terminal forwarded into the job's output: no redrawn line.
  const int world = comms_.world.size();
  progress_ = std::make_unique<ProgressLine>(lead_ && world == 1 && cfg_.logging.progress && !opts_.quiet);
  meter_ = std::make_unique<StepMeter>(StepMeter::Rates{tokens_per_step_, flops_per_token_, peak_, world},
                                       StepMeter::Stragglers{cfg_.comm.straggler_factor, cfg_.comm.straggler_steps}, comms_,
                                       metrics_.get(), lg_, *progress_);
  // One blocking allreduce of the whole gradient arena: the communication the overlap must hide.
  const parallel::GradientSync::Timed t = sync_->measure_blocking_allreduce();
  dp_blocking_s_ = t.seconds;
  if (dp_blocking_s_ > 0)
    lg_->info("data parallel: one blocking {} allreduce of the {:.1f} MB gradient arena takes {:.1f} ms", t.algorithm,
              4e-6 * double(n_params_), 1e3 * dp_blocking_s_);
  // The watchdog starts with the loop (set-up may legitimately take long: index builds). A
  // verdict left by an earlier hang of this run directory goes first.
  std::error_code ec;
  if (lead_) fs::remove(fs::path(run_dir_.path()) / "heartbeat" / "verdict", ec);
  comms_.world.barrier();
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  watchdog_ = std::make_unique<Watchdog>(
      cfg_.comm.timeout_s, run_dir_.path(), rank_, comms_.world.size(),
      fmt::format("rank {} (tp {}, pp {}, dp {}) on {}", rank_, comms_.tp.rank(), comms_.pp.rank(), comms_.dp.rank(), host));
}

// The planner's memory account of this rank's stage (src/plan/cost.hpp: parameters, gradients,
// Adam state or its ZeRO-1 shard, the activations of the schedule's in-flight micro-batches under
// this stage's recomputation, buffers, the checkpoint gather and async snapshot) must fit in this
// rank's share of its node's memory. Refused before anything is allocated, with the largest term
// and what would shrink it, instead of the OOM killer ending the job later.
void Trainer::check_memory(int stage, Recompute recompute) const {
  const plan::MemoryAccount need = plan::stage_memory(cfg_, stage, recompute);
  const int sharing = comm::split_node(comms_.world).size();  // collective: every rank checks
  const double node = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  if (node <= 0 || need.peak() <= node / sharing) return;
  const double gib = 1.0 / double(1 << 30);
  const auto [largest, bytes] = need.largest();
  const std::string fix =
      std::string(largest) == "activations"
          ? "recompute activations (parallel.recompute: selective or full), lower train.micro_batch, or add pipeline "
            "or tensor ranks"
      : std::string(largest) == "optimizer state"
          ? "shard it over data-parallel ranks (parallel.zero1: true), or add tensor or pipeline ranks"
      : std::string(largest) == "checkpoint copies"
          ? "turn checkpoint.async off, or add tensor or pipeline ranks"
          : "add tensor or pipeline ranks (parallel.tp, parallel.pp)";
  throw std::runtime_error(fmt::format(
      "memory: pipeline stage {} (rank {}: tp {}, pp {}, dp {}) needs {:.1f} GiB (parameters {:.1f}, gradients {:.1f}, "
      "optimizer state {:.1f}, activations {:.1f}, buffers {:.1f}, checkpoint copies {:.1f}) but its node has {:.1f} GiB "
      "for {} rank(s); the largest term is {} ({:.1f} GiB): {}; `hokusai plan CONFIG --machine FILE --search` lists "
      "layouts that fit",
      stage, rank_, comms_.tp.rank(), comms_.pp.rank(), comms_.dp.rank(), need.peak() * gib, need.params * gib,
      need.grads * gib, need.optimizer * gib, need.activations * gib, need.comm * gib,
      (need.checkpoint_gather + need.snapshot) * gib, node * gib, sharing, largest, bytes * gib, fix));
}

void Trainer::setup_model() {
  if (comms_.tp.size() > 1) {
    tp_ops_ = parallel::tensor_parallel_ops(comms_.tp, &tp_comm_s_, cfg_.comm.tp_allreduce);
    ctx_.tp = &tp_ops_;
  }
  const int pp = comms_.pp.size(), stage = comms_.pp.rank();
  ModelDims dims = ModelDims::from(cfg_.model, comms_.grid, cfg_.parallel.stage_layers,
                                   pp > 1 ? cfg_.parallel.virtual_stages : 1);
  dims.sequence_parallel = cfg_.parallel.sequence_parallel && dims.tp > 1;
  B_ = cfg_.train.micro_batch;
  T_ = cfg_.train.seq_len;
  accum_ = cfg_.train.global_batch / (cfg_.train.micro_batch * cfg_.parallel.dp);
  const Recompute recompute = plan::stage_recompute(cfg_, stage);
  check_memory(stage, recompute);
  try {
    model_ = std::make_unique<Model<float>>(dims, B_, T_, parallel::Pipeline::slots(pp, stage, accum_, dims.chunks),
                                            recompute, cfg_.kernels.attention, cfg_.train.precision,
                                            cfg_.kernels.huge_pages);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error(fmt::format("memory: allocating the model of rank {} (its parameters, gradients and "
                                         "activations) failed: add tensor or pipeline ranks, recompute activations "
                                         "(parallel.recompute) or lower train.micro_batch",
                                         rank_));
  }
  pipe_ = std::make_unique<parallel::Pipeline>(comms_.pp, *model_, B_, T_);
  model_->init(cfg_.train.seed);
  n_params_ = arena_size(model_->table());
  sync_ = std::make_unique<parallel::GradientSync>(comms_, *model_, cfg_);
  ctx_.params_needed = sync_->params_gate();  // ZeRO-1: forward waits for each bucket's gathered parameters
  // ZeRO-1: this data-parallel rank owns parameters shard.begin .. shard.end of the arena.
  const comm::Range shard = sync_->shard();
  adam_ = std::make_unique<AdamW>(model_->table(), cfg_.optimizer, shard, cfg_.kernels.huge_pages);
  thash_ = table_hash(model_->table());
  std::optional<CheckpointData> resumed;
  if (const auto& from = run_dir_.resume_from()) {
    resumed = load_checkpoint(*from, thash_, true);
    lg_->info("resumed from {} at step {} ({} samples consumed)", *from, resumed->step, resumed->consumed_samples);
  } else if (const auto& saved = run_dir_.reshard_from()) {
    resumed = load_resharded(run_dir_.path(), *saved, model_->dims(), model_->table());
    lg_->info("resumed at step {} ({} samples consumed) from the checkpoint saved by tp {} x pp {}{}, resharded to "
              "tp {} x pp {}: each rank read only the old shards holding its tensors",
              resumed->step, resumed->consumed_samples, saved->config.parallel.tp, saved->config.parallel.pp,
              saved->config.parallel.virtual_stages > 1 ? fmt::format(" (v {})", saved->config.parallel.virtual_stages)
                                                        : "",
              cfg_.parallel.tp, cfg_.parallel.pp);
  }
  if (resumed) {
    CheckpointData& ck = *resumed;
    model_->load_params(ck.params);
    adam_->m.assign(ck.m.begin() + shard.begin, ck.m.begin() + shard.end);
    adam_->v.assign(ck.v.begin() + shard.begin, ck.v.begin() + shard.end);
    adam_->t = ck.adam_t;
    step_ = ck.step;
    consumed_ = ck.consumed_samples;
    if (scaled_ && ck.loss_scale.scale > 0) {  // fp16 goes on with the saved run's loss scale
      loss_scale_ = ck.loss_scale.scale, good_steps_ = ck.loss_scale.good_steps;
      lg_->info("fp16 loss scale {:g} from the checkpoint ({} steps without overflow since its last change)",
                loss_scale_, good_steps_);
    } else if (scaled_) {
      lg_->info("fp16 loss scale {:g} (train.loss_scale): the checkpoint saved none (its run was not fp16)",
                loss_scale_);
    }
    if (consumed_ != step_ * cfg_.train.global_batch)
      lg_->warn("train.global_batch={} differs from the saved run's ({} samples in {} steps): the data go on from "
                "sample {} in the same order, the learning-rate schedule from step {}",
                cfg_.train.global_batch, consumed_, step_, consumed_, step_);
  } else if (!opts_.init_from.empty()) {
    load_initial_weights();
  }
  first_step_ = step_;
  run_dir_.check_space(12 * n_params_ + (1 << 16));  // state.bin: parameters, Adam m and v, header
  if (cfg_.checkpoint.async) run_dir_.reserve_snapshot(size_t(3 * n_params_), omp_get_max_threads());
  if (comms_.dp.rank() == 0) run_dir_.set_manifest(tensor_manifest(cfg_, comms_.pp.rank(), comms_.tp.rank()));
  tokens_per_step_ = double(cfg_.train.global_batch) * double(T_);
  flops_per_token_ = train_flops_per_token(cfg_.model, T_);
}

// The serial weights (a Hugging Face directory, or a serial hokusai checkpoint), each element put
// where this rank's shard holds it: the same index map that makes sharded initialisation equal
// the serial one (serial_index), so every layout starts from the same model. Each tensor of this
// rank reads only the serial rows its slice touches (one tensor's rows at a time), never the
// whole model: a 13B model's weights do not fit on one A64FX node.
void Trainer::load_initial_weights() {
  const std::string& from = opts_.init_from;
  const std::vector<TensorSpec> serial_table = param_table(ModelDims::from(cfg_.model, comm::ParallelGrid::single()));
  std::map<std::string, const TensorSpec*> by_name;
  for (const auto& t : serial_table) by_name[t.name] = &t;
  // rows [begin, end) of a serial tensor
  std::function<void(const TensorSpec&, int64_t, int64_t, float*)> read_rows;
  std::unique_ptr<HfWeights> hf;
  std::unique_ptr<CheckpointReader> ckpt;
  if (fs::exists(fs::path(from) / "config.json")) {
    hf = std::make_unique<HfWeights>(from, cfg_.model);
    read_rows = [&](const TensorSpec& t, int64_t begin, int64_t end, float* out) {
      hf->read_rows(t.name, begin, end, out);
    };
  } else {
    ckpt = std::make_unique<CheckpointReader>(checkpoint_dir(from), table_hash(serial_table), false);
    read_rows = [&](const TensorSpec& t, int64_t begin, int64_t end, float* out) {
      const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
      ckpt->read(0, t.offset + begin * cols, (end - begin) * cols, out);
    };
  }
  std::vector<float> local(size_t(n_params_), 0.0f), rows;
  const ModelDims& d = model_->dims();
  for (const TensorSpec& spec : model_->table()) {
    const TensorSpec& src = *by_name.at(spec.name);
    const int64_t cols = src.shape.size() == 2 ? src.shape[1] : 1;
    int64_t lo = INT64_MAX, hi = 0;  // the serial elements this slice takes (beyond: vocabulary padding)
    for (int64_t i = 0; i < spec.numel; ++i) {
      const int64_t j = serial_index(spec, d, i);
      if (j < src.numel) lo = std::min(lo, j), hi = std::max(hi, j + 1);
    }
    if (lo >= hi) continue;
    const int64_t row0 = lo / cols, row1 = (hi + cols - 1) / cols;
    rows.resize(size_t((row1 - row0) * cols));
    read_rows(src, row0, row1, rows.data());
    for (int64_t i = 0; i < spec.numel; ++i) {
      const int64_t j = serial_index(spec, d, i);
      if (j < src.numel) local[size_t(spec.offset + i)] = rows[size_t(j - row0 * cols)];
    }
  }
  model_->load_params(local);
  lg_->info("initial weights from {} ({:.2f}M parameters of this rank); optimizer state, step and data start afresh",
            from, 1e-6 * double(n_params_));
}

void Trainer::report_setup() {
  peak_ = cfg_.kernels.peak_gflops;
  // bf16: the probe also picks the unit (kernels::fastest_isa), so it runs even with a set peak.
  if (peak_ <= 0 || cfg_.train.precision == kernels::Precision::bf16) {
    const auto probe = kernels::probe_peak_fp32(threads_);
    if (peak_ <= 0) {
      peak_ = probe.peak_gflops();
      lg_->info("peak probe ({}): {:.1f} GFLOP/s per core; MFU peak {:.1f} GFLOP/s for {} threads "
                "(all threads measured together now: {:.1f})",
                probe.isa, probe.per_core_gflops, peak_, threads_, probe.all_gflops);
    }
    ctx_.gemm.isa = kernels::fastest_isa(cfg_.train.precision, probe);
    if (ctx_.gemm.precision == kernels::Precision::bf16 && !kernels::gemm_precision_native(ctx_.gemm) &&
        (probe.bf16_per_core_gflops > 0 || probe.amx_bf16_per_core_gflops > 0))
      lg_->info("bf16: this CPU's bf16 unit (probed {:.0f} GFLOP/s per core{}) is slower than its fp32 FMAs ({:.0f}): "
                "the products run on the fp32 kernel with bf16-rounded inputs (the same numbers)",
                std::max(probe.bf16_per_core_gflops, probe.amx_bf16_per_core_gflops),
                probe.amx_bf16_per_core_gflops > 0 ? ", AMX" : ", vdpbf16ps", probe.per_core_gflops);
  }
  memory_estimate_mb_ = log_run_shape(*lg_, {cfg_, comms_, *model_, *pipe_, *sync_, int64_t(adam_->m.size()),
                                             model_->huge_page_bytes() + adam_->huge_page_bytes, accum_,
                                             tokens_per_step_, flops_per_token_, threads_, ctx_.gemm, run_dir_.path()});
}

// One optimizer step: every micro-batch forward and backward through this rank's pipeline stage
// (the last one's gradients handed to the sync as backward produces them), the rest of the
// gradient sync, the update. The loss is the mean over the step's tokens on every rank.
StepStats Trainer::step() {
  ++step_;
  StepStats st;
  st.lr = learning_rate(cfg_, step_);
  const double t_step = comm::wall_time(), tp_before = tp_comm_s_;
  const auto micro_batch = [&](int micro, int32_t* tokens, int32_t* targets) {
    data_->fill_micro_batch(consumed_, micro, comms_.dp.rank(), tokens, targets);
  };

  watchdog_->phase("forward and backward", step_);
  if (opts_.inject_slow_rank == rank_)  // test hook: a throttled node
    std::this_thread::sleep_for(std::chrono::milliseconds(opts_.inject_slow_ms));
  model_->zero_grads();
  const double loss_sum =
      pipe_->train(ctx_, accum_, micro_batch, float(loss_scale_ / tokens_per_step_), sync_->on_ready());
  st.time.pp_wait = pipe_->take_wait_seconds();
  watchdog_->phase("the data-parallel gradient sync", step_);
  const parallel::GradientSync::Exposed exposed = sync_->finish();
  st.time.pp_wait += exposed.tied;  // the pipeline's ends wait for each other's wte gradient
  st.time.dp_exposed = exposed.dp;
  if (opts_.inject_nonfinite_step == step_ && rank_ == 0)  // test hook: an overflow in backward
    model_->grads()[size_t(sync_->shard().begin)] = std::numeric_limits<float>::quiet_NaN();
  watchdog_->phase("the loss and gradient-norm reductions", step_);
  st.loss = sum_over_pp_and_dp(comms_, loss_sum) / tokens_per_step_;
  const double t_update = comm::wall_time();
  st.grad_norm = sync_->grad_norm(ctx_) / loss_scale_;  // the global norm: the same on every rank
  if (!skip_overflow(st) && !skip_nonfinite(st)) {
    watchdog_->phase("the optimizer step", step_);
    update(st.lr, st.grad_norm);
    if (scaled_ && ++good_steps_ == cfg_.train.loss_scale_window) loss_scale_ *= 2, good_steps_ = 0;
  }
  st.skipped_total = skipped_total_;
  if (scaled_) st.loss_scale = loss_scale_, st.overflow_total = overflow_total_;
  consumed_ += cfg_.train.global_batch;  // a skipped step consumed its samples too

  const double t_end = comm::wall_time();
  dp_exposed_total_ += st.time.dp_exposed;
  st.time.optimizer = t_end - t_update;
  st.time.tp_comm = tp_comm_s_ - tp_before;
  st.time.compute = t_end - t_step - st.time.optimizer - st.time.tp_comm - st.time.pp_wait - st.time.dp_exposed;
  return st;
}

// fp16: a finite loss whose scaled gradients overflowed (the gradient norm is global, so every
// rank sees the same): the step is skipped and the scale halved, the normal course of dynamic
// loss scaling, not a divergence. A scale that would fall below 1 means the unscaled gradients
// overflow fp16: the run stops.
bool Trainer::skip_overflow(StepStats& st) {
  if (!scaled_ || std::isfinite(st.grad_norm) || !std::isfinite(st.loss)) return false;
  if (loss_scale_ / 2 < 1)
    throw std::runtime_error(fmt::format(
        "step {}: fp16 gradients overflow even at loss scale {:g} (train.precision: fp16): the values exceed fp16's "
        "range; use train.precision: bf16 or fp32, or lower optimizer.lr, then --resume from the last checkpoint",
        step_, loss_scale_));
  st.skipped = true;
  ++skipped_total_;
  ++overflow_total_;
  good_steps_ = 0;
  loss_scale_ /= 2;
  progress_->clear();
  lg_->info("step {}: fp16 gradients overflowed: step skipped, loss scale {:g} -> {:g} ({} overflow steps so far)",
            step_, 2 * loss_scale_, loss_scale_, overflow_total_);
  return true;
}

// A step whose loss or gradient norm is not finite on any rank: every rank agrees before anyone
// updates, then either all skip it (parameters and Adam state untouched) or all stop.
bool Trainer::skip_nonfinite(StepStats& st) {
  const int first = comms_.world.lowest_rank_where(!std::isfinite(st.loss) || !std::isfinite(st.grad_norm));
  if (first < 0) {
    skipped_in_a_row_ = 0;
    return false;
  }
  const std::string what = fmt::format("step {}: {} (first on rank {})", step_,
                                       std::isfinite(st.loss) ? fmt::format("gradient norm is not finite")
                                                              : fmt::format("loss is {}", st.loss),
                                       first);
  if (skipped_in_a_row_ >= cfg_.train.skip_nonfinite)
    throw std::runtime_error(what + " (diverged): lower optimizer.lr or raise schedule.warmup_steps, then --resume "
                                    "from the last checkpoint" +
                             (cfg_.train.skip_nonfinite > 0
                                  ? fmt::format(" ({} non-finite steps in a row: train.skip_nonfinite={})",
                                                skipped_in_a_row_ + 1, cfg_.train.skip_nonfinite)
                                  : std::string("; train.skip_nonfinite skips such steps")));
  ++skipped_in_a_row_;
  ++skipped_total_;
  st.skipped = true;
  progress_->clear();
  lg_->warn("{}: step skipped, parameters and optimizer state unchanged ({} in a row, train.skip_nonfinite={})", what,
            skipped_in_a_row_, cfg_.train.skip_nonfinite);
  return true;
}

void Trainer::update(double lr, double norm) {
  float* params = model_->params().data();
  float* grads = model_->grads().data();
  const comm::Range shard = sync_->shard();
  if (loss_scale_ != 1.0) kernels::scale(grads + shard.begin, float(1.0 / loss_scale_), shard.size());
  adam_->step(params, grads, lr, clip_scale(norm, cfg_.optimizer.grad_clip));
  sync_->after_step(params);
}

// Mean loss per token over a fixed set of validation samples (the first eval_batches * B),
// the batches dealt round-robin to the data-parallel ranks, through the pipeline.
double Trainer::evaluate() {
  const int dp = comms_.dp.size(), dp_rank = comms_.dp.rank();
  const int mine = (cfg_.logging.eval_batches - dp_rank + dp - 1) / dp;  // batches r, r + dp, ...
  const auto batch = [&](int i, int32_t* tokens, int32_t* targets) {
    data_->fill(DataLoader::valid, int64_t(dp_rank + i * dp) * B_, B_, tokens, targets);
  };
  const double total = pipe_->forward_only(ctx_, mine, batch);
  return sum_over_pp_and_dp(comms_, total) / double(int64_t(cfg_.logging.eval_batches) * B_ * T_);
}

void Trainer::evaluate_and_log() {
  if (!can_eval_) return;
  watchdog_->phase("evaluation", step_);
  const double val = evaluate();
  summary_.last_val_loss = val;
  if (metrics_) metrics_->write(fmt::format("{{\"step\":{},\"val_loss\":{:.6f}}}", step_, val));
  progress_->clear();
  lg_->info("step {:>6} | val_loss {:.4f}", step_, val);
}

// Every data-parallel rank holds the same parameters; with ZeRO-1 the Adam state is sharded and
// gathered to dp rank 0 first, which writes (train/run_dir.hpp: begin_save, finish_save). With
// checkpoint.async the write goes on in the background and is agreed on later: at the first step
// end where every rank's write is done (run), the next save, or the end.
void Trainer::save(bool final_save) {
  watchdog_->phase("a checkpoint save", step_);
  if (run_dir_.save_pending()) finish_save();
  const double t0 = comm::wall_time();
  sync_->complete_params();
  const std::vector<float> full_m = sync_->gather_shards(adam_->m), full_v = sync_->gather_shards(adam_->v);
  const bool zero1 = sync_->zero1();
  const bool async = cfg_.checkpoint.async && !final_save;
  run_dir_.begin_save(cfg_, thash_, step_, consumed_, adam_->t, model_->params(), zero1 ? full_m : adam_->m,
                      zero1 ? full_v : adam_->v, scaled_ ? LossScaleState{loss_scale_, good_steps_} : LossScaleState{},
                      async);
  save_blocked_s_ = comm::wall_time() - t0;
  save_in_background_ = async;
  if (!async) finish_save(final_save);
}

void Trainer::finish_save(bool must_succeed) {
  watchdog_->phase("the checkpoint-save agreement", step_);
  const double t0 = comm::wall_time();
  const RunDirectory::SaveOutcome out = run_dir_.finish_save(cfg_, must_succeed);  // throws unless on_error: continue
  const double blocked_s = save_blocked_s_ + (comm::wall_time() - t0);  // (async: ~0, the write was done)
  progress_->clear();
  if (out.failing_rank >= 0) {
    if (rank_ == out.failing_rank)
      std::fprintf(stderr, "hokusai: rank %d: checkpoint of step %lld not saved: %s\n", rank_, (long long)out.step,
                   out.error.c_str());
    const auto kept = latest_checkpoint(run_dir_.checkpoint_root());
    lg_->warn("checkpoint of step {} failed on rank {}: training continues (checkpoint.on_error: continue) and "
              "saves again {}; the newest complete checkpoint is {}",
              out.step, out.failing_rank,
              cfg_.checkpoint.interval > 0 ? fmt::format("every {} steps", cfg_.checkpoint.interval) : "at the end",
              kept ? *kept : "none yet");
    return;
  }
  if (out.dir.empty()) return;
  lg_->info("checkpoint saved: {} (blocked training {:.2f} s{})", out.dir, blocked_s,
            save_in_background_ ? fmt::format(", written in {:.2f} s in the background", out.write_seconds) : "");
  if (metrics_)
    metrics_->write(fmt::format("{{\"step\":{},\"checkpoint_blocked_s\":{:.4f},\"checkpoint_write_s\":{:.4f}}}", out.step,
                                blocked_s, out.write_seconds));
  if (cfg_.checkpoint.mtbf_hours > 0 && !interval_advised_ && step_ > first_step_) {
    interval_advised_ = true;
    lg_->info("{}", checkpoint_interval_advice(blocked_s, meter_->mean_step_seconds(), cfg_.checkpoint));
  }
}

TrainSummary Trainer::run() {
  if (opts_.eval_only) {
    if (!can_eval_)
      throw ConfigError("--eval-only: the data has no validation documents (data.split gives the valid part 0)");
    watchdog_->phase("evaluation", step_);
    summary_.last_val_loss = evaluate();
    summary_.steps_done = step_;
    // Every digit (fmt's shortest round-trip form): comparable bit for bit across runs.
    lg_->info("eval only: step {} val_loss {} (logging.eval_batches {} of {} x {} tokens)", step_,
              summary_.last_val_loss, cfg_.logging.eval_batches, B_, T_);
    return summary_;
  }
  const double loop_start = comm::wall_time();
  while (step_ < cfg_.train.steps) {
    const double t0 = comm::wall_time();
    const StepStats st = step();
    summary_.losses.push_back(st.loss);
    meter_->add(st, comm::wall_time() - t0);
    const bool last = step_ == cfg_.train.steps;
    watchdog_->phase("logging (the phase times are gathered)", step_);
    if (step_ % cfg_.logging.interval == 0 || last) meter_->log(step_, cfg_.train.steps, st);
    if (cfg_.logging.eval_interval > 0 && step_ % cfg_.logging.eval_interval == 0 && !last) evaluate_and_log();
    if (cfg_.checkpoint.interval > 0 && step_ % cfg_.checkpoint.interval == 0 && !last) save(false);
    watchdog_->phase("the stop-signal agreement", step_);
    if (run_dir_.save_pending() && run_dir_.written_everywhere()) finish_save();
    if (stop_agreed(comms_.world, opts_.stop)) {
      progress_->clear();
      lg_->warn("stop signal received: saving a checkpoint at step {} and exiting", step_);
      save(true);
      summary_.preempted = true;
      break;
    }
    const double elapsed = comm::wall_time() - loop_start;
    const double eta = elapsed / double(step_ - first_step_) * double(cfg_.train.steps - step_);
    progress_->draw(fmt::format("step {}/{} ({:.0f}%) | loss {:.4f} | ETA {}", step_, cfg_.train.steps,
                                100.0 * double(step_) / double(cfg_.train.steps), st.loss, format_duration(eta)));
  }
  if (!summary_.preempted) {
    evaluate_and_log();
    save(true);
  }
  progress_->clear();
  summary_.steps_done = step_;
  summary_.skipped_steps = skipped_total_;
  const double steps_run = double(std::max<int64_t>(1, step_ - first_step_));
  summary_.dp_exposed_fraction = dp_blocking_s_ > 0 ? dp_exposed_total_ / steps_run / dp_blocking_s_ : 0.0;
  if (dp_blocking_s_ > 0)
    lg_->info("data-parallel communication not hidden behind backward: {:.1f} ms per step = {:.0f}% of the {:.1f} ms "
              "a blocking gradient allreduce takes",
              1e3 * dp_exposed_total_ / steps_run, 100.0 * summary_.dp_exposed_fraction, 1e3 * dp_blocking_s_);
  summary_.seconds = comm::wall_time() - t_start_;
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  const double rss_mb = double(usage.ru_maxrss) / 1024.0;
  lg_->info("peak resident memory (rank {}): {:.1f} MiB ({:+.0f}% against the {:.1f} MiB accounted at start)", rank_,
            rss_mb, 100.0 * (rss_mb - memory_estimate_mb_) / memory_estimate_mb_, memory_estimate_mb_);
  if (metrics_)  // for `hokusai report`: rank 0's account against what it used
    metrics_->write(fmt::format("{{\"step\":{},\"memory_accounted_mib\":{:.1f},\"peak_rss_mib\":{:.1f}}}", step_,
                                memory_estimate_mb_, rss_mb));
  lg_->info("done: {} steps in {}{}", step_ - first_step_, format_duration(summary_.seconds),
            summary_.last_val_loss >= 0 ? fmt::format(", val_loss {:.4f}", summary_.last_val_loss) : "");
  return summary_;
}

}  // namespace

void check_rank_count(const Config& cfg, int ranks) {
  const int64_t product = int64_t(cfg.parallel.tp) * cfg.parallel.pp * cfg.parallel.dp;
  if (product == ranks) return;
  throw ConfigError(fmt::format(
      "parallel.tp*pp*dp = {}*{}*{} = {} but the job has {} rank(s): {}", cfg.parallel.tp, cfg.parallel.pp,
      cfg.parallel.dp, product, ranks,
      comm::one_process_build() ? "this build has no MPI (HOKUSAI_WITH_MPI=OFF) and runs one process: set parallel.* "
                                  "to 1 or use an MPI build"
                                : "make their product the rank count (mpirun -np) or change parallel.*"));
}

TrainSummary train(Config cfg, const comm::GridComms& comms, const TrainOptions& opts) {
  return Trainer(std::move(cfg), comms, opts).run();
}

}  // namespace hokusai
