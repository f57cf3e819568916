// The training loop of one rank: data -> forward/backward over micro-batches -> clip -> AdamW,
// with logging, metrics, validation and checkpoints.
#include <mpi.h>
#include <sys/resource.h>
#include <omp.h>

#include <chrono>
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
#include "comm/collectives.hpp"
#include "kernels/ops.hpp"
#include "kernels/peak.hpp"
#include "parallel/data_parallel.hpp"

namespace hokusai {

namespace fs = std::filesystem;

namespace {

std::string default_run_dir(const std::string& name) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return (fs::path("runs") / ((name.empty() ? "run" : name) + "-" + stamp)).string();
}

std::string format_duration(double seconds) {
  const auto s = int64_t(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// The full vector on rank 0 of `dp` from every rank's shard split_evenly(n, dp, rank); empty
// elsewhere.
std::vector<float> gather_shards(const comm::Communicator& dp, const std::vector<float>& mine, int64_t n) {
  const int p = dp.size();
  std::vector<int> counts(static_cast<size_t>(p)), displs(static_cast<size_t>(p));
  for (int q = 0; q < p; ++q) {
    const comm::Range r = comm::split_evenly(n, p, q);
    if (r.end > INT32_MAX) throw std::runtime_error("checkpoint: ZeRO shard gather beyond 2^31 values is not supported yet");
    counts[size_t(q)] = int(r.size());
    displs[size_t(q)] = int(r.begin);
  }
  std::vector<float> full(dp.rank() == 0 ? size_t(n) : 0);
  HOKUSAI_MPI(MPI_Gatherv(mine.data(), int(mine.size()), MPI_FLOAT, full.data(), counts.data(), displs.data(),
                          MPI_FLOAT, 0, dp.raw()));
  return full;
}

// Sum over the data-parallel ranks (identity on one process).
double dp_sum(const comm::GridComms* comms, double x) {
  if (!comms || comms->dp.size() == 1) return x;
  HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, comms->dp.raw()));
  return x;
}

// Mean loss per token over a fixed set of validation samples (the first eval_batches * B),
// the batches dealt round-robin to the data-parallel ranks.
double evaluate(Model<float>& model, const ComputeContext& ctx, const DataLoader& data, const Config& cfg,
                const comm::GridComms* comms) {
  const int64_t B = cfg.train.micro_batch, T = cfg.train.seq_len;
  const int dp = comms ? comms->dp.size() : 1, r = comms ? comms->dp.rank() : 0;
  std::vector<int32_t> tokens(size_t(B * T)), targets(size_t(B * T));
  double total = 0.0;
  for (int b = r; b < cfg.logging.eval_batches; b += dp) {
    data.fill(DataLoader::valid, int64_t(b) * B, B, tokens.data(), targets.data());
    total += model.forward(ctx, tokens.data(), targets.data(), B, T);
  }
  return dp_sum(comms, total) / double(int64_t(cfg.logging.eval_batches) * B * T);
}

}  // namespace

TrainSummary train(Config cfg, const TrainOptions& opts) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  validate(cfg);
  const comm::GridComms* comms = opts.comms;
  const int world = comms ? comms->world.size() : 1;
  if (cfg.parallel.tp != 1 || cfg.parallel.pp != 1)
    throw ConfigError(fmt::format("parallel.tp={} pp={}: this build runs data parallelism only; set tp and pp "
                                  "to 1 (tensor and pipeline parallelism are not in this build yet)",
                                  cfg.parallel.tp, cfg.parallel.pp));
  if (cfg.parallel.dp != world)
    throw ConfigError(fmt::format("parallel.dp={} but the job has {} rank(s): set parallel.dp to the rank "
                                  "count (mpirun -np {})",
                                  cfg.parallel.dp, world, cfg.parallel.dp));
  const int rank = comms ? comms->world.rank() : 0;
  const int dp_rank = comms ? comms->dp.rank() : 0;
  const bool lead = rank == 0;  // writes logs, metrics, config and checkpoints

  // Run directory, logs, resolved config.
  TrainSummary summary;
  if (cfg.logging.run_dir.empty()) {
    if (opts.resume) throw ConfigError("--resume needs logging.run_dir: the run directory to continue");
    cfg.logging.run_dir = default_run_dir(opts.name);
  }
  const std::string run_dir = cfg.logging.run_dir;
  summary.run_dir = run_dir;
  std::optional<std::string> resume_from;
  if (opts.resume) {
    resume_from = latest_checkpoint(run_dir);
    if (!resume_from)
      throw ConfigError("--resume: no checkpoint in '" + run_dir + "/checkpoints' (check logging.run_dir)");
  }
  if (lead) fs::create_directories(run_dir);
  if (comms) comms->world.barrier();  // the run directory exists before anyone writes
  Log log(rank, lead && !opts.quiet, lead ? (fs::path(run_dir) / "train.log").string() : "");
  auto lg = log.get("train");
  if (lead) {
    std::ofstream out(fs::path(run_dir) / "config.yaml");
    out << dump_config(cfg);
  }

  // Compute context.
  const int threads = cfg.kernels.threads > 0 ? cfg.kernels.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  ComputeContext ctx;
  kernels::GemmWorkspace gemm_workspace;  // native GEMM packing buffers, reused every call
  ctx.gemm.backend = kernels::parse_gemm_backend(cfg.kernels.gemm);
  ctx.gemm.threads = threads;
  ctx.gemm.workspace = &gemm_workspace;
  if (!kernels::gemm_backend_available(ctx.gemm.backend))
    throw ConfigError("kernels.gemm: " + cfg.kernels.gemm + " is not in this build: choose another backend");

  // Data.
  std::vector<std::string> search = {fs::path(cfg.source).parent_path().string(), HOKUSAI_SOURCE_DIR};
  const int64_t samples[3] = {cfg.train.steps * cfg.train.global_batch,
                              int64_t(cfg.logging.eval_batches) * cfg.train.micro_batch, 0};
  auto data_log = log.get("data");
  const DataLoader data(cfg, search, samples, [&](const std::string& m) { data_log->info("{}", m); });
  const bool can_eval = data.has(DataLoader::valid);

  // Model and optimizer.
  const ModelDims dims = ModelDims::from(cfg.model, comm::ParallelGrid::single());
  const int64_t B = cfg.train.micro_batch, T = cfg.train.seq_len;
  Model<float> model(dims, B, T);
  model.init(cfg.train.seed);
  const int64_t n_params = arena_size(model.table());
  // ZeRO-1: this data-parallel rank owns parameters shard.begin .. shard.end of the arena.
  const bool zero1 = cfg.parallel.zero1 && comms && comms->dp.size() > 1;
  const comm::Range shard = zero1 ? comm::split_evenly(n_params, comms->dp.size(), dp_rank) : comm::Range{0, n_params};
  AdamW adam(model.table(), cfg.optimizer, shard);
  const uint64_t thash = table_hash(model.table());
  int64_t step = 0;
  if (resume_from) {
    CheckpointData ck = load_checkpoint(*resume_from, thash, true);
    model.load_params(ck.params);
    adam.m.assign(ck.m.begin() + shard.begin, ck.m.begin() + shard.end);
    adam.v.assign(ck.v.begin() + shard.begin, ck.v.begin() + shard.end);
    adam.t = ck.adam_t;
    step = ck.step;
    lg->info("resumed from {} at step {}", *resume_from, step);
  }
  const int accum = cfg.train.global_batch / (cfg.train.micro_batch * cfg.parallel.dp);
  const double tokens_per_step = double(cfg.train.global_batch) * double(T);
  const double flops_per_token = train_flops_per_token(cfg.model, T);
  double peak = cfg.kernels.peak_gflops;
  if (peak <= 0) {
    const auto probe = kernels::probe_peak_fp32(threads);
    peak = probe.peak_gflops();
    lg->info("peak probe ({}): {:.1f} GFLOP/s per core; MFU peak {:.1f} GFLOP/s for {} threads "
             "(all threads measured together now: {:.1f})",
             probe.isa, probe.per_core_gflops, peak, threads, probe.all_gflops);
  }
  lg->info("model: {} L={} C={} NH={} F={} V={} (padded {}), {:.2f}M parameters, {:.1f} MFLOP/token",
           cfg.model.family, dims.L, dims.C, dims.NH, dims.F, dims.V, dims.Vp, double(n_params) / 1e6,
           flops_per_token / 1e6);
  lg->info("batch: {} x {} tokens per micro-batch, {} micro-batches per step ({} tokens); gemm={}{} threads={}",
           B, T, accum, tokens_per_step, cfg.kernels.gemm,
           ctx.gemm.backend == kernels::GemmBackend::native
               ? " (" + std::string(kernels::sgemm_kernel_name(ctx.gemm.isa)) + ")"
               : std::string(),
           threads);
  lg->info("run directory: {}", run_dir);
  {
    // Memory of this rank by owner (the peak RSS at the end is the check of this account).
    const double mb = 1.0 / (1 << 20);
    const double params_mb = 4.0 * double(n_params) * mb, opt_mb = 8.0 * double(adam.m.size()) * mb;
    const double act_mb = double(model.activation_bytes()) * mb;
    lg->info("memory (rank {}): parameters {:.1f} MiB, gradients {:.1f} MiB, optimizer state {:.1f} MiB{}, "
             "activations and scratch {:.1f} MiB, total {:.1f} MiB",
             rank, params_mb, params_mb, opt_mb, zero1 ? " (ZeRO-1 shard)" : "", act_mb,
             2 * params_mb + opt_mb + act_mb);
  }
  if (comms)
    lg->info("data parallel: {} ranks, each {} micro-batches of {} per step; {}", cfg.parallel.dp, accum, B,
             zero1 ? "ZeRO-1: gradients reduce-scattered, each rank updates its shard of parameters and Adam state "
                     "(" + std::to_string(shard.size()) + " of " + std::to_string(n_params) + "), parameters all-gathered"
                   : std::string("gradients summed in per-layer buckets overlapped with backward"));

  std::ofstream metrics;
  if (lead) metrics.open(fs::path(run_dir) / "metrics.jsonl", std::ios::app);
  // Under mpirun, stdout is a pseudo-terminal forwarded into the job's output: no redrawn line.
  ProgressLine progress(lead && world == 1 && cfg.logging.progress && !opts.quiet);
  std::optional<parallel::DataParallel> dpar;
  double dp_blocking_s = 0.0;  // one blocking allreduce of the whole gradient arena: the cost to hide
  if (comms && comms->dp.size() > 1) {
    if (!zero1) dpar.emplace(comms->dp, model.grads());
    model.zero_grads();
    comms->dp.barrier();
    const double t0 = MPI_Wtime();
    comm::allreduce(comms->dp, model.grads().data(), n_params, comm::ReduceOp::sum);
    dp_blocking_s = MPI_Wtime() - t0;
    lg->info("data parallel: one blocking allreduce of the {:.1f} MB gradient arena takes {:.1f} ms",
             4e-6 * double(n_params), 1e3 * dp_blocking_s);
  }
  double dp_exposed_total = 0.0;
  std::vector<int32_t> tokens(size_t(B * T)), targets(size_t(B * T));
  const auto save = [&] {
    // Every data-parallel rank holds the same parameters; with ZeRO-1 the Adam state is sharded
    // and gathered to rank 0 first. Rank 0 writes.
    std::vector<float> full_m, full_v;
    if (zero1) {
      full_m = gather_shards(comms->dp, adam.m, n_params);
      full_v = gather_shards(comms->dp, adam.v, n_params);
    }
    if (lead) {
      const CheckpointView ck{step, step * cfg.train.global_batch, adam.t, model.params(),
                              zero1 ? std::span<const float>(full_m) : std::span<const float>(adam.m),
                              zero1 ? std::span<const float>(full_v) : std::span<const float>(adam.v)};
      const std::string dir = save_checkpoint(run_dir, cfg, thash, ck, cfg.checkpoint.keep);
      progress.clear();
      lg->info("checkpoint saved: {}", dir);
    }
    if (comms) comms->world.barrier();  // nobody exits before the checkpoint is complete
  };
  const auto run_eval = [&] {
    if (!can_eval) return;
    const double val = evaluate(model, ctx, data, cfg, comms);
    summary.last_val_loss = val;
    if (lead) metrics << fmt::format("{{\"step\":{},\"val_loss\":{:.6f}}}\n", step, val) << std::flush;
    progress.clear();
    lg->info("step {:>6} | val_loss {:.4f}", step, val);
  };

  const int64_t first_step = step;
  double interval_seconds = 0.0, interval_loss = 0.0;
  int interval_steps = 0;
  const auto loop_start = clock::now();
  while (step < cfg.train.steps) {
    const auto t0 = clock::now();
    ++step;
    model.zero_grads();
    double loss_sum = 0.0;
    double dp_exposed = 0.0;
    for (int micro = 0; micro < accum; ++micro) {
      data.fill_micro_batch(step - 1, micro, dp_rank, tokens.data(), targets.data());
      loss_sum += model.forward(ctx, tokens.data(), targets.data(), B, T);
      // The last micro-batch's backward finalises each bucket: reduce it while backward goes on.
      const bool last = micro == accum - 1;
      model.backward(ctx, tokens.data(), targets.data(), float(1.0 / tokens_per_step),
                     dpar && last ? Model<float>::GradsReady([&](int64_t b, int64_t e) { dpar->ready(b, e); })
                                  : Model<float>::GradsReady());
    }
    if (dpar) {
      dp_exposed = dpar->finish();
      dp_exposed_total += dp_exposed;
    }
    if (zero1) {  // each rank needs only its shard of the summed gradient
      const double t0 = MPI_Wtime();
      comm::reduce_scatter_ring(comms->dp, model.grads().data(), n_params, comm::ReduceOp::sum);
      dp_exposed = MPI_Wtime() - t0;
      dp_exposed_total += dp_exposed;
    }
    const double loss = dp_sum(comms, loss_sum) / tokens_per_step;
    if (!std::isfinite(loss))
      throw std::runtime_error(fmt::format("step {}: loss is {} (diverged): lower optimizer.lr or raise "
                                           "schedule.warmup_steps, then --resume from the last checkpoint",
                                           step, loss));
    const double lr = learning_rate(cfg, step);
    double grad_norm;
    if (zero1) {
      float* g = model.grads().data() + shard.begin;
      grad_norm = std::sqrt(dp_sum(comms, kernels::sum_squares(g, shard.size())));
      clip_to_norm(g, shard.size(), grad_norm, cfg.optimizer.grad_clip);
      adam.step(model.params().data(), model.grads().data(), lr);
      comm::allgather_ring(comms->dp, model.params().data(), n_params);  // every rank's updated shard
    } else {
      grad_norm = clip_grad_norm(model.grads().data(), n_params, cfg.optimizer.grad_clip);
      adam.step(model.params().data(), model.grads().data(), lr);
    }
    const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
    summary.losses.push_back(loss);
    interval_seconds += seconds;
    interval_loss += loss;
    ++interval_steps;

    if (step % cfg.logging.interval == 0 || step == cfg.train.steps) {
      const double tok_s = tokens_per_step * interval_steps / interval_seconds;
      const double step_ms = 1e3 * interval_seconds / interval_steps;
      const double tflops = flops_per_token * tok_s / 1e12;
      const double mfu = tflops * 1e3 / (peak * world);  // peak is per rank
      if (lead)
        metrics << fmt::format("{{\"step\":{},\"loss\":{:.8f},\"lr\":{:.6e},\"grad_norm\":{:.6f},"
                               "\"tokens_per_s\":{:.1f},\"step_ms\":{:.2f},\"tflops\":{:.4f},\"mfu\":{:.4f},"
                               "\"dp_exposed_ms\":{:.3f}}}\n",
                               step, loss, lr, grad_norm, tok_s, step_ms, tflops, mfu, 1e3 * dp_exposed)
                << std::flush;
      progress.clear();
      lg->info("step {:>6}/{} | loss {:.4f} | lr {:.3e} | grad_norm {:.3f} | {:.0f} tok/s | {:.1f} ms/step | "
               "{:.3f} TFLOP/s | MFU {:.1f}%",
               step, cfg.train.steps, interval_loss / interval_steps, lr, grad_norm, tok_s, step_ms, tflops,
               100.0 * mfu);
      interval_seconds = interval_loss = 0.0;
      interval_steps = 0;
    }
    if (can_eval && cfg.logging.eval_interval > 0 && step % cfg.logging.eval_interval == 0 &&
        step != cfg.train.steps)
      run_eval();
    if (cfg.checkpoint.interval > 0 && step % cfg.checkpoint.interval == 0 && step != cfg.train.steps) save();
    // A stop request reaches ranks at slightly different times: they agree before acting.
    double stop_now = opts.stop && opts.stop->load() ? 1.0 : 0.0;
    if (comms && comms->world.size() > 1)
      HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, &stop_now, 1, MPI_DOUBLE, MPI_MAX, comms->world.raw()));
    if (stop_now > 0) {
      progress.clear();
      lg->warn("stop signal received: saving a checkpoint at step {} and exiting", step);
      save();
      summary.preempted = true;
      break;
    }
    const double elapsed = std::chrono::duration<double>(clock::now() - loop_start).count();
    const double eta = elapsed / double(step - first_step) * double(cfg.train.steps - step);
    progress.draw(fmt::format("step {}/{} ({:.0f}%) | loss {:.4f} | ETA {}", step, cfg.train.steps,
                              100.0 * double(step) / double(cfg.train.steps), loss, format_duration(eta)));
  }
  if (!summary.preempted) {
    run_eval();
    save();
  }
  progress.clear();
  summary.steps_done = step;
  const double steps_run = double(std::max<int64_t>(1, step - first_step));
  summary.dp_exposed_fraction = dp_blocking_s > 0 ? dp_exposed_total / steps_run / dp_blocking_s : 0.0;
  if (dp_blocking_s > 0)
    lg->info("data-parallel communication not hidden behind backward: {:.1f} ms per step = {:.0f}% of the {:.1f} ms a "
             "blocking gradient allreduce takes",
             1e3 * dp_exposed_total / steps_run, 100.0 * summary.dp_exposed_fraction, 1e3 * dp_blocking_s);
  summary.seconds = std::chrono::duration<double>(clock::now() - t_start).count();
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  lg->info("peak resident memory (rank {}): {:.1f} MiB", rank, double(usage.ru_maxrss) / 1024.0);
  lg->info("done: {} steps in {}{}", step - first_step, format_duration(summary.seconds),
           summary.last_val_loss >= 0 ? fmt::format(", val_loss {:.4f}", summary.last_val_loss) : "");
  return summary;
}

}  // namespace hokusai
