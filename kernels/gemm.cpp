#include "kernels/gemm.hpp"

#include <omp.h>

#include <bit>
#include <cmath>
#include <stdexcept>
#include <vector>

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

namespace {

// Branch-free (the panel loop vectorises): nearest even, inf and NaN kept.
inline float round_bf16(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  const uint32_t r = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;  // may carry into inf: correct
  return std::bit_cast<float>((b & 0x7fffffffu) > 0x7f800000u ? b : r);  // NaN stays NaN
}
inline float round_fp16(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x), a = b & 0x7fffffffu, sign = b ^ a;
  const uint32_t normal = (a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu;  // 10 of 23 mantissa bits
  // Below 2^-14 a half is a multiple of 2^-24, the ulp of floats in [0.5, 1): adding and taking
  // away 0.5 rounds to it (nearest even).
  const uint32_t subnormal = std::bit_cast<uint32_t>((std::bit_cast<float>(a) + 0.5f) - 0.5f);
  uint32_t r = a < 0x38800000u ? subnormal : normal;
  r = a >= 0x477ff000u ? 0x7f800000u : r;  // 65520 and up: nearest even lies past 65504, the largest half
  r = a > 0x7f800000u ? a : r;             // NaN
  return std::bit_cast<float>(sign | r);
}

// The 16-bit pattern of a float already rounded to half (round_fp16): sign, then a normal
// (exponent rebiased, 10 mantissa bits), a subnormal (|r| / 2^-24, exact: r is a multiple of it,
// or 0), inf or NaN. Branch-free, like half_value: narrow and widen vectorise on every ISA (the
// A64FX's SVE included, where fp16 runs keep their activations this way); with branches, widen
// alone was 4.5% of an fp16 step of the tiny config on a Zen 5.
inline uint16_t half_bits(float r) {
  const uint32_t b = std::bit_cast<uint32_t>(r), sign = (b >> 16) & 0x8000u, e = (b >> 23) & 0xffu;
  const uint32_t mant = b & 0x7fffffu;
  const uint32_t special = sign | 0x7c00u | (mant != 0 ? 0x200u : 0u);  // inf, NaN (stays one)
  const uint32_t normal = sign | ((e - 112) << 10) | (mant >> 13);
  const uint32_t subnormal = sign | uint32_t(int32_t(std::fabs(r) * 0x1p24f));  // below 2^-14
  return uint16_t(e == 0xffu ? special : e >= 113 ? normal : subnormal);
}
// Its selects are bit masks: written as ?: GCC 12 turns them back into branches and the loop
// stays scalar.
inline float half_value(uint16_t h) {
  const uint32_t x = h, sign = (x & 0x8000u) << 16, e = (x >> 10) & 0x1fu, mant = x & 0x3ffu;
  const uint32_t special = 0x7f800000u | (mant << 13);  // inf, NaN
  const uint32_t normal = ((e + 112) << 23) | (mant << 13);
  const uint32_t subnormal = std::bit_cast<uint32_t>(float(int32_t(mant)) * 0x1p-24f);  // exact
  const uint32_t is_special = 0u - uint32_t(e == 0x1fu), is_subnormal = 0u - uint32_t(e == 0);
  return std::bit_cast<float>(sign | (special & is_special) | (subnormal & is_subnormal) |
                              (normal & ~(is_special | is_subnormal)));
}

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

void narrow(Precision p, const float* x, uint16_t* bits, int64_t n) {
  if (p == Precision::bf16) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = std::bit_cast<uint32_t>(round_bf16(x[i]));
      bits[i] = uint16_t((u >> 16) | ((u & 0x7fffffffu) > 0x7f800000u ? 0x40u : 0u));  // a NaN stays one
    }
  } else if (p == Precision::fp16) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) bits[i] = half_bits(round_fp16(x[i]));
  } else {
    throw std::invalid_argument("kernels::narrow: fp32 has no 16-bit form");
  }
}

void widen(Precision p, const uint16_t* bits, float* x, int64_t n) {
  if (p == Precision::bf16) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) x[i] = std::bit_cast<float>(uint32_t(bits[i]) << 16);
  } else if (p == Precision::fp16) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) x[i] = half_value(bits[i]);
  } else {
    throw std::invalid_argument("kernels::widen: fp32 has no 16-bit form");
  }
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

void gemm(const GemmContext&, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  ref::gemm<double>(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace hokusai::kernels
