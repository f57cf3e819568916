// AVX-512 fp32 microkernels. Rows of C are vectors along N (C is row-major): per k step, NR/16
// vector loads of the B panel, MR broadcasts of A, MR*NR/16 FMAs.
// The shipped tile, 14x32, was chosen by measurement (bench_gemm --tiles; docs/performance.md):
// 28 accumulators + 2 B vectors + 1 broadcast = 31 of 32 zmm registers; 28 independent FMAs
// cover 2 FMA pipes x 4 cycles of latency 3.5 times over.
#include <immintrin.h>

#include "kernels/ukernel.hpp"
#include "kernels/x86/sgemm_avx512_tiles.hpp"

namespace hokusai::kernels {

template <int MR, int NV>
void sgemm_avx512_tile(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int NR = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // C rows sit ldc apart (8 KiB for ldc = 2048: the same L1 sets); fetch them while the k loop
  // runs so the final update does not stall.
  if (beta != 0.0f) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  for (int64_t p = 0; p < k; ++p) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(bp + p * NR + 16 * v);
    _mm_prefetch(reinterpret_cast<const char*>(bp + (p + 8) * NR), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[p * MR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), r);
      _mm512_storeu_ps(cp, r);
    }
}

void sgemm_avx512_14x32(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  sgemm_avx512_tile<14, 2>(k, ap, bp, c, ldc, alpha, beta);
}

// Candidates measured against the shipped tile (bench_gemm --tiles).
const SgemmTileCandidate kAvx512TileCandidates[] = {
    {"sgemm_avx512_14x32", 14, 32, sgemm_avx512_tile<14, 2>},
    {"sgemm_avx512_12x32", 12, 32, sgemm_avx512_tile<12, 2>},
    {"sgemm_avx512_8x48", 8, 48, sgemm_avx512_tile<8, 3>},
    {"sgemm_avx512_6x64", 6, 64, sgemm_avx512_tile<6, 4>},
    {"sgemm_avx512_28x16", 28, 16, sgemm_avx512_tile<28, 1>},
};
const int kAvx512TileCandidateCount = sizeof(kAvx512TileCandidates) / sizeof(kAvx512TileCandidates[0]);

}  // namespace hokusai::kernels
