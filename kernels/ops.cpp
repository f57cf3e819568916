// Fast (OpenMP, vectorisable) versions of kernels/ops.hpp. Each loop nest parallelises over
// independent rows, columns or heads with a static schedule, so results do not depend on timing.
// Accumulation is in T except where a row-sum feeds a normalisation (float rows of 10^4 would
// lose ~3 digits); those accumulate in double.
#include "kernels/ops.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/half.hpp"
#include "kernels/ops_instantiate.hpp"

// GCC 12 miscompiles `omp simd reduction` of a double accumulator over float inputs for
// fixed-length SVE (-msve-vector-bits=512, the aarch64-a64fx preset): the lane array's second
// half is reloaded from the first half's address (`ld1d z2.d, p0/z, [sp]` where `[sp, #1, mul vl]`
// belongs), so sum_squares came out 559.76 instead of 558.77; tests/unit/test_ops caught it under
// qemu-aarch64. On SVE those two widening loops (squared norm, softmax denominator) run the
// intrinsics of kernels/sve/reduce_sve.hpp instead; elsewhere they keep the pragma.
#if defined(__ARM_FEATURE_SVE)
#include "kernels/sve/reduce_sve.hpp"
#define HOKUSAI_SVE_REDUCE 1
#else
#define HOKUSAI_SVE_REDUCE 0
#endif

namespace hokusai::kernels {

namespace {
constexpr double kGeluS = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kGeluC = 0.044715;
// Column sums (the norms' weight gradients, the bias gradient) run a block of this many columns
// per task: the rows are read contiguously, each block's sums are vectors, rows summed in order.
constexpr int64_t kColumnBlock = 64;

// exp that the compiler vectorises inside `omp simd` loops (libm's expf is a scalar call: it was
// 10% of a tiny-model step, with tanhf another 5%). Cephes' expf: range reduction by ln 2, a
// degree-6 polynomial, scaling by 2^n through the exponent bits; max relative error ~2 ulp
// (tests/unit/test_ops.cpp checks softmax, GELU and SwiGLU built on it against the double
// references over the inputs range [-8, 8]). Double keeps std::exp: it is the
// gradient-check precision and not a hot path.
template <typename T>
inline T vexp(T x) {
  if constexpr (std::is_same_v<T, float>) {
    x = std::min(88.3762626647949f, std::max(-87.3365447504f, x));
    const float n = std::nearbyint(x * 1.44269504088896341f);
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (int32_t(n) + 127) << 23;
    return p * std::bit_cast<float>(bits);
  } else {
    return std::exp(x);
  }
}

// tanh through vexp: 1 - 2/(e^{2u}+1); absolute error ~1e-7, which is what GELU consumes
// (it adds tanh to 1).
template <typename T>
inline T vtanh(T u) {
  if constexpr (std::is_same_v<T, float>)
    return 1.0f - 2.0f / (vexp(2.0f * u) + 1.0f);
  else
    return std::tanh(u);
}
}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B,
                       int64_t Tn, int64_t C, int64_t vocab_start, int64_t V) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * Tn; ++row) {
    const int64_t t = row % Tn;
    const int64_t tok = int64_t(tokens[row]) - vocab_start;
    T* o = out + row * C;
    if (tok >= 0 && tok < V)
      std::copy_n(wte + tok * C, C, o);
    else
      std::fill_n(o, C, T(0));
    if (wpe) {
      const T* p = wpe + t * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) o[c] += p[c];
    }
  }
}

template <typename T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t Tn, int64_t C, int64_t vocab_start, int64_t V) {
  // Rows scatter into shared embedding rows: parallelise over channel blocks instead, so every
  // thread owns whole columns and the summation order is the row order (deterministic).
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    for (int64_t row = 0; row < B * Tn; ++row) {
      const T* d = dout + row * C;
      const int64_t tok = int64_t(tokens[row]) - vocab_start;
      if (tok >= 0 && tok < V) {
        T* w = dwte + tok * C;
        for (int64_t c = c0; c < c1; ++c) w[c] += d[c];
      }
      if (dwpe) {
        T* p = dwpe + (row % Tn) * C;
        for (int64_t c = c0; c < c1; ++c) p[c] += d[c];
      }
    }
  }
}

// The norms' shared parts. Mean (zero unless centered: RMSNorm) and 1/std of one row:
template <typename T>
inline void row_stats(const T* x, int64_t C, double eps, bool centered, T& mu, T& r) {
  mu = 0;
  if (centered) {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; ++c) s += x[c];
    mu = s / T(C);
  }
  T v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t c = 0; c < C; ++c) v += (x[c] - mu) * (x[c] - mu);
  r = T(1) / std::sqrt(v / T(C) + T(eps));
}

// The weight and bias gradients: column sums over the rows, in row order, of term(i, c) (the
// weight's) and of dout (the bias's, when db), a block of columns per task so the rows are read
// contiguously and the block's sums are one vector each. The row work (din) is a pass of its own,
// so each is race-free.
template <typename T, typename Term>
void norm_column_sums(T* dw, T* db, const T* dout, int64_t N, int64_t C, Term term) {
  const int64_t nblocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock, nc = std::min(C - c0, kColumnBlock);
    T sw[kColumnBlock] = {}, sb[kColumnBlock] = {};
    for (int64_t i = 0; i < N; ++i) {
      const T* dy = dout + i * C + c0;
#pragma omp simd
      for (int64_t c = 0; c < nc; ++c) {
        sw[c] += term(i, c0 + c);
        sb[c] += dy[c];
      }
    }
    for (int64_t c = 0; c < nc; ++c) dw[c0 + c] += sw[c];
    if (db)
      for (int64_t c = 0; c < nc; ++c) db[c0 + c] += sb[c];
  }
}

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* w, const T* b, int64_t N,
                       int64_t C, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    T mu, r;
    row_stats(x, C, eps, true, mu, r);
    T* o = out + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = (x[c] - mu) * r * w[c] + b[c];
    mean[i] = mu;
    rstd[i] = r;
  }
}

template <typename T>
void layernorm_backward(T* din, T* dw, T* db, const T* dout, const T* in, const T* w,
                        const T* mean, const T* rstd, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    const T* dy = dout + i * C;
    const T mu = mean[i], r = rstd[i];
    T a = 0, bsum = 0;
#pragma omp simd reduction(+ : a, bsum)
    for (int64_t c = 0; c < C; ++c) {
      const T dxhat = dy[c] * w[c];
      a += dxhat;
      bsum += dxhat * (x[c] - mu) * r;
    }
    a /= T(C);
    bsum /= T(C);
    T* dx = din + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dx[c] += r * (dy[c] * w[c] - a - (x[c] - mu) * r * bsum);
  }
  norm_column_sums(dw, db, dout, N, C,
                   [&](int64_t i, int64_t c) { return dout[i * C + c] * (in[i * C + c] - mean[i]) * rstd[i]; });
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* in, const T* w, int64_t N, int64_t C, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    T mu, r;  // mu = 0
    row_stats(x, C, eps, false, mu, r);
    T* o = out + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = x[c] * r * w[c];
    rstd[i] = r;
  }
}

template <typename T>
void rmsnorm_backward(T* din, T* dw, const T* dout, const T* in, const T* w, const T* rstd,
                      int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    const T* dy = dout + i * C;
    const T r = rstd[i];
    T a = 0;
#pragma omp simd reduction(+ : a)
    for (int64_t c = 0; c < C; ++c) a += dy[c] * w[c] * x[c];
    a /= T(C);
    T* dx = din + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dx[c] += r * (dy[c] * w[c] - x[c] * r * r * a);
  }
  norm_column_sums(dw, static_cast<T*>(nullptr), dout, N, C,
                   [&](int64_t i, int64_t c) { return dout[i * C + c] * in[i * C + c] * rstd[i]; });
}

// A norm's kept normalized rows: fp32 (or double) values, or the 16-bit patterns of a bf16 / fp16
// run, widened as they are read (exactly the values the float rows would hold) — value by value
// ([i]), or a whole row at once (row(): widened into `buf`, so the row loops that sum over it run
// the very code of the float rows, in the same order: the same bits).
template <typename T>
struct ValueRows {
  static constexpr bool kWidens = false;
  const T* xn;
  T operator[](int64_t i) const { return xn[i]; }
  const T* row(int64_t i, int64_t C, T*) const { return xn + i * C; }
};
template <Precision P>
struct PatternRows {
  static constexpr bool kWidens = true;
  const uint16_t* xn;
  float operator[](int64_t i) const {
    if constexpr (P == Precision::bf16)
      return half::bf16_value(xn[i]);
    else
      return half::half_value(xn[i]);
  }
  const float* row(int64_t i, int64_t C, float* buf) const {
    widen_run(P, xn + i * C, buf, C);
    return buf;
  }
};
using Bf16Rows = PatternRows<Precision::bf16>;
using Fp16Rows = PatternRows<Precision::fp16>;
void require_patterns(Precision p, const char* what) {
  if (p != Precision::bf16 && p != Precision::fp16)
    throw std::invalid_argument(std::string("kernels::") + what + ": fp32 rows are not kept as 16-bit patterns");
}
// f(rows) with the reader of p's patterns.
template <typename F>
void with_pattern_rows(Precision p, const uint16_t* xn, const char* what, F&& f) {
  require_patterns(p, what);
  if (p == Precision::bf16)
    f(Bf16Rows{xn});
  else
    f(Fp16Rows{xn});
}

// One row of a norm's output from its normalized row (values base .. base + C of x): o = x * w (+ b).
template <typename T, typename Rows>
inline void scale_row(T* o, const Rows& x, int64_t base, const T* w, const T* b, int64_t C) {
  if (b) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = x[base + c] * w[c] + b[c];
  } else {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = x[base + c] * w[c];
  }
}

// One row: its normalized values into h (rounded to `made` there: the row is in L1, no pass of
// its own), the output from them, 1/std.
template <typename T>
inline void norm_row(T* h, T* o, T& rstd, const T* x, const T* w, const T* b, int64_t C, double eps, bool centered,
                     Precision made) {
  T mu, r;
  row_stats(x, C, eps, centered, mu, r);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) h[c] = (x[c] - mu) * r;
  if constexpr (std::is_same_v<T, float>)
    if (made != Precision::fp32) round_to(made, h, C);
  scale_row(o, ValueRows<T>{h}, 0, w, b, C);
  rstd = r;
}

template <typename T>
void norm_rows_forward(T* xn, T* out, T* rstd, const T* in, const T* w, const T* b, int64_t N, int64_t C, double eps,
                       bool centered, Precision made) {
  if (!std::is_same_v<T, float> && made != Precision::fp32)
    throw std::invalid_argument("kernels::norm_rows_forward: only float rows round to 16 bits");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) norm_row(xn + i * C, out + i * C, rstd[i], in + i * C, w, b, C, eps, centered, made);
}

void norm_rows_forward_bits(uint16_t* xn, float* out, float* rstd, const float* in, const float* w, const float* b,
                            int64_t N, int64_t C, double eps, bool centered, Precision p) {
  require_patterns(p, "norm_rows_forward_bits");
#pragma omp parallel
  {
    std::vector<float> h(static_cast<size_t>(C));  // the row, then its patterns
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i) {
      norm_row(h.data(), out + i * C, rstd[i], in + i * C, w, b, C, eps, centered, p);
      narrow_run(p, h.data(), xn + i * C, C);
    }
  }
}

template <typename T, typename Rows>
void scale_rows(T* out, const Rows& xn, const T* w, const T* b, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) scale_row(out + i * C, xn, i * C, w, b, C);
}

template <typename T>
void norm_scale_forward(T* out, const T* xn, const T* w, const T* b, int64_t N, int64_t C) {
  scale_rows(out, ValueRows<T>{xn}, w, b, N, C);
}

void norm_scale_forward_bits(float* out, const uint16_t* xn, Precision p, const float* w, const float* b, int64_t N,
                             int64_t C) {
  with_pattern_rows(p, xn, "norm_scale_forward_bits", [&](const auto& rows) { scale_rows(out, rows, w, b, N, C); });
}

template <typename T, typename Rows>
void norm_backward_rows(T* din, T* dw, T* db, const T* dout, const Rows& xn, const T* w, const T* rstd, int64_t N,
                        int64_t C, bool centered) {
#pragma omp parallel
  {
    std::vector<T> buf(Rows::kWidens ? static_cast<size_t>(C) : 0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i) {
      const T* x = xn.row(i, C, buf.data());
      const T* dy = dout + i * C;
      const T r = rstd[i];
      T a = 0, bsum = 0;
#pragma omp simd reduction(+ : a, bsum)
      for (int64_t c = 0; c < C; ++c) {
        const T dxhat = dy[c] * w[c];
        a += dxhat;
        bsum += dxhat * x[c];
      }
      a = centered ? a / T(C) : T(0);
      bsum /= T(C);
      T* dx = din + i * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dx[c] += r * (dy[c] * w[c] - a - x[c] * bsum);
    }
  }
  norm_column_sums(dw, db, dout, N, C, [&](int64_t i, int64_t c) { return dout[i * C + c] * xn[i * C + c]; });
}

template <typename T>
void norm_rows_backward(T* din, T* dw, T* db, const T* dout, const T* xn, const T* w, const T* rstd, int64_t N,
                        int64_t C, bool centered) {
  norm_backward_rows(din, dw, db, dout, ValueRows<T>{xn}, w, rstd, N, C, centered);
}

void norm_rows_backward_bits(float* din, float* dw, float* db, const float* dout, const uint16_t* xn, Precision p,
                             const float* w, const float* rstd, int64_t N, int64_t C, bool centered) {
  with_pattern_rows(p, xn, "norm_rows_backward_bits", [&](const auto& rows) {
    norm_backward_rows(din, dw, db, dout, rows, w, rstd, N, C, centered);
  });
}

template <typename T>
void bias_forward(T* out, const T* bias, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    T* o = out + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] += bias[c];
  }
}

template <typename T>
void bias_backward(T* dbias, const T* dout, int64_t N, int64_t C) {
  const int64_t nblocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock, c1 = std::min(C, c0 + kColumnBlock);
    T acc[kColumnBlock] = {};
    for (int64_t i = 0; i < N; ++i) {
      const T* d = dout + i * C;
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += d[c];
    }
    for (int64_t c = c0; c < c1; ++c) dbias[c] += acc[c - c0];
  }
}

// The MLP activations read their input through a reader (ValueRows, or PatternRows: a 16-bit
// run's kept pre-activation), so both run the same arithmetic: the same bits.
namespace {
template <typename T, typename In>
void gelu_forward_from(T* out, const In& in, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T x = in[i];
    out[i] = T(0.5) * x * (T(1) + vtanh(T(kGeluS) * (x + T(kGeluC) * x * x * x)));
  }
}

template <typename T>
inline T gelu_slope(T x) {
  const T th = vtanh(T(kGeluS) * (x + T(kGeluC) * x * x * x));
  return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * T(kGeluS) * (T(1) + T(3 * kGeluC) * x * x);
}

template <typename T, typename In>
void gelu_backward_in_place_from(T* grad, const In& in, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) grad[i] = gelu_slope(T(in[i])) * grad[i];
}

template <typename T, typename In>
void swiglu_forward_from(T* out, const In& in, int64_t N, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const int64_t g = i * 2 * F, u = g + F;  // the row's gate and up values in `in`
    T* o = out + i * F;
#pragma omp simd
    for (int64_t f = 0; f < F; ++f) o[f] = in[g + f] / (T(1) + vexp(-in[g + f])) * in[u + f];
  }
}

template <typename T, typename In>
void swiglu_backward_from(T* din, const T* dout, const In& in, int64_t N, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const int64_t g = i * 2 * F, u = g + F;
    const T* dy = dout + i * F;
    T* dg = din + i * 2 * F;
    T* du = dg + F;
#pragma omp simd
    for (int64_t f = 0; f < F; ++f) {
      const T sig = T(1) / (T(1) + vexp(-in[g + f]));
      dg[f] += dy[f] * in[u + f] * sig * (T(1) + in[g + f] * (T(1) - sig));
      du[f] += dy[f] * in[g + f] * sig;
    }
  }
}
}  // namespace

template <typename T>
void gelu_forward(T* out, const T* in, int64_t n) {
  gelu_forward_from(out, ValueRows<T>{in}, n);
}

template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) din[i] += gelu_slope(in[i]) * dout[i];
}

template <typename T>
void gelu_backward_in_place(T* grad, const T* in, int64_t n) {
  gelu_backward_in_place_from(grad, ValueRows<T>{in}, n);
}

template <typename T>
void swiglu_forward(T* out, const T* in, int64_t N, int64_t F) {
  swiglu_forward_from(out, ValueRows<T>{in}, N, F);
}

template <typename T>
void swiglu_backward(T* din, const T* dout, const T* in, int64_t N, int64_t F) {
  swiglu_backward_from(din, dout, ValueRows<T>{in}, N, F);
}

void gelu_forward_bits(float* out, const uint16_t* in, Precision p, int64_t n) {
  with_pattern_rows(p, in, "gelu_forward_bits", [&](const auto& x) { gelu_forward_from(out, x, n); });
}

void gelu_backward_in_place_bits(float* grad, const uint16_t* in, Precision p, int64_t n) {
  with_pattern_rows(p, in, "gelu_backward_in_place_bits", [&](const auto& x) { gelu_backward_in_place_from(grad, x, n); });
}

void swiglu_forward_bits(float* out, const uint16_t* in, Precision p, int64_t N, int64_t F) {
  with_pattern_rows(p, in, "swiglu_forward_bits", [&](const auto& x) { swiglu_forward_from(out, x, N, F); });
}

void swiglu_backward_bits(float* din, const float* dout, const uint16_t* in, Precision p, int64_t N, int64_t F) {
  with_pattern_rows(p, in, "swiglu_backward_bits", [&](const auto& x) { swiglu_backward_from(din, dout, x, N, F); });
}

namespace {
template <typename T>
void rope_rotate(T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, double theta, T sign) {
  const int64_t half = HS / 2, width = (NH + 2 * KV) * HS;
  // Frequencies once per call (HS/2 values), angles computed in double: at t = 10^4 a float
  // angle would be off by ~1e-3 rad.
  std::vector<double> freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) freq[i] = std::pow(theta, -2.0 * double(i) / double(HS));
#pragma omp parallel
  {
    std::vector<T> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < B * Tn; ++row) {
      const int64_t t = row % Tn;
      for (int64_t i = 0; i < half; ++i) {
        cs[i] = T(std::cos(double(t) * freq[i]));
        sn[i] = sign * T(std::sin(double(t) * freq[i]));
      }
      for (int64_t h = 0; h < NH + KV; ++h) {  // the q heads, then the k heads: contiguous
        T* x = qkv + row * width + h * HS;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const T x1 = x[i], x2 = x[i + half];
          x[i] = x1 * cs[i] - x2 * sn[i];
          x[i + half] = x2 * cs[i] + x1 * sn[i];
        }
      }
    }
  }
}
}  // namespace

template <typename T>
void rope_forward(T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, double theta) {
  rope_rotate(qkv, B, Tn, NH, KV, HS, theta, T(1));
}

template <typename T>
void rope_backward(T* dqkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, double theta) {
  rope_rotate(dqkv, B, Tn, NH, KV, HS, theta, T(-1));
}

template <typename T>
T exp_shifted(T* x, int64_t n, T shift) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += (x[j] = vexp(x[j] - shift));
  return sum;
}

template <typename T>
void causal_probabilities(T* s, int64_t ld, int64_t rows, int64_t n, const T* lse, int64_t diagonal) {
  for (int64_t i = 0; i < rows; ++i) {
    T* x = s + i * ld;
    const T shift = lse[i];
    const int64_t valid = std::clamp<int64_t>(diagonal + i + 1, 0, n);
#pragma omp simd
    for (int64_t j = 0; j < valid; ++j) x[j] = vexp(x[j] - shift);
    std::fill(x + valid, x + n, T(0));
  }
}

template <typename T>
void softmax_grad_rows(T* d, const T* p, const T* delta, T scale, int64_t rows, int64_t n, int64_t ld) {
  for (int64_t i = 0; i < rows; ++i) {
    T* di = d + i * ld;
    const T* pi = p + i * ld;
    const T D = delta[i];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) di[j] = pi[j] * (di[j] - D) * scale;
  }
}

// In two 64-byte vectors (GCC vector extensions, each lane `a > b ? a : b`: x86's maxps exactly),
// then their lanes: GCC 12 compiled the `omp simd reduction(max)` form of this loop to one scalar
// vmaxss chain, 4 cycles per element (14% of flash attention's samples and nearly all of the
// cross-entropy forward's), and an array of lanes to scalar chains. The maximum of numbers does
// not depend on the order; a NaN may be dropped (as std::max dropped one after the first element):
// the sums over exp(x - max) that follow carry it.
template <typename T>
T row_max(const T* x, int64_t n) {
  constexpr int64_t W = 64 / int64_t(sizeof(T));
  typedef T Vec __attribute__((vector_size(64)));
  const auto load = [](const T* p) {
    Vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  const auto max = [](Vec a, Vec b) { return a > b ? a : b; };
  Vec a = Vec{} + T(-INFINITY), b = a;
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) a = max(a, load(x + j)), b = max(b, load(x + j + W));
  a = max(a, b);
  T mx = a[0];
  for (int64_t l = 1; l < W; ++l) mx = mx > a[l] ? mx : a[l];
  for (; j < n; ++j) mx = mx > x[j] ? mx : x[j];
  return mx;
}

template <typename T>
double sum_exp(const T* x, int64_t n, T shift) {
#if HOKUSAI_SVE_REDUCE
  if constexpr (std::is_same_v<T, float>) return sve::sum_exp(x, n, shift);
#endif
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += vexp(x[j] - shift);
  return sum;
}

template <typename T>
void softmax_xent_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                          int64_t Vp, int64_t V_real) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* l = logits + i * Vp;
    const T mx = row_max(l, V_real);
    const T z = mx + T(std::log(sum_exp(l, V_real, mx)));
    lse[i] = z;
    losses[i] = targets[i] < 0 ? T(0) : z - l[targets[i]];
  }
}

template <typename T>
void softmax_xent_backward(T* dlogits, const T* dlosses, const T* logits, const T* lse,
                           const int32_t* targets, int64_t N, int64_t Vp, int64_t V_real, int64_t vocab_start) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* l = logits + i * Vp;
    T* dl = dlogits + i * Vp;  // may be l: each element is read once, then written
    if (targets[i] < 0) {
      std::fill_n(dl, Vp, T(0));
      continue;
    }
    const T z = lse[i], dy = dlosses[i];
#pragma omp simd
    for (int64_t j = 0; j < V_real; ++j) dl[j] = vexp(l[j] - z) * dy;
    std::fill(dl + V_real, dl + Vp, T(0));
    const int64_t t = int64_t(targets[i]) - vocab_start;
    if (t >= 0 && t < Vp) dl[t] -= dy;
  }
}

template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

namespace {

// Buffers at least this large are zeroed with non-temporal stores: no cache holds them, so an
// ordinary store first reads every line it overwrites. gpt2-124m's gradients (500 MB, zeroed every
// step) took 26 ms with memset and 11 ms streamed on a KVM Xeon (2 threads), the pass that
// accumulates into them after no slower (docs/performance.md).
constexpr int64_t kStreamBytes = int64_t(32) << 20;

template <typename T>
void zero_range(T* x, int64_t n, bool stream) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      int64_t i = 0;
      for (; i < n && (reinterpret_cast<uintptr_t>(x + i) & 63) != 0; ++i) x[i] = 0.0f;
      for (; i + 16 <= n; i += 16) _mm512_stream_ps(x + i, _mm512_setzero_ps());
      for (; i < n; ++i) x[i] = 0.0f;
      _mm_sfence();
      return;
    }
  }
#endif
  (void)stream;
  std::fill_n(x, n, T(0));
}

}  // namespace

template <typename T>
void fill_zero(T* x, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;  // elements; below a few chunks one thread is faster
  if (n < 4 * kChunk) {
    std::fill_n(x, n, T(0));
    return;
  }
  const bool stream = n * int64_t(sizeof(T)) >= kStreamBytes;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk) zero_range(x + c, std::min(kChunk, n - c), stream);
}

template <typename T>
double sum_squares(const T* x, int64_t n) {
  // Fixed chunking (not thread count) so the sum is the same at any thread count.
  constexpr int64_t kChunk = 1 << 14;
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(nchunks));
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    const int64_t i0 = ch * kChunk, i1 = std::min(n, i0 + kChunk);
    double s = 0.0;
#if HOKUSAI_SVE_REDUCE
    if constexpr (std::is_same_v<T, float>) {
      s = sve::sum_squares(x + i0, i1 - i0);
    } else
#endif
    {
#pragma omp simd reduction(+ : s)
      for (int64_t i = i0; i < i1; ++i) s += double(x[i]) * double(x[i]);
    }
    partial[ch] = s;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void scale(T* x, T s, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWParams& hp) {
  const T b1 = T(hp.beta1), b2 = T(hp.beta2), eps = T(hp.eps), wd = T(hp.weight_decay);
  const T lr = T(hp.lr), gs = T(hp.grad_scale);
  const T inv_bc1 = T(1.0 / (1.0 - std::pow(hp.beta1, double(hp.step))));
  const T inv_bc2 = T(1.0 / (1.0 - std::pow(hp.beta2, double(hp.step))));
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i] * gs;
    const T mi = b1 * m[i] + (T(1) - b1) * g;
    const T vi = b2 * v[i] + (T(1) - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] -= lr * ((mi * inv_bc1) / (std::sqrt(vi * inv_bc2) + eps) + wd * param[i]);
  }
}

HOKUSAI_INSTANTIATE_OPS(float)
HOKUSAI_INSTANTIATE_OPS(double)

}  // namespace hokusai::kernels
