// A machine description for the planner (configs/machines/*.yaml): what one node computes, holds
// and sends. `hokusai calibrate` measures the local machine's file; others (Fugaku) are written
// from public figures and models, each such number marked `modelled` in the file's comments and
// `source` field. Pure data and its YAML form: no probe, no MPI here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hokusai::plan {

// One measured GEMM: C(m x n) += op_a(A) · op_b(B) with inner dimension k, on `threads` threads.
// ops: "NT" (forward of a linear: activations · weightsᵀ), "NN" (input gradient), "TN" (weight
// gradient), as the model calls them.
struct GemmPoint {
  std::string ops = "NT";
  int64_t m = 0, n = 0, k = 0;
  int threads = 1;
  double gflops = 0;
  // One-thread entries: GFLOP/s of this product on one core while every core of the node runs
  // it at once (shared caches and memory bandwidth); 0 if not measured.
  double busy_gflops = 0;
  // The products' input precision (train.precision: fp32 | bf16 | fp16). `hokusai calibrate`
  // times the table in fp32 and, for a config with a 16-bit train.precision, in that precision
  // too (on the CPU's 16-bit unit where the native backend has one, else its rounded panels).
  std::string precision = "fp32";
};

// One measured causal attention (forward and backward of one (sequence, head) pair of length T
// and head size HS) on `threads` threads sharing the batch x heads tasks.
struct AttentionPoint {
  std::string kind = "flash";  // flash | gemm
  int64_t T = 0, HS = 0;
  int threads = 1;
  double forward_us = 0, backward_us = 0;  // per (sequence, head)
  // The products' precision, as in GemmPoint: a 16-bit calibration measures both kinds in fp32
  // and in its train.precision (the inner products on the unit the trainer picks).
  std::string precision = "fp32";
};

// A rate measured on `threads` threads: the elementwise ops' effective bandwidth (GB/s of the
// bytes elementwise_bytes() counts), the cross-entropy's ns per logit (forward + backward), the
// optimizer's ns per parameter (AdamW, gradient norm, zeroing).
struct RatePoint {
  int threads = 1;
  double value = 0;
};

// One tier of the network: the cost of moving n bytes is alpha + n / bandwidth; a reduction
// adds n / reduce_gbs (the γ term).
struct LinkTier {
  double alpha_us = 1.0;
  double bandwidth_gbs = 10.0;  // one link (one direction)
  double reduce_gbs = 10.0;     // local sum of received data, bytes per second
};

struct MachineSpec {
  std::string name, cpu;
  std::string source;  // "measured (hokusai calibrate, <date>)" or "modelled (...)"
  int cores_per_node = 1;
  int ranks_per_node = 1;  // default placement; `plan --nodes` divides the ranks by it
  int max_nodes = 1;       // 1: a single machine (every layout's ranks share it)
  double peak_gflops_fp32 = 0, peak_gflops_bf16 = 0, peak_gflops_fp16 = 0;  // per core
  double memory_gib = 0;        // usable by the job on one node
  double process_mib = 0;       // per rank besides the model: code, libraries, MPI, GEMM packing
  double gemm_efficiency = 0.8; // of peak, for shapes and thread counts without a table entry
  double attention_efficiency = 0.5;  // of peak on the attention's flops, without a table entry
  double dp_overlap = 1.0;      // fraction of the last backward the gradient reduction can hide behind
  std::vector<GemmPoint> gemm;
  std::vector<AttentionPoint> attention;
  std::vector<RatePoint> op_bandwidth;  // GB/s
  std::vector<RatePoint> xent_ns;       // per logit
  std::vector<RatePoint> optimizer_ns;  // per parameter
  // A whole forward + backward of the model measured over the sum of its parts' predictions (the
  // parts are timed alone, with warm caches): multiplies the compute terms. 1 if absent.
  std::vector<RatePoint> compute_factor;
  // A core's GEMM time when `threads` cores of the node compute at once (each its own product),
  // over its time alone: the shared caches' and memory's toll on ranks that share a node.
  std::vector<RatePoint> contention;
  // Network: `topology` as comm.topology (flat, 4x4x4x2x3x2, mesh:...), the default when the
  // run's config names none; links per node and the injection limit cap the torus algorithm.
  std::string topology = "flat";
  LinkTier intra_node, inter_node;
  int links_per_node = 1;
  double injection_gbs = 0;  // 0: unlimited
};

// Reads a machine file; throws std::runtime_error naming the file and the field.
MachineSpec load_machine(const std::string& path);
// The YAML form (calibrate writes it; load_machine reads it back equal).
std::string machine_yaml(const MachineSpec& m, const std::string& header_comment);

// Lookups with the nearest measured point (log distance over the shape), scaled as documented
// in machine.cpp; the fallbacks use the efficiency fields.
// `busy`: cores of the node computing at once (the rank's and the other ranks' threads): above
// `threads`, the product slows by the nearest one-thread entry's gflops / busy_gflops.
// `precision`: the table of that precision (GemmPoint::precision); has_gemm_table says whether
// the file has one (the planner otherwise scales the fp32 table by the peaks: cost.cpp).
double gemm_seconds(const MachineSpec& m, const std::string& ops, int64_t M, int64_t N, int64_t K, int threads,
                    int busy = 0, const std::string& precision = "fp32");
bool has_gemm_table(const MachineSpec& m, const std::string& precision);
// Attention in `precision` from that precision's points where the file has any of this kind,
// else from the fp32 ones (has_attention_table says which).
double attention_seconds(const MachineSpec& m, const std::string& kind, bool backward, int64_t sequences_heads,
                         int64_t T, int64_t HS, int threads, const std::string& precision = "fp32");
bool has_attention_table(const MachineSpec& m, const std::string& kind, const std::string& precision);
double op_seconds(const MachineSpec& m, double bytes, int threads);
double xent_seconds(const MachineSpec& m, double logits, int threads);
double optimizer_seconds(const MachineSpec& m, double params, int threads);
double compute_factor(const MachineSpec& m, int threads);
double contention(const MachineSpec& m, int busy_cores);

}  // namespace hokusai::plan
