// Scalar references: serial loops, double accumulation, one obvious formula per line.
#include "kernels/ref/ops_ref.hpp"

#include "kernels/ops_instantiate.hpp"

#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace hokusai::kernels::ref {

namespace {
constexpr double kGeluS = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kGeluC = 0.044715;
}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B,
                       int64_t Tn, int64_t C, int64_t vocab_start, int64_t V) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t row = b * Tn + t;
      const int64_t tok = int64_t(tokens[row]) - vocab_start;
      const bool mine = tok >= 0 && tok < V;
      for (int64_t c = 0; c < C; ++c) {
        double x = mine ? double(wte[tok * C + c]) : 0.0;
        if (wpe) x += wpe[t * C + c];
        out[row * C + c] = T(x);
      }
    }
}

template <typename T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t Tn, int64_t C, int64_t vocab_start, int64_t V) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t row = b * Tn + t;
      const int64_t tok = int64_t(tokens[row]) - vocab_start;
      for (int64_t c = 0; c < C; ++c) {
        if (tok >= 0 && tok < V) dwte[tok * C + c] += dout[row * C + c];
        if (dwpe) dwpe[t * C + c] += dout[row * C + c];
      }
    }
}

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* w, const T* b, int64_t N,
                       int64_t C, double eps) {
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    double mu = 0.0, var = 0.0;
    for (int64_t c = 0; c < C; ++c) mu += x[c];
    mu /= double(C);
    for (int64_t c = 0; c < C; ++c) var += (x[c] - mu) * (x[c] - mu);
    var /= double(C);
    const double r = 1.0 / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; ++c) out[i * C + c] = T((x[c] - mu) * r * w[c] + b[c]);
    mean[i] = T(mu);
    rstd[i] = T(r);
  }
}

template <typename T>
void layernorm_backward(T* din, T* dw, T* db, const T* dout, const T* in, const T* w,
                        const T* mean, const T* rstd, int64_t N, int64_t C) {
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    const T* dy = dout + i * C;
    double mean_dxhat = 0.0, mean_dxhat_xhat = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      const double xhat = (x[c] - double(mean[i])) * rstd[i];
      const double dxhat = double(dy[c]) * w[c];
      mean_dxhat += dxhat;
      mean_dxhat_xhat += dxhat * xhat;
    }
    mean_dxhat /= double(C);
    mean_dxhat_xhat /= double(C);
    for (int64_t c = 0; c < C; ++c) {
      const double xhat = (x[c] - double(mean[i])) * rstd[i];
      const double dxhat = double(dy[c]) * w[c];
      dw[c] += T(dy[c] * xhat);
      db[c] += dy[c];
      din[i * C + c] += T(double(rstd[i]) * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
    }
  }
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* in, const T* w, int64_t N, int64_t C, double eps) {
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    double ms = 0.0;
    for (int64_t c = 0; c < C; ++c) ms += double(x[c]) * x[c];
    const double r = 1.0 / std::sqrt(ms / double(C) + eps);
    for (int64_t c = 0; c < C; ++c) out[i * C + c] = T(x[c] * r * w[c]);
    rstd[i] = T(r);
  }
}

template <typename T>
void rmsnorm_backward(T* din, T* dw, const T* dout, const T* in, const T* w, const T* rstd,
                      int64_t N, int64_t C) {
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    const T* dy = dout + i * C;
    const double r = rstd[i];
    double mean_dxhat_x = 0.0;
    for (int64_t c = 0; c < C; ++c) mean_dxhat_x += double(dy[c]) * w[c] * x[c];
    mean_dxhat_x /= double(C);
    for (int64_t c = 0; c < C; ++c) {
      dw[c] += T(double(dy[c]) * x[c] * r);
      din[i * C + c] += T(r * (double(dy[c]) * w[c] - x[c] * r * r * mean_dxhat_x));
    }
  }
}

template <typename T>
void norm_rows_forward(T* xn, T* out, T* rstd, const T* in, const T* w, const T* b, int64_t N, int64_t C, double eps,
                       bool centered, Precision made) {
  if (!std::is_same_v<T, float> && made != Precision::fp32)
    throw std::invalid_argument("kernels::ref::norm_rows_forward: only float rows round to 16 bits");
  for (int64_t i = 0; i < N; ++i) {
    const T* x = in + i * C;
    double mu = 0.0, var = 0.0;
    if (centered) {
      for (int64_t c = 0; c < C; ++c) mu += x[c];
      mu /= double(C);
    }
    for (int64_t c = 0; c < C; ++c) var += (x[c] - mu) * (x[c] - mu);
    const double r = 1.0 / std::sqrt(var / double(C) + eps);
    for (int64_t c = 0; c < C; ++c) {
      xn[i * C + c] = T((x[c] - mu) * r);
      if constexpr (std::is_same_v<T, float>) xn[i * C + c] = round_to(made, xn[i * C + c]);
    }
    rstd[i] = T(r);
  }
  norm_scale_forward(out, xn, w, b, N, C);
}

template <typename T>
void norm_scale_forward(T* out, const T* xn, const T* w, const T* b, int64_t N, int64_t C) {
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c) out[i * C + c] = T(double(xn[i * C + c]) * w[c] + (b ? double(b[c]) : 0.0));
}

template <typename T>
void norm_rows_backward(T* din, T* dw, T* db, const T* dout, const T* xn, const T* w, const T* rstd, int64_t N,
                        int64_t C, bool centered) {
  for (int64_t i = 0; i < N; ++i) {
    const T* x = xn + i * C;
    const T* dy = dout + i * C;
    double mean_dxhat = 0.0, mean_dxhat_xhat = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      const double dxhat = double(dy[c]) * w[c];
      mean_dxhat += dxhat;
      mean_dxhat_xhat += dxhat * x[c];
    }
    mean_dxhat = centered ? mean_dxhat / double(C) : 0.0;
    mean_dxhat_xhat /= double(C);
    for (int64_t c = 0; c < C; ++c) {
      dw[c] += T(double(dy[c]) * x[c]);
      if (db) db[c] += dy[c];
      din[i * C + c] += T(double(rstd[i]) * (double(dy[c]) * w[c] - mean_dxhat - x[c] * mean_dxhat_xhat));
    }
  }
}

// The 16-bit kept rows: through fp32 copies (kernels::narrow / widen).
void norm_rows_forward_bits(uint16_t* xn, float* out, float* rstd, const float* in, const float* w, const float* b,
                            int64_t N, int64_t C, double eps, bool centered, Precision p) {
  std::vector<float> rows(size_t(N * C));
  ref::norm_rows_forward<float>(rows.data(), out, rstd, in, w, b, N, C, eps, centered, p);
  kernels::narrow(p, rows.data(), xn, N * C);
}

void norm_scale_forward_bits(float* out, const uint16_t* xn, Precision p, const float* w, const float* b, int64_t N,
                             int64_t C) {
  std::vector<float> rows(size_t(N * C));
  kernels::widen(p, xn, rows.data(), N * C);
  ref::norm_scale_forward<float>(out, rows.data(), w, b, N, C);
}

void norm_rows_backward_bits(float* din, float* dw, float* db, const float* dout, const uint16_t* xn, Precision p,
                             const float* w, const float* rstd, int64_t N, int64_t C, bool centered) {
  std::vector<float> rows(size_t(N * C));
  kernels::widen(p, xn, rows.data(), N * C);
  ref::norm_rows_backward<float>(din, dw, db, dout, rows.data(), w, rstd, N, C, centered);
}

void gelu_forward_bits(float* out, const uint16_t* in, Precision p, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  kernels::widen(p, in, x.data(), n);
  ref::gelu_forward<float>(out, x.data(), n);
}

void gelu_backward_in_place_bits(float* grad, const uint16_t* in, Precision p, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  kernels::widen(p, in, x.data(), n);
  ref::gelu_backward_in_place<float>(grad, x.data(), n);
}

void swiglu_forward_bits(float* out, const uint16_t* in, Precision p, int64_t N, int64_t F) {
  std::vector<float> x(size_t(N * 2 * F));
  kernels::widen(p, in, x.data(), N * 2 * F);
  ref::swiglu_forward<float>(out, x.data(), N, F);
}

void swiglu_backward_bits(float* din, const float* dout, const uint16_t* in, Precision p, int64_t N, int64_t F) {
  std::vector<float> x(size_t(N * 2 * F));
  kernels::widen(p, in, x.data(), N * 2 * F);
  ref::swiglu_backward<float>(din, dout, x.data(), N, F);
}

template <typename T>
void bias_forward(T* out, const T* bias, int64_t N, int64_t C) {
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c) out[i * C + c] += bias[c];
}

template <typename T>
void bias_backward(T* dbias, const T* dout, int64_t N, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (int64_t i = 0; i < N; ++i) s += dout[i * C + c];
    dbias[c] += T(s);
  }
}

template <typename T>
void gelu_forward(T* out, const T* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = in[i];
    out[i] = T(0.5 * x * (1.0 + std::tanh(kGeluS * (x + kGeluC * x * x * x))));
  }
}

namespace {
double gelu_slope(double x) {
  const double th = std::tanh(kGeluS * (x + kGeluC * x * x * x));
  return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * kGeluS * (1.0 + 3.0 * kGeluC * x * x);
}
}  // namespace

template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) din[i] += T(gelu_slope(in[i]) * dout[i]);
}

template <typename T>
void gelu_backward_in_place(T* grad, const T* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) grad[i] = T(gelu_slope(in[i]) * grad[i]);
}

template <typename T>
void swiglu_forward(T* out, const T* in, int64_t N, int64_t F) {
  for (int64_t i = 0; i < N; ++i)
    for (int64_t f = 0; f < F; ++f) {
      const double g = in[i * 2 * F + f], u = in[i * 2 * F + F + f];
      out[i * F + f] = T(g / (1.0 + std::exp(-g)) * u);
    }
}

template <typename T>
void swiglu_backward(T* din, const T* dout, const T* in, int64_t N, int64_t F) {
  for (int64_t i = 0; i < N; ++i)
    for (int64_t f = 0; f < F; ++f) {
      const double g = in[i * 2 * F + f], u = in[i * 2 * F + F + f];
      const double sig = 1.0 / (1.0 + std::exp(-g));
      const double dy = dout[i * F + f];
      din[i * 2 * F + f] += T(dy * u * sig * (1.0 + g * (1.0 - sig)));
      din[i * 2 * F + F + f] += T(dy * g * sig);
    }
}

namespace {
// Rotates the q and k heads of qkv by +angle (sign = +1) or -angle (sign = -1).
template <typename T>
void rope_apply(T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, double theta, double sign) {
  const int64_t half = HS / 2, width = (NH + 2 * KV) * HS;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t h = 0; h < NH + KV; ++h) {
        T* x = qkv + (b * Tn + t) * width + h * HS;
        for (int64_t i = 0; i < half; ++i) {
          const double angle = double(t) * std::pow(theta, -2.0 * double(i) / double(HS));
          const double cs = std::cos(angle), sn = sign * std::sin(angle);
          const double x1 = x[i], x2 = x[i + half];
          x[i] = T(x1 * cs - x2 * sn);
          x[i + half] = T(x2 * cs + x1 * sn);
        }
      }
}
}  // namespace

template <typename T>
void rope_forward(T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, double theta) {
  rope_apply(qkv, B, Tn, NH, KV, HS, theta, +1.0);
}

template <typename T>
void rope_backward(T* dqkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, double theta) {
  rope_apply(dqkv, B, Tn, NH, KV, HS, theta, -1.0);
}

template <typename T>
void attention_forward(T* out, T* probs, const T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS) {
  const double scale = 1.0 / std::sqrt(double(HS));
  const int64_t W = (NH + 2 * KV) * HS, group = NH / KV;
  std::vector<double> s(static_cast<size_t>(Tn));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t k_off = (NH + h / group) * HS, v_off = (NH + KV + h / group) * HS;
      for (int64_t t = 0; t < Tn; ++t) {
        const T* q = qkv + (b * Tn + t) * W + h * HS;
        double mx = -INFINITY;
        for (int64_t j = 0; j <= t; ++j) {
          const T* k = qkv + (b * Tn + j) * W + k_off;
          double dot = 0.0;
          for (int64_t d = 0; d < HS; ++d) dot += double(q[d]) * k[d];
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= t; ++j) sum += (s[j] = std::exp(s[j] - mx));
        T* p = probs + ((b * NH + h) * Tn + t) * Tn;
        for (int64_t j = 0; j <= t; ++j) p[j] = T(s[j] / sum);
        T* o = out + (b * Tn + t) * NH * HS + h * HS;
        for (int64_t d = 0; d < HS; ++d) {
          double acc = 0.0;
          for (int64_t j = 0; j <= t; ++j) acc += s[j] / sum * qkv[(b * Tn + j) * W + v_off + d];
          o[d] = T(acc);
        }
      }
    }
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* probs, const T* qkv, int64_t B, int64_t Tn, int64_t NH,
                        int64_t KV, int64_t HS) {
  const double scale = 1.0 / std::sqrt(double(HS));
  const int64_t W = (NH + 2 * KV) * HS, group = NH / KV;
  std::vector<double> dp(static_cast<size_t>(Tn));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t k_off = (NH + h / group) * HS, v_off = (NH + KV + h / group) * HS;
      for (int64_t t = 0; t < Tn; ++t) {
        const T* p = probs + ((b * NH + h) * Tn + t) * Tn;
        const T* dy = dout + (b * Tn + t) * NH * HS + h * HS;
        double pdp = 0.0;
        for (int64_t j = 0; j <= t; ++j) {
          const T* v = qkv + (b * Tn + j) * W + v_off;
          T* dv = dqkv + (b * Tn + j) * W + v_off;
          double dot = 0.0;
          for (int64_t d = 0; d < HS; ++d) {
            dot += double(dy[d]) * v[d];
            dv[d] += T(double(p[j]) * dy[d]);
          }
          dp[j] = dot;
          pdp += double(p[j]) * dot;
        }
        const T* q = qkv + (b * Tn + t) * W + h * HS;
        T* dq = dqkv + (b * Tn + t) * W + h * HS;
        for (int64_t j = 0; j <= t; ++j) {
          const double ds = double(p[j]) * (dp[j] - pdp) * scale;
          const T* k = qkv + (b * Tn + j) * W + k_off;
          T* dk = dqkv + (b * Tn + j) * W + k_off;
          for (int64_t d = 0; d < HS; ++d) {
            dq[d] += T(ds * k[d]);
            dk[d] += T(ds * q[d]);
          }
        }
      }
    }
}

template <typename T>
T exp_shifted(T* x, int64_t n, T shift) {
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += double(x[j] = T(std::exp(double(x[j]) - double(shift))));
  return T(sum);
}

template <typename T>
void causal_probabilities(T* s, int64_t ld, int64_t rows, int64_t n, const T* lse, int64_t diagonal) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < n; ++j)
      s[i * ld + j] = j <= diagonal + i ? T(std::exp(double(s[i * ld + j]) - double(lse[i]))) : T(0);
}

template <typename T>
void softmax_grad_rows(T* d, const T* p, const T* delta, T scale, int64_t rows, int64_t n, int64_t ld) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < n; ++j) d[i * ld + j] = p[i * ld + j] * (d[i * ld + j] - delta[i]) * scale;
}

template <typename T>
void fill_zero(T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = T(0);
}

template <typename T>
T row_max(const T* x, int64_t n) {
  T mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  return mx;
}

template <typename T>
double sum_exp(const T* x, int64_t n, T shift) {
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(double(x[j]) - double(shift));
  return sum;
}

template <typename T>
void softmax_xent_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                          int64_t Vp, int64_t V_real) {
  for (int64_t i = 0; i < N; ++i) {
    const T* l = logits + i * Vp;
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < V_real; ++j) mx = std::max(mx, double(l[j]));
    for (int64_t j = 0; j < V_real; ++j) sum += std::exp(l[j] - mx);
    const double z = mx + std::log(sum);
    lse[i] = T(z);
    losses[i] = targets[i] < 0 ? T(0) : T(z - l[targets[i]]);
  }
}

template <typename T>
void softmax_xent_backward(T* dlogits, const T* dlosses, const T* logits, const T* lse,
                           const int32_t* targets, int64_t N, int64_t Vp, int64_t V_real, int64_t vocab_start) {
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < Vp; ++j) {
      const double p = targets[i] >= 0 && j < V_real ? std::exp(double(logits[i * Vp + j]) - lse[i]) : 0.0;
      const double onehot = targets[i] >= 0 && j + vocab_start == targets[i] ? 1.0 : 0.0;
      dlogits[i * Vp + j] = T((p - onehot) * (targets[i] >= 0 ? double(dlosses[i]) : 0.0));
    }
}

template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
double sum_squares(const T* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return s;
}

template <typename T>
void scale(T* x, T s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWParams& hp) {
  const double bc1 = 1.0 - std::pow(hp.beta1, double(hp.step));
  const double bc2 = 1.0 - std::pow(hp.beta2, double(hp.step));
  for (int64_t i = 0; i < n; ++i) {
    const double g = double(grad[i]) * hp.grad_scale;
    const double mi = hp.beta1 * m[i] + (1.0 - hp.beta1) * g;
    const double vi = hp.beta2 * v[i] + (1.0 - hp.beta2) * g * g;
    m[i] = T(mi);
    v[i] = T(vi);
    const double update = (mi / bc1) / (std::sqrt(vi / bc2) + hp.eps) + hp.weight_decay * param[i];
    param[i] = T(param[i] - hp.lr * update);
  }
}

HOKUSAI_INSTANTIATE_OPS(float)
HOKUSAI_INSTANTIATE_OPS(double)
template void attention_forward<float>(float*, float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_forward<double>(double*, double*, const double*, int64_t, int64_t, int64_t, int64_t,
                                        int64_t);
template void attention_backward<float>(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                                        int64_t, int64_t);
template void attention_backward<double>(double*, const double*, const double*, const double*, int64_t, int64_t,
                                         int64_t, int64_t, int64_t);

}  // namespace hokusai::kernels::ref
