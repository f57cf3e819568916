// The planner: memory per pipeline stage and time per step of a run's layout on a machine, and
// the search over layouts. Pure arithmetic over the config, the model's size tables
// (param_table, Model::activation_bytes — counted, never allocated), the pipeline schedule and a
// MachineSpec: no MPI, no allocation of model memory. `hokusai plan` prints it; the trainer's
// start-up memory check calls stage_memory().
//
// Time model, per micro-batch and stage s (docs/planning.md has the formulas and what each term
// is calibrated from):
//   t_s = Σ GEMMs (measured table) + attention (measured per sequence·head, ∝ T²)
//       + elementwise bytes / op bandwidth + recomputation + tp allreduces (α-β-γ, the policy's
//       algorithm) + pipeline transfers (α + nβ, both directions)
//   pipeline = m·max_s t_s + (Σ_s t_s − max_s t_s) / v       (1F1B; uniform stages: (m+P−1)·t)
//   step = pipeline + max_s (dp reduction not hidden behind the last backward + optimizer)
//   and, when the ranks of a node need more cores than it has, at least the node's total core
//   time over its cores (the ranks time-share).
#pragma once

#include <string>
#include <vector>

#include "hokusai/config.hpp"
#include "hokusai/model.hpp"
#include "plan/machine.hpp"
#include "plan/memory.hpp"

namespace hokusai::plan {

// Bytes the elementwise ops of one block move per micro-batch of N tokens (norms, biases,
// residual adds, the activation function, rotary; backward also the zeroed gradient buffers).
// `hokusai calibrate` times the real ops and divides these bytes by the time, so the machine
// file's op_bandwidth and this count belong together.
struct ElementwiseBytes {
  double forward = 0, backward = 0;
};
ElementwiseBytes elementwise_bytes(const ModelDims& d, int64_t N);

// The matrix products of one block and of the output projection, in the order and operand
// layout the model calls them (`hokusai calibrate` measures exactly these shapes).
struct GemmCall {
  std::string ops;  // NT, NN, TN
  int64_t m = 0, n = 0, k = 0;
};
std::vector<GemmCall> layer_gemms(const ModelDims& d, int64_t N, bool backward);
std::vector<GemmCall> head_gemms(const ModelDims& d, int64_t N, bool backward);

// The model's dimensions of pipeline stage `stage` (tp rank 0) under the config's layout.
ModelDims stage_dims(const Config& cfg, int stage);
// How much faster the linears' products run in precision p than the machine file's fp32 table
// (MODELLED: the table is measured in fp32): for bf16 the ratio of the file's per-core peaks where
// the trainer would use the 16-bit unit (at least kernels::kSixteenBitWorthIt of the fp32 peak, the
// rule of kernels::fastest_isa), else 1 — the rounded-panel path runs at the fp32 rate; for fp16
// always 1, whatever the file's fp16 peak (kernels::sixteen_bit_unit_can_exist: fp16 FMAs
// accumulate in fp16, hokusai's fp16 products in fp32). The attention keeps its fp32 rate (its
// exponentials do not speed up).
double precision_speedup(const MachineSpec& m, kernels::Precision p);

// Memory of one rank of pipeline stage `stage` (tp rank 0; dp rank 0, which gathers ZeRO-1's
// Adam state and writes async snapshots), process overhead excluded. Throws ConfigError-style
// std::invalid_argument when the layout does not split the model.
MemoryAccount stage_memory(const Config& cfg, int stage, Recompute recompute);

// The recomputation mode of stage s under parallel.recompute and parallel.recompute_stages.
Recompute stage_recompute(const Config& cfg, int stage);

// One kind of message a rank of the stage takes part in: `count` collectives (or point-to-point
// receives) of `bytes` over its tp, pp or dp group, each planned at `seconds`. tp and pp: per
// micro-batch; dp: per step (ZeRO-1: a reduce-scatter and an allgather, "dp_zero1"). The
// SimGrid replay (scripts/simulate-plan.sh) runs exactly this list with the comm layer's code.
struct Transfer {
  std::string group;      // tp, pp, dp, dp_zero1, tied (the tied embedding's sum over the pipeline's ends)
  std::string algorithm;  // the allreduce the trainer runs (comm::AllreduceAlgorithm's name); p2p
  double bytes = 0;
  // How many per micro-batch: fractional for what runs once per step (the sequence-parallel
  // norms' gradient sums: L per step, L / m per micro-batch).
  double count = 0;
  double seconds = 0;  // one of them
};

struct StagePlan {
  int stage = 0;
  int64_t layers = 0;
  Recompute recompute = Recompute::none;
  MemoryAccount mem;  // process overhead in mem.process
  // Seconds per micro-batch (all the stage's chunks).
  double forward_s = 0, backward_s = 0, recompute_s = 0, tp_comm_s = 0, pp_transfer_s = 0;
  // Per step, after backward: the tied embedding's sum over the pipeline's ends (blocking), the dp
  // reduction (dp_s) and what of it backward did not hide, the optimizer.
  double tied_s = 0, dp_s = 0, dp_exposed_s = 0, optimizer_s = 0;
  std::vector<Transfer> transfers;  // what tp_comm_s, pp_transfer_s and dp_s (and the tied sum) add up
  double per_micro_batch() const { return forward_s + backward_s + recompute_s + tp_comm_s + pp_transfer_s; }
  std::string largest_memory_term() const;
};

struct Plan {
  Config cfg;  // the layout planned (parallel.*, train.micro_batch, recompute per stage)
  int nodes = 1, ranks_per_node = 1, threads = 1, micro_batches = 1;
  std::vector<StagePlan> stages;
  double node_memory_bytes = 0;     // usable per rank: the node's memory / ranks per node
  double step_s = 0, pipeline_s = 0, bubble_s = 0, tail_s = 0;
  std::string torus;                // the dp groups' torus ("" when none), e.g. 2x3x2x4x4x4
  double oversubscription = 1.0;    // core time needed / cores (> 1: the ranks time-share)
  double tokens_per_s = 0, mfu = 0, days = 0;  // days: train.steps steps
  double peak_bytes() const;        // the largest stage's peak
  bool fits() const { return peak_bytes() <= node_memory_bytes; }
  std::string limit;                // the term that bounds the step time
};

// The config's own layout on `nodes` nodes (0: the machine's default placement).
Plan plan_run(const Config& cfg, const MachineSpec& machine, int nodes = 0);

// Every valid layout for `nodes` nodes: tp dividing the heads (and kv heads), pp dividing the
// layers, dp the rest with the global batch divisible, micro-batch, virtual stages, ZeRO-1, and
// per stage the least recomputation that fits. Sorted: fitting plans by step time, then the rest.
std::vector<Plan> search_layouts(const Config& cfg, const MachineSpec& machine, int nodes);

// Human-readable breakdown (per stage memory by term against the node's, time by term) and JSON.
std::string format_plan(const Plan& p, const MachineSpec& machine);
std::string format_search(const std::vector<Plan>& plans, const MachineSpec& machine, size_t top);
std::string plan_json(const Plan& p);

}  // namespace hokusai::plan
