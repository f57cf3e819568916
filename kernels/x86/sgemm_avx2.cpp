// AVX2+FMA fp32 microkernel. 6x16: 12 ymm accumulators + 2 B vectors + 1 broadcast = 15 of 16
// registers; 12 independent FMAs cover 2 pipes x 4-5 cycles latency (Haswell..Zen4).
#include <immintrin.h>

#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

void sgemm_avx2_6x16(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int MR = 6;
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_load_ps(bp + p * 16), b1 = _mm256_load_ps(bp + p * 16 + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + p * MR + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 2; ++v) {
      float* cp = c + i * ldc + 8 * v;
      __m256 r = _mm256_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp), r);
      _mm256_storeu_ps(cp, r);
    }
}

}  // namespace hokusai::kernels
