// Optimizer, learning-rate schedule and the training loop of one rank.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/grid.hpp"
#include "hokusai/config.hpp"
#include "hokusai/model.hpp"

namespace hokusai::comm {
struct GridComms;  // comm/grid_comm.hpp
}

namespace hokusai {

// Learning rate of optimizer step `step` (1-based): linear warm-up from 0 over warmup_steps, then
// cosine or linear decay to min_lr at decay_steps (or train.steps), then min_lr; constant keeps lr.
double learning_rate(const Config& cfg, int64_t step);

// AdamW over the range [shard.begin, shard.end) of the parameter arena (the whole arena, or one
// data-parallel rank's ZeRO-1 shard); weight decay only on tensors whose TensorSpec says so
// (matrices), unless optimizer.decay_all. m and v hold the shard only: m[i] belongs to parameter
// shard.begin + i.
class AdamW {
 public:
  // huge_pages: m and v advised for transparent huge pages (kernels.huge_pages, hokusai/memory.hpp).
  AdamW(const std::vector<TensorSpec>& table, const OptimizerConfig& cfg, comm::Range shard, bool huge_pages = false);
  AdamW(const std::vector<TensorSpec>& table, const OptimizerConfig& cfg, bool huge_pages = false)
      : AdamW(table, cfg, comm::Range{0, arena_size(table)}, huge_pages) {}
  // params and grads: the whole arenas (only the shard is read and updated). grad_scale
  // multiplies every gradient as it is read (clip_scale's factor; grads stay as they are).
  void step(float* params, const float* grads, double lr, double grad_scale = 1.0);
  const comm::Range& shard() const { return shard_; }
  int64_t t = 0;  // steps taken (bias correction)
  std::vector<float> m, v;
  int64_t huge_page_bytes = 0;  // of m and v, advised for huge pages

 private:
  std::vector<TensorSpec> table_;
  OptimizerConfig cfg_;
  comm::Range shard_;
};

// The factor that brings gradients of global L2 norm `norm` to at most max_norm (0: no
// clipping): max_norm / (norm + 1e-6) above it, else 1. AdamW::step applies it as it reads them.
double clip_scale(double norm, double max_norm);

struct TrainOptions {
  bool resume = false;    // continue from the newest checkpoint in logging.run_dir
  std::string name;       // run name for the default run directory (config file stem)
  // Set by SIGTERM/SIGUSR1 (batch systems send them before the wall-clock limit): the loop saves
  // a checkpoint at the next step boundary and returns with preempted = true.
  const std::atomic<bool>* stop = nullptr;
  bool quiet = false;     // no console output (tests)
  // Start from these weights (hokusai train --init-from): a Hugging Face directory (config.json +
  // safetensors) or a hokusai serial checkpoint / run directory; any parallel layout takes its
  // slices. Adam state, step and data position start afresh.
  std::string init_from;
  // Evaluate the starting model (the resumed checkpoint, --init-from's weights, or a fresh
  // initialisation) on the validation batches and return: no step, no save, no metrics line.
  bool eval_only = false;
  // Fault injection for tests (hokusai train --inject-nonfinite-step N): rank 0 makes one of its
  // gradients NaN after step N's backward, as an overflow would. 0: never.
  int64_t inject_nonfinite_step = 0;
  // (hokusai train --inject-slow-rank R:MS): world rank R sleeps MS milliseconds in every step's
  // compute, as a throttled or shared node would. R < 0: never.
  int inject_slow_rank = -1;
  int inject_slow_ms = 0;
  // Threads per rank when kernels.threads is 0 and OMP_NUM_THREADS is unset (main: the CPUs
  // this rank shares with no other rank of its node, comm::cpus_per_rank); 0 = all it may use.
  int default_threads = 0;
};

struct TrainSummary {
  std::string run_dir;
  int64_t steps_done = 0;
  std::vector<double> losses;  // per step of this invocation
  double last_val_loss = -1.0;
  double seconds = 0.0;
  bool preempted = false;
  int64_t skipped_steps = 0;  // non-finite steps skipped (train.skip_nonfinite)
  // Data-parallel communication not hidden behind backward, per step, divided by the time of one
  // blocking allreduce of the gradient arena (0 without data parallelism).
  double dp_exposed_fraction = 0.0;
};

// Throws ConfigError when parallel.tp * pp * dp is not the job's rank count.
void check_rank_count(const Config& cfg, int ranks);

// Trains per cfg (validated) on this rank of the job `comms` describes (the tp x pp x dp grid of
// cfg.parallel, placed on the machine: comm::GridComms::build; a one-rank grid for one process),
// and writes logs, metrics, config and checkpoints into the run directory. Collective over
// comms.world. Throws ConfigError/DataError/std::runtime_error with a one-line message.
TrainSummary train(Config cfg, const comm::GridComms& comms, const TrainOptions& opts);

}  // namespace hokusai
