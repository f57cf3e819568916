// Peak-FLOP/s probe: times a chain of independent fused multiply-adds on the widest vector ISA
// the CPU runs, per core and for all threads at once. The MFU denominator of the trainer and of
// the benchmarks.
#pragma once

#include <string>

#include "kernels/gemm.hpp"

namespace hokusai::kernels {

struct PeakFlops {
  std::string isa;          // "avx512f", "avx2+fma" or "generic"
  double per_core_gflops;   // fp32 GFLOP/s of one thread
  double all_gflops;        // fp32 GFLOP/s of `threads` threads running together, as measured now
  int threads;
  // The MFU denominator: per-core peak times threads. The all-thread measurement is only a
  // cross-check: on a shared VM it drops to 1x when the host puts both vCPUs on one physical
  // core (seen here: 432 then 217 GFLOP/s on 2 threads, minutes apart), while the hardware peak
  // does not change.
  double peak_gflops() const { return per_core_gflops * threads; }
  // bf16 dot-product peak (AVX512_BF16 vdpbf16ps: 2 multiply-adds per fp32 lane) of one core,
  // GFLOP/s; 0 when the CPU has no AVX512_BF16.
  double bf16_per_core_gflops = 0.0;
  // AMX-BF16 tile peak (TDPBF16PS on register-resident tiles) of one core, GFLOP/s; 0 without
  // AMX (or when Linux does not grant the tile state).
  double amx_bf16_per_core_gflops = 0.0;
};

// Runs for about `seconds` in total (split between the two measurements).
PeakFlops probe_peak_fp32(int threads, double seconds = 0.3);

// The GEMM ISA that runs products of precision p fastest on this CPU by the probe: a 16-bit unit
// is used only where its probed peak is at least 0.9x the fp32 FMA peak (packing 16-bit panels
// halves their traffic); where it is slower — vdpbf16ps at 0.49x fp32 on the Xeon (model 207)
// measured here, where bf16 on it trained gpt2-124m at 0.70x fp32 — the fp32 kernel on rounded
// panels (the same numbers). `automatic` when the default choice stands: fp32, fp16 (no CPU has an
// fp16 unit that accumulates in fp32: always the fp32 kernel on rounded panels), HOKUSAI_GEMM_ISA set.
GemmIsa fastest_isa(Precision p, const PeakFlops& probe);
// The threshold above: a 16-bit unit's peak over the fp32 FMA peak from which it is used (the
// planner applies the same rule to a machine file's peaks).
inline constexpr double kSixteenBitWorthIt = 0.9;

}  // namespace hokusai::kernels
