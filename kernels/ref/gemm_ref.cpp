#include "kernels/ref/gemm_ref.hpp"

#include <vector>

namespace hokusai::kernels::ref {

template <typename T>
void gemm(Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  std::vector<double> acc(static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) acc[j] = 0.0;
    for (int64_t p = 0; p < k; ++p) {
      const double aip = op_a == Op::N ? a[i * lda + p] : a[p * lda + i];
      if (op_b == Op::N) {
        const T* brow = b + p * ldb;
        for (int64_t j = 0; j < n; ++j) acc[j] += aip * brow[j];
      } else {
        for (int64_t j = 0; j < n; ++j) acc[j] += aip * b[j * ldb + p];
      }
    }
    T* crow = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) {
      const double prior = beta == T(0) ? 0.0 : double(beta) * crow[j];
      crow[j] = static_cast<T>(double(alpha) * acc[j] + prior);
    }
  }
}

template void gemm<float>(Op, Op, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(Op, Op, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace hokusai::kernels::ref
