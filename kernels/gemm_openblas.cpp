#include <stdexcept>

#include "kernels/gemm_backends.hpp"

#ifdef HOKUSAI_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace hokusai::kernels::detail {

#ifdef HOKUSAI_HAVE_OPENBLAS
const bool kHaveOpenBlas = true;

void gemm_openblas(int threads, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                   int64_t ldc) {
  // OpenBLAS keeps its own thread pool; set it per call so the context, not a global, decides.
  if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
  cblas_sgemm(CblasRowMajor, op_a == Op::N ? CblasNoTrans : CblasTrans,
              op_b == Op::N ? CblasNoTrans : CblasTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}
#else
const bool kHaveOpenBlas = false;

void gemm_openblas(int, Op, Op, int64_t, int64_t, int64_t, float, const float*, int64_t,
                   const float*, int64_t, float, float*, int64_t) {
  throw std::runtime_error("kernels.gemm: openblas is not in this build (HOKUSAI_WITH_OPENBLAS=OFF)");
}
#endif

}  // namespace hokusai::kernels::detail
