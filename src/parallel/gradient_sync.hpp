// GradientSync: everything between "backward produced a gradient range" and "the optimizer may
// step", and back from the optimizer to the parameters every rank uses:
//   - data parallelism: the arena summed over dp in per-layer buckets overlapped with backward
//     (DataParallel), on the algorithm comm.dp_allreduce or the policy picks for the placement;
//   - tied embeddings over a pipeline: the first stage's wte and the last stage's copy both take
//     the sum of their gradients, before the bucket holding wte is reduced over dp;
//   - ZeRO-1: the gradient reduce-scattered so each dp rank holds the sum of its shard, in the same
//     per-layer buckets as plain dp and overlapped with backward; the optimizer steps that shard;
//     the parameters all-gathered per bucket, overlapped with the next forward, which waits for a
//     bucket only when it reaches the layer (params_gate); the shards' Adam state gathered for a
//     checkpoint. Bucket chunks follow the global shard boundaries and the ring's order of
//     additions, so the sums are bit for bit those of one reduce-scatter of the whole arena;
//   - the global gradient norm over tp, pp and dp.
// The trainer calls it in a few verbs per step: on_ready() for the last micro-batch's backward,
// finish() after backward, grad_norm() before clipping, after_step() after the optimizer; the
// model calls params_gate() before it reads a range; complete_params() before anything else reads
// the parameters (a checkpoint).
// One process (a one-rank job, or a build without MPI): every communicator has size 1.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <optional>
#include <string>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/grid_comm.hpp"
#include "comm/range.hpp"
#include "hokusai/config.hpp"
#include "hokusai/model.hpp"
#include "parallel/data_parallel.hpp"

namespace hokusai::parallel {

class GradientSync {
 public:
  // Reads parallel.zero1 and comm.dp_allreduce; throws ConfigError when the algorithm asked for
  // does not fit the placement. `comms` and `model` must outlive this object.
  GradientSync(const comm::GridComms& comms, Model<float>& model, const Config& cfg);
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  bool zero1() const { return zero1_; }
  // This rank's part of the arena the optimizer updates: its ZeRO-1 shard, or all of it.
  comm::Range shard() const { return shard_; }
  // The wte range this stage shares with the other end of the pipeline (empty if none).
  comm::Range tied_wte() const { return tied_wte_; }

  // The callback the step's last micro-batch passes to backward (null when nothing overlaps it).
  // Call once per step, before that backward.
  Model<float>::GradsReady on_ready();
  // After the step's backward: tied-embedding sum, the remaining dp buckets, ZeRO-1's
  // reduce-scatter. Returns the seconds each took after backward: the tied sum (blocking, a
  // pipeline wait) and the dp communication backward did not hide (with ZeRO-1 also the waits
  // for gathered parameters in this step's forward).
  struct Exposed {
    double tied = 0.0, dp = 0.0;
  };
  Exposed finish();
  // The norm of the global gradient (this rank's shard; tp-split tensors summed over tp, the
  // replicated ones counted once, the tied copy left out, stages and shards summed).
  double grad_norm(const ComputeContext& ctx) const;
  // After the optimizer stepped this rank's shard of `params`: ZeRO-1 starts all-gathering the
  // shards, bucket by bucket; they complete in the next forward (params_gate) or complete_params().
  void after_step(float* params);
  // The callback forward calls before it reads parameters [begin, end) (ComputeContext::
  // params_needed): waits for the buckets of that range; empty without ZeRO-1.
  std::function<void(int64_t, int64_t)> params_gate();
  // Waits for every parameter gather in flight (before a checkpoint reads the parameters) and
  // frees the reduce-scatter buffers, which the checkpoint's Adam-state gather replaces.
  void complete_params();
  // The whole optimizer-state vector on dp rank 0 from each rank's shard (ZeRO-1); empty on the
  // other ranks, and without ZeRO-1 (the caller's vector is already whole).
  std::vector<float> gather_shards(const std::vector<float>& shard_state) const;

  // One blocking allreduce of the whole gradient arena (seconds, 0 without dp; the algorithm
  // it ran): the communication the overlap must hide. Clobbers the gradients.
  struct Timed {
    double seconds = 0.0;
    std::string algorithm;
  };
  Timed measure_blocking_allreduce();
  // One line per collective this component runs, with the algorithm chosen for it.
  std::vector<std::string> describe() const;

 private:
  const comm::GridComms& comms_;
  Model<float>& model_;
  int64_t n_params_;
  bool zero1_ = false;
  comm::Range shard_{0, 0}, tied_wte_{0, 0};
  std::string dp_algorithm_setting_;      // comm.dp_allreduce as written
  std::optional<comm::Range> deferred_;  // the bucket holding the tied wte, reduced after its sum
  comm::AllreduceAlgorithm algorithm_ = comm::AllreduceAlgorithm::automatic;  // comm.dp_allreduce
  std::optional<DataParallel> buckets_;  // plain dp
  // ZeRO-1: the step's buckets (as backward reported them), their reduce-scatters in flight, the
  // parameter gathers in flight (with their ranges), and the time forward waited for them.
  std::vector<comm::Range> zero1_buckets_;
  std::vector<comm::AllreduceHandle> scatters_;
  std::deque<std::vector<float>> scatter_scratch_;  // their receive buffers, kept between steps
  std::vector<float> tied_scratch_;                 // the tied-embedding sum's receive buffer
  std::vector<std::pair<comm::Range, comm::AllreduceHandle>> gathers_;
  double gather_wait_s_ = 0.0;
  void scatter(comm::Range bucket);
  std::vector<comm::Range> shard_chunks(comm::Range bucket) const;
};

}  // namespace hokusai::parallel
