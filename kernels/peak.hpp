// Peak-FLOP/s probe: times a chain of independent fused multiply-adds on the widest vector ISA
// the CPU runs, per core and for all threads at once. The MFU denominator of the trainer and of
// the benchmarks.
#pragma once

#include <string>

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

}  // namespace hokusai::kernels
