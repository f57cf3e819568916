// Scalar reference GEMM: the oracle for every backend and microkernel. Same contract as
// kernels/gemm.hpp; accumulates in double whatever T is.
#pragma once

#include <cstdint>

#include "kernels/gemm.hpp"

namespace hokusai::kernels::ref {

template <typename T>
void gemm(Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

}  // namespace hokusai::kernels::ref
