// The SVE microkernel for the shared driver (contract: kernels/ukernel.hpp), sized for A64FX.
//
// Tile: MR = 10 rows x NR = 2 vectors (A64FX: 10 x 32 fp32). Why this shape:
//   - A64FX has two FMA pipes with 9-cycle latency: 2 x 9 = 18 independent accumulators keep
//     both busy; 10 x 2 = 20 accumulators (of 32 z-registers) cover that with two to spare.
//   - Per k step: 2 vector loads of B (ld1w), 10 load-and-broadcasts of A (ld1rw, no indexed
//     FMLA, which is slow on A64FX), 20 FMAs. 20 FMAs need 10 cycles on 2 pipes while the
//     12 loads need 6 cycles on the 2 load pipes, so the loop is FMA-bound.
//   - A 14 x 2 or 12 x 2 tile would need more live registers than remain after 24-28
//     accumulators + 2 B vectors + broadcast temporaries; llvm-mca (scripts/sve-model.sh)
//     predicts the 10 x 2 loop at its FMA bound (docs/performance.md).
// The tile is vector-length agnostic: NR = 2 * svcntw() is read at run time, so the same code
// is the A64FX (512-bit) kernel and the Graviton3 (256-bit) / Grace (128-bit) kernel.
//
// fp16 (train.precision: fp16, the A64FX's 16-bit format: it has no bf16) runs on this kernel
// too, on panels rounded to half while they are packed (kernels/gemm_native.cpp, half_kernel):
// products accumulate in fp32, and A64FX's fp16 FMAs (2x the fp32 rate) accumulate in fp16, so
// fp32 FMAs on the rounded values are the fastest way to run them. An fp16-storage variant (half
// panels widened in the loop) modelled at 62% of the FMA peak against this loop's 99.8% and was
// dropped (docs/fugaku.md).
#include <arm_sve.h>

#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

namespace {

constexpr int kMr = 10;

// C rows := alpha * acc + beta * C (beta == 0 never reads C).
inline void store_row(svbool_t pg, float* c, int64_t vl, svfloat32_t acc0, svfloat32_t acc1, float alpha,
                      float beta) {
  svfloat32_t r0 = svmul_n_f32_x(pg, acc0, alpha), r1 = svmul_n_f32_x(pg, acc1, alpha);
  if (beta != 0.0f) {
    r0 = svmla_n_f32_x(pg, r0, svld1_f32(pg, c), beta);
    r1 = svmla_n_f32_x(pg, r1, svld1_f32(pg, c + vl), beta);
  }
  svst1_f32(pg, c, r0);
  svst1_f32(pg, c + vl, r1);
}

}  // namespace

#define HK_ACC_DECL(i) svfloat32_t c##i##0 = svdup_n_f32(0.0f), c##i##1 = svdup_n_f32(0.0f)
#define HK_FMA(i, ai)                       \
  c##i##0 = svmla_f32_x(pg, c##i##0, b0, ai); \
  c##i##1 = svmla_f32_x(pg, c##i##1, b1, ai)
#define HK_ALL(X) X(0); X(1); X(2); X(3); X(4); X(5); X(6); X(7); X(8); X(9)
#define HK_STORE(i) store_row(pg, c + (i) * ldc, vl, c##i##0, c##i##1, alpha, beta)

void sgemm_sve_10x2v(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  const svbool_t pg = svptrue_b32();
  const int64_t vl = int64_t(svcntw());
  HK_ALL(HK_ACC_DECL);
  for (int64_t p = 0; p < k; ++p) {
    const svfloat32_t b0 = svld1_f32(pg, bp), b1 = svld1_vnum_f32(pg, bp, 1);
    // svdup of a loaded scalar compiles to ld1rw (load and broadcast).
#define HK_STEP(i) HK_FMA(i, svdup_n_f32(ap[i]))
    HK_ALL(HK_STEP);
#undef HK_STEP
    ap += kMr;
    bp += 2 * vl;
  }
  HK_ALL(HK_STORE);
}

#undef HK_ACC_DECL
#undef HK_FMA
#undef HK_ALL
#undef HK_STORE

// Read from the CPU, not svcntb(): a fixed-length build folds svcntb() to its compile-time
// constant, which would make the vector-length check (sve/vector_length.cpp) vacuous.
int sve_vector_bits() {
  uint64_t bytes;
  asm volatile("cntb %0" : "=r"(bytes));
  return int(bytes) * 8;
}

}  // namespace hokusai::kernels
