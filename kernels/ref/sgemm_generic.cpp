// The named portable microkernel: plain C++ the compiler vectorises for whatever the baseline
// ISA is. 4x16: 64 accumulators fit in 16 SSE registers' worth of lanes x 4; it exists for
// correctness and portability, not speed.
#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

void sgemm_generic_4x16(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int MR = 4, NR = 16;
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < k; ++p)
    for (int i = 0; i < MR; ++i) {
      const float a = ap[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += a * bp[p * NR + j];
    }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      c[i * ldc + j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}

}  // namespace hokusai::kernels
