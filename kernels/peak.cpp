#include "kernels/peak.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "kernels/gemm.hpp"
#include "kernels/ukernel.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hokusai::kernels {

namespace {

// Every probe runs `iters` rounds of kAcc independent FMAs per vector: 16 accumulators cover
// latency x throughput of every x86 core we target (Zen4: 4 cycles x 2 pipes = 8 needed).
constexpr int kAcc = 16;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) double fma_avx512(long iters) {
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  alignas(64) float out[16];
  __m512 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
  _mm512_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return double(iters) * kAcc * 16 * 2;
}

// 28 independent vdpbf16ps chains (its latency is longer than an FMA's); 64 flops each.
__attribute__((target("avx512f,avx512bf16"))) double dp_bf16(long iters) {
  constexpr int kChains = 28;
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_setzero_ps();
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33803380);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 28
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  alignas(64) float out[16];
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  _mm512_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return double(iters) * kChains * 16 * 4;
}

__attribute__((target("avx2,fma"))) double fma_avx2(long iters) {
  __m256 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  alignas(32) float out[8];
  __m256 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm256_add_ps(s, acc[i]);
  _mm256_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return double(iters) * kAcc * 8 * 2;
}
#endif

double fma_generic(long iters) {
  float acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = float(i) * 1e-3f;
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kAcc; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  float s = 0;
  for (float a : acc) s += a;
  volatile float sink = s;
  (void)sink;
  return double(iters) * kAcc * 2;
}

using ProbeFn = double (*)(long);

ProbeFn pick(std::string& isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    isa = "avx512f";
    return fma_avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    isa = "avx2+fma";
    return fma_avx2;
  }
#endif
  isa = "generic";
  return fma_generic;
}

// GFLOP/s of `threads` threads each running fn, best of several short rounds (the machine is
// shared: the best round is the least disturbed one).
double measure(ProbeFn fn, int threads, double seconds) {
  long iters = 1 << 16;
  using clock = std::chrono::steady_clock;
  double best = 0.0;
  const auto deadline = clock::now() + std::chrono::duration<double>(seconds);
  do {
    double flops = 0.0;
    const auto t0 = clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += fn(iters);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::max(best, flops / dt * 1e-9);
    if (dt < 0.01) iters *= 2;
  } while (clock::now() < deadline);
  return best;
}

}  // namespace

PeakFlops probe_peak_fp32(int threads, double seconds) {
  PeakFlops p;
  ProbeFn fn = pick(p.isa);
  p.threads = std::max(1, threads);
  p.per_core_gflops = measure(fn, 1, seconds / 2);
  p.all_gflops = p.threads == 1 ? p.per_core_gflops : measure(fn, p.threads, seconds / 2);
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512bf16")) p.bf16_per_core_gflops = measure(dp_bf16, 1, seconds / 4);
  if (gemm_isa_supported(GemmIsa::amx)) p.amx_bf16_per_core_gflops = measure(amx_bf16_peak_flops, 1, seconds / 4);
#endif
  return p;
}

GemmIsa fastest_isa(Precision p, const PeakFlops& probe) {
  if (p != Precision::bf16 || std::getenv("HOKUSAI_GEMM_ISA")) return GemmIsa::automatic;
  const double fp32 = probe.per_core_gflops, dot = probe.bf16_per_core_gflops, amx = probe.amx_bf16_per_core_gflops;
  constexpr double kWorthIt = kSixteenBitWorthIt;
  if (amx > 0 && amx >= dot && amx >= kWorthIt * fp32 && gemm_isa_supported(GemmIsa::amx)) return GemmIsa::amx;
  if (dot > 0 && dot >= kWorthIt * fp32 && gemm_isa_supported(GemmIsa::avx512bf16)) return GemmIsa::avx512bf16;
  if ((amx > 0 || dot > 0) && gemm_isa_supported(GemmIsa::avx512)) return GemmIsa::avx512;  // fp32 FMAs win
  return GemmIsa::automatic;
}

}  // namespace hokusai::kernels
