#include "kernels/gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>
#include <stdexcept>
#include <vector>

#include "kernels/gemm_backends.hpp"
#include "kernels/half.hpp"
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

using half::half_bits, half::half_value, half::round_bf16, half::round_fp16;

namespace {

// op(X) (rows x cols of the stored matrix) copied with every element rounded: the reference
// backend's low-precision products.
std::vector<float> rounded_copy(Precision p, const float* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[size_t(i * cols + j)] = round_to(p, x[i * ld + j]);
  return out;
}

}  // namespace

void detail::require_precision_backend(const GemmContext& ctx) {
  if (ctx.precision != Precision::fp32 &&
      (ctx.backend == GemmBackend::openblas || ctx.backend == GemmBackend::onednn))
    throw std::runtime_error(std::string("gemm: precision ") + std::string(name_of(ctx.precision)) +
                             " needs the native or reference backend; " + std::string(name_of(ctx.backend)) +
                             " multiplies in fp32 only");
}

float round_to(Precision p, float x) {
  return p == Precision::bf16 ? round_bf16(x) : p == Precision::fp16 ? round_fp16(x) : x;
}

void round_to(Precision p, float* x, int64_t n) {
  // Threaded where it is a pass of its own over an activation (the model's round_made: serial, it
  // was ~1% of a bf16 step's main thread with the other core waiting); a packer's panel block, in
  // the driver's parallel region, and short arrays stay on the calling thread.
  const bool threaded = n >= (int64_t(1) << 18) && !omp_in_parallel();
  if (p == Precision::bf16) {
#pragma omp parallel for schedule(static) if (threaded)
    for (int64_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
  } else if (p == Precision::fp16) {
#pragma omp parallel for schedule(static) if (threaded)
    for (int64_t i = 0; i < n; ++i) x[i] = round_fp16(x[i]);
  }
}

void narrow_run(Precision p, const float* x, uint16_t* bits, int64_t n) {
  if (p == Precision::bf16) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = std::bit_cast<uint32_t>(round_bf16(x[i]));
      bits[i] = uint16_t((u >> 16) | ((u & 0x7fffffffu) > 0x7f800000u ? 0x40u : 0u));  // a NaN stays one
    }
  } else if (p == Precision::fp16) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) bits[i] = half_bits(round_fp16(x[i]));
  } else {
    throw std::invalid_argument("kernels::narrow: fp32 has no 16-bit form");
  }
}

void widen_run(Precision p, const uint16_t* bits, float* x, int64_t n) {
  if (p == Precision::bf16) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] = std::bit_cast<float>(uint32_t(bits[i]) << 16);
  } else if (p == Precision::fp16) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] = half_value(bits[i]);
  } else {
    throw std::invalid_argument("kernels::widen: fp32 has no 16-bit form");
  }
}

void widen_rows(Precision p, const uint16_t* bits, int64_t ld, int64_t rows, int64_t cols, float* x) {
  for (int64_t r = 0; r < rows; ++r) widen_run(p, bits + r * ld, x + r * cols, cols);
}

namespace {
constexpr int64_t kRun = 4096;  // values per task of narrow and widen
void require_16_bits(Precision p, const char* what) {
  if (p != Precision::bf16 && p != Precision::fp16)
    throw std::invalid_argument(std::string("kernels::") + what + ": fp32 has no 16-bit form");
}
}  // namespace

void narrow(Precision p, const float* x, uint16_t* bits, int64_t n) {
  require_16_bits(p, "narrow");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += kRun) narrow_run(p, x + i, bits + i, std::min(kRun, n - i));
}

void widen(Precision p, const uint16_t* bits, float* x, int64_t n) {
  require_16_bits(p, "widen");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += kRun) widen_run(p, bits + i, x + i, std::min(kRun, n - i));
}

void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  detail::require_precision_backend(ctx);
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
      if (ctx.precision != Precision::fp32) {
        const int64_t ar = op_a == Op::N ? m : k, ac = op_a == Op::N ? k : m;
        const int64_t br = op_b == Op::N ? k : n, bc = op_b == Op::N ? n : k;
        const std::vector<float> ra = rounded_copy(ctx.precision, a, ar, ac, lda),
                                 rb = rounded_copy(ctx.precision, b, br, bc, ldb);
        ref::gemm<float>(op_a, op_b, m, n, k, alpha, ra.data(), ac, rb.data(), bc, beta, c, ldc);
        return;
      }
      ref::gemm<float>(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
  }
}

namespace {
// An operand's rows x cols (as stored) widened into a dense fp32 copy.
std::vector<float> widened_copy(Precision p, const uint16_t* bits, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t(rows * cols));
  widen_rows(p, bits, ld, rows, cols, out.data());
  return out;
}
void require_operand(const GemmContext& ctx, const GemmOperand& x, const char* name) {
  if ((x.values == nullptr) == (x.patterns == nullptr))
    throw std::invalid_argument(std::string("gemm: operand ") + name + " must hold either fp32 values or 16-bit patterns");
  if (x.patterns && ctx.precision == Precision::fp32)
    throw std::invalid_argument(std::string("gemm: operand ") + name +
                                " holds 16-bit patterns but the context's precision is fp32; set it to the patterns' "
                                "precision (bf16 or fp16)");
}
}  // namespace

void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha, const GemmOperand& a,
          const GemmOperand& b, float beta, float* c, int64_t ldc) {
  require_operand(ctx, a, "A");
  require_operand(ctx, b, "B");
  if (!a.patterns && !b.patterns) return gemm(ctx, op_a, op_b, m, n, k, alpha, a.values, a.ld, b.values, b.ld, beta, c, ldc);
  if (m == 0 || n == 0) return;
  detail::require_precision_backend(ctx);
  if (k > 0 && ctx.backend == GemmBackend::native)
    return detail::gemm_native_operands(ctx, op_a, op_b, m, n, k, alpha, a, b, beta, c, ldc);
  // Elsewhere (the reference backend; k == 0) the patterns are widened whole.
  const int64_t ar = op_a == Op::N ? m : k, ac = op_a == Op::N ? k : m;
  const int64_t br = op_b == Op::N ? k : n, bc = op_b == Op::N ? n : k;
  const std::vector<float> wa = a.patterns ? widened_copy(ctx.precision, a.patterns, ar, ac, a.ld) : std::vector<float>(),
                           wb = b.patterns ? widened_copy(ctx.precision, b.patterns, br, bc, b.ld) : std::vector<float>();
  gemm(ctx, op_a, op_b, m, n, k, alpha, a.patterns ? wa.data() : a.values, a.patterns ? ac : a.ld,
       b.patterns ? wb.data() : b.values, b.patterns ? bc : b.ld, beta, c, ldc);
}

void gemm(const GemmContext&, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  ref::gemm<double>(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace hokusai::kernels
