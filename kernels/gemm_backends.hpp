// Internal: the library backends behind kernels::gemm. Not part of the public interface.
#pragma once

#include <cstdint>

#include "kernels/gemm.hpp"
#include "kernels/ukernel.hpp"

namespace hokusai::kernels::detail {

extern const bool kHaveOpenBlas;
extern const bool kHaveOneDnn;

void gemm_native(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// gemm_native with either operand as 16-bit patterns (kernels::GemmOperand; checked by the caller).
void gemm_native_operands(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
                          const GemmOperand& a, const GemmOperand& b, float beta, float* c, int64_t ldc);

// gemm_native's fp32 products on a given kernel: the ISA's own with its block sizes or thread
// split replaced, per call (HOKUSAI_GEMM_BLOCKS does it for the process), or a candidate
// microkernel of the same ISA (kernels/x86/sgemm_avx512_tiles.hpp): tests of both splits and of
// every candidate, tuning. The caller ensures the CPU runs the kernel's ISA; throws
// std::invalid_argument when its blocks are below its tile.
void gemm_native_kernel(const GemmContext& ctx, const SgemmKernel& kern, Op op_a, Op op_b, int64_t m, int64_t n,
                        int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc);

// The same for the 16-bit products (gemm_bf16, and gemm_native's bf16/fp16 paths) on a given
// 16-bit kernel: its blocks or thread split replaced per call (tests of both splits, tuning).
void gemm_half_kernel(const GemmContext& ctx, const SbgemmKernel& kern, Op op_a, Op op_b, int64_t m, int64_t n,
                      int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc);

// Throws std::runtime_error when ctx asks a library backend (fp32 only) for a 16-bit precision.
void require_precision_backend(const GemmContext& ctx);

// Both throw std::runtime_error when the backend is not in this build or the call fails.
void gemm_openblas(int threads, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                   int64_t ldc);
void gemm_onednn(int threads, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc);

}  // namespace hokusai::kernels::detail
