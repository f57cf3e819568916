#include <stdexcept>
#include <string>

#include "kernels/gemm_backends.hpp"

#ifdef HOKUSAI_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif

namespace hokusai::kernels::detail {

#ifdef HOKUSAI_HAVE_ONEDNN
const bool kHaveOneDnn = true;

void gemm_onednn(int threads, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  // Debian's oneDNN runs on OpenMP: the calling thread's team size is what it uses.
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
  const dnnl_status_t status = dnnl_sgemm(op_a == Op::N ? 'N' : 'T', op_b == Op::N ? 'N' : 'T', m, n,
                                          k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success)
    throw std::runtime_error("dnnl_sgemm failed with status " + std::to_string(int(status)) +
                             " (m=" + std::to_string(m) + " n=" + std::to_string(n) +
                             " k=" + std::to_string(k) + ")");
}
#else
const bool kHaveOneDnn = false;

void gemm_onednn(int, Op, Op, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                 int64_t, float, float*, int64_t) {
  throw std::runtime_error("kernels.gemm: onednn is not in this build (HOKUSAI_WITH_ONEDNN=OFF)");
}
#endif

}  // namespace hokusai::kernels::detail
