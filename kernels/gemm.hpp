// The one matrix-product interface every layer calls.
//
// Contract (row-major, as in cblas with CblasRowMajor):
//   C(M,N) := alpha * op(A)(M,K) * op(B)(K,N) + beta * C(M,N)
//   op(X) = X    : A is stored (M,K) with lda >= K;  B is stored (K,N) with ldb >= N
//   op(X) = X^T  : A is stored (K,M) with lda >= M;  B is stored (N,K) with ldb >= K
//   ldc >= N. Any M, N, K >= 0; K == 0 scales C by beta. beta == 0 never reads C (C may hold NaN).
// The trainer uses three layouts: NT (forward: in · W^T), NN (input gradient: dout · W) and
// TN (weight gradient: dout^T · in).
//
// Backends: `reference` (the scalar oracle, double accumulation), `openblas` (cblas_sgemm),
// `onednn` (dnnl_sgemm). The double-precision overload always runs the reference: it exists so
// gradient tests can run the whole model in double.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace hokusai::kernels {

enum class Op { N, T };

enum class GemmBackend { reference, openblas, onednn };

// Parses "reference" | "openblas" | "onednn"; throws std::invalid_argument otherwise.
GemmBackend parse_gemm_backend(std::string_view name);
std::string_view to_string(GemmBackend backend);
// True when this build contains the backend (OpenBLAS/oneDNN are build options).
bool gemm_backend_available(GemmBackend backend);

struct GemmContext {
  GemmBackend backend = GemmBackend::openblas;
  int threads = 1;  // threads the backend may use inside one call
};

void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

}  // namespace hokusai::kernels
