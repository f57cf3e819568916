#include "kernels/gemm.hpp"

#include <stdexcept>

#include "kernels/gemm_backends.hpp"
#include "kernels/ref/gemm_ref.hpp"

namespace hokusai::kernels {

bool gemm_backend_available(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::native: return true;
    case GemmBackend::reference: return true;
    case GemmBackend::openblas: return detail::kHaveOpenBlas;
    case GemmBackend::onednn: return detail::kHaveOneDnn;
  }
  return false;
}

void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // nothing to multiply: C := beta * C, and beta == 0 must not read C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  switch (ctx.backend) {
    case GemmBackend::native:
      detail::gemm_native(ctx, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    case GemmBackend::openblas:
      detail::gemm_openblas(ctx.threads, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    case GemmBackend::onednn:
      detail::gemm_onednn(ctx.threads, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    case GemmBackend::reference:
      ref::gemm<float>(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
  }
}

void gemm(const GemmContext&, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  ref::gemm<double>(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace hokusai::kernels
