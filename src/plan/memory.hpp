// The cost model's arithmetic that needs no machine: what one rank holds in memory, and the
// pipeline's idle fraction. Pure functions (no MPI, no allocation): the trainer's start-up report
// calls them, and the planner evaluates them for layouts that were never run.
#pragma once

#include <cstdint>
#include <utility>

namespace hokusai::plan {

// Bytes one rank holds during training, by owner (fp32 parameters, gradients and Adam state).
struct MemoryAccount {
  double params = 0, grads = 0, optimizer = 0, activations = 0;
  double comm = 0;               // pipeline transfer and token buffers, the dp reduction's scratch
  double checkpoint_gather = 0;  // ZeRO-1: the whole Adam state gathered on dp rank 0 at a save
  double snapshot = 0;           // checkpoint.async: the writer's copy of parameters and Adam state
  double process = 0;            // code, libraries, MPI, GEMM packing (the machine file's process_mib)
  double steady() const { return params + grads + optimizer + activations + comm + process; }
  // At a checkpoint the gather buffer replaces the reduction's scratch (the dp scratch is freed
  // by then): the larger of the two counts; an async snapshot comes on top.
  double peak() const;
  // The largest term of the peak and its bytes ("optimizer state", ...): what to shrink first.
  std::pair<const char*, double> largest() const;
  double dp_scratch = 0;  // part of comm: the reduction's scratch (a ring chunk: arena / dp)
};

struct MemoryInputs {
  int64_t params = 0;            // parameters this rank holds (its tp slice of its stage)
  int64_t optimizer_params = 0;  // parameters whose Adam state it keeps (its ZeRO-1 shard, or all)
  int64_t activation_bytes = 0;  // the model's activations and scratch over its micro-batch slots
  int64_t pipeline_bytes = 0;    // the pipeline's transfer and token buffers
  int dp = 1;
  bool zero1 = false;
  bool dp_rank_zero = true;  // gathers the Adam state at a checkpoint (ZeRO-1), writes async snapshots
  bool async_snapshot = false;  // checkpoint.async
};

MemoryAccount account_memory(const MemoryInputs& in);

// The fraction of a step a stage idles while the pipeline fills and drains: (P - 1) / (v*m + P - 1)
// for P stages, v model chunks per stage (interleaved 1F1B) and m micro-batches per step.
double pipeline_bubble(int stages, int chunks, int micro_batches);

}  // namespace hokusai::plan
