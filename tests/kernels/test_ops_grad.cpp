// Every layer's analytic backward against central finite differences, in double. The scalar loss
// is L = <w, out> for a fixed random w, so d_out = w.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "gradcheck.hpp"
#include "kernels/ops.hpp"
#include "kernels/ref/ops_ref.hpp"

namespace hokusai {
namespace {

using testing::all_indices;
using testing::check_gradient;
using testing::dot;
using testing::random_vector;
using Vec = std::vector<double>;

constexpr double kTol = 1e-6;  // relative error; observed ~1e-9 for correct kernels

// Runs the FD check of every input x_k of an op given forward(out) and backward(grads).
struct OpCheck {
  std::vector<Vec*> inputs;
  std::vector<std::string> names;
  int64_t out_size;
  std::function<void(Vec& out)> forward;
  std::function<void(std::vector<Vec>& grads, const Vec& dout)> backward;

  double run() {
    const Vec w = random_vector<double>(out_size, 99);
    Vec out(static_cast<size_t>(out_size));
    std::vector<Vec> grads;
    for (Vec* x : inputs) grads.emplace_back(x->size(), 0.0);
    forward(out);
    backward(grads, w);
    const auto loss = [&] {
      forward(out);
      return dot(out, w);
    };
    double worst = 0.0;
    for (size_t k = 0; k < inputs.size(); ++k) {
      const auto r = check_gradient(loss, inputs[k]->data(), grads[k].data(),
                                    all_indices(int64_t(inputs[k]->size())));
      EXPECT_LT(r.max_err, kTol) << names[k] << "[" << r.worst << "] analytic " << r.analytic
                                 << " numeric " << r.numeric;
      worst = testing::max_nan(worst, r.max_err);
    }
    return worst;
  }
};

// The same checks for the fast kernels (kernels::) and the references (kernels::ref::).
template <bool Ref>
struct Ops;
#define HOKUSAI_OPS_TABLE(NS)                                                                      \
  static constexpr auto layernorm_forward = NS::layernorm_forward<double>;                        \
  static constexpr auto layernorm_backward = NS::layernorm_backward<double>;                      \
  static constexpr auto rmsnorm_forward = NS::rmsnorm_forward<double>;                            \
  static constexpr auto rmsnorm_backward = NS::rmsnorm_backward<double>;                          \
  static constexpr auto norm_rows_forward = NS::norm_rows_forward<double>;                        \
  static constexpr auto norm_scale_forward = NS::norm_scale_forward<double>;                      \
  static constexpr auto norm_rows_backward = NS::norm_rows_backward<double>;                      \
  static constexpr auto gelu_forward = NS::gelu_forward<double>;                                  \
  static constexpr auto gelu_backward = NS::gelu_backward<double>;                                \
  static constexpr auto gelu_backward_in_place = NS::gelu_backward_in_place<double>;              \
  static constexpr auto swiglu_forward = NS::swiglu_forward<double>;                              \
  static constexpr auto swiglu_backward = NS::swiglu_backward<double>;                            \
  static constexpr auto rope_forward = NS::rope_forward<double>;                                  \
  static constexpr auto rope_backward = NS::rope_backward<double>;                                \
  static constexpr auto softmax_xent_forward = NS::softmax_xent_forward<double>;                  \
  static constexpr auto softmax_xent_backward = NS::softmax_xent_backward<double>;                \
  static constexpr auto embedding_forward = NS::embedding_forward<double>;                        \
  static constexpr auto embedding_backward = NS::embedding_backward<double>;                      \
  static constexpr auto bias_forward = NS::bias_forward<double>;                                  \
  static constexpr auto bias_backward = NS::bias_backward<double>;
template <>
struct Ops<false> {
  HOKUSAI_OPS_TABLE(kernels)
};
template <>
struct Ops<true> {
  HOKUSAI_OPS_TABLE(kernels::ref)
};

template <typename P>
class OpGrad : public ::testing::Test {};
using Kinds = ::testing::Types<Ops<false>, Ops<true>>;
TYPED_TEST_SUITE(OpGrad, Kinds);

constexpr int64_t N = 5, C = 12;

TYPED_TEST(OpGrad, LayerNorm) {
  using K = TypeParam;
  Vec x = random_vector<double>(N * C, 1), w = random_vector<double>(C, 2, 0.5, 1.5),
      b = random_vector<double>(C, 3), mean(N), rstd(N);
  OpCheck c{{&x, &w, &b}, {"x", "w", "b"}, N * C,
            [&](Vec& out) { K::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5); },
            [&](std::vector<Vec>& g, const Vec& dout) {
              K::layernorm_backward(g[0].data(), g[1].data(), g[2].data(), dout.data(), x.data(), w.data(),
                                    mean.data(), rstd.data(), N, C);
            }};
  c.run();
}

TYPED_TEST(OpGrad, RmsNorm) {
  using K = TypeParam;
  Vec x = random_vector<double>(N * C, 4), w = random_vector<double>(C, 5, 0.5, 1.5), rstd(N);
  OpCheck c{{&x, &w}, {"x", "w"}, N * C,
            [&](Vec& out) { K::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5); },
            [&](std::vector<Vec>& g, const Vec& dout) {
              K::rmsnorm_backward(g[0].data(), g[1].data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
            }};
  c.run();
}

// The norms in two halves (the normalized rows kept, the output rebuilt from them): LayerNorm
// (centered, with a bias) and RMSNorm, x and the weights.
TYPED_TEST(OpGrad, NormFromNormalizedRows) {
  using K = TypeParam;
  for (const bool centered : {true, false}) {
    Vec x = random_vector<double>(N * C, 21), w = random_vector<double>(C, 22, 0.5, 1.5),
        b = random_vector<double>(C, 23), xn(N * C), rstd(N);
    std::vector<Vec*> inputs{&x, &w};
    if (centered) inputs.push_back(&b);
    OpCheck c{inputs, {"x", "w", "b"}, N * C,
              [&](Vec& out) {
                Vec rebuilt(N * C);
                K::norm_rows_forward(xn.data(), out.data(), rstd.data(), x.data(), w.data(), centered ? b.data() : nullptr,
                                     N, C, 1e-5, centered, kernels::Precision::fp32);
                K::norm_scale_forward(rebuilt.data(), xn.data(), w.data(), centered ? b.data() : nullptr, N, C);
                EXPECT_EQ(rebuilt, out);  // the rebuild is the forward's output
              },
              [&](std::vector<Vec>& g, const Vec& dout) {
                K::norm_rows_backward(g[0].data(), g[1].data(), centered ? g[2].data() : nullptr, dout.data(),
                                      xn.data(), w.data(), rstd.data(), N, C, centered);
              }};
    SCOPED_TRACE(centered ? "layernorm" : "rmsnorm");
    c.run();
  }
}

TYPED_TEST(OpGrad, Gelu) {
  using K = TypeParam;
  Vec x = random_vector<double>(N * C, 6, -4, 4);
  OpCheck c{{&x}, {"x"}, N * C, [&](Vec& out) { K::gelu_forward(out.data(), x.data(), N * C); },
            [&](std::vector<Vec>& g, const Vec& dout) { K::gelu_backward(g[0].data(), dout.data(), x.data(), N * C); }};
  c.run();
  OpCheck in_place{{&x}, {"x"}, N * C, [&](Vec& out) { K::gelu_forward(out.data(), x.data(), N * C); },
                   [&](std::vector<Vec>& g, const Vec& dout) {
                     Vec t = dout;
                     K::gelu_backward_in_place(t.data(), x.data(), N * C);
                     for (int64_t i = 0; i < N * C; ++i) g[0][size_t(i)] += t[size_t(i)];
                   }};
  SCOPED_TRACE("in place");
  in_place.run();
}

TYPED_TEST(OpGrad, SwiGlu) {
  using K = TypeParam;
  const int64_t F = 6;
  Vec x = random_vector<double>(N * 2 * F, 7, -3, 3);
  OpCheck c{{&x}, {"x"}, N * F, [&](Vec& out) { K::swiglu_forward(out.data(), x.data(), N, F); },
            [&](std::vector<Vec>& g, const Vec& dout) { K::swiglu_backward(g[0].data(), dout.data(), x.data(), N, F); }};
  c.run();
}

TYPED_TEST(OpGrad, Rope) {
  using K = TypeParam;
  const int64_t B = 2, T = 4, HS = 6;
  for (const auto& [NH, KV] : {std::pair<int64_t, int64_t>{2, 2}, {4, 2}}) {  // multi-head, grouped-query
    const int64_t W = (NH + 2 * KV) * HS;
    Vec x = random_vector<double>(B * T * W, 8);
    OpCheck c{{&x}, {"qkv"}, B * T * W,
              [&](Vec& out) {
                out = x;
                K::rope_forward(out.data(), B, T, NH, KV, HS, 10000.0);
              },
              [&](std::vector<Vec>& g, const Vec& dout) {
                Vec d = dout;
                K::rope_backward(d.data(), B, T, NH, KV, HS, 10000.0);
                for (size_t i = 0; i < d.size(); ++i) g[0][i] += d[i];
              }};
    c.run();
  }
}

// The reference attention only (the model's GEMM attention is checked against it in test_layers):
// multi-head, grouped-query (2 query heads per key/value head) and multi-query (one for all).
TEST(OpGradRef, Attention) {
  namespace K = kernels::ref;
  const int64_t B = 2, T = 5, HS = 3;
  for (const auto& [NH, KV] : {std::pair<int64_t, int64_t>{2, 2}, {4, 2}, {3, 1}}) {
    Vec qkv = random_vector<double>(B * T * (NH + 2 * KV) * HS, 9, -2, 2), probs(B * NH * T * T);
    OpCheck c{{&qkv}, {"qkv"}, B * T * NH * HS,
              [&](Vec& out) { K::attention_forward(out.data(), probs.data(), qkv.data(), B, T, NH, KV, HS); },
              [&](std::vector<Vec>& g, const Vec& dout) {
                K::attention_backward(g[0].data(), dout.data(), probs.data(), qkv.data(), B, T, NH, KV, HS);
              }};
    c.run();
  }
}

TYPED_TEST(OpGrad, SoftmaxCrossEntropyWithPaddingAndIgnoredTarget) {
  using K = TypeParam;
  const int64_t Vp = 8, V = 6;
  Vec logits = random_vector<double>(N * Vp, 10, -3, 3), lse(N);
  const std::vector<int32_t> targets = {0, 5, -1, 3, 2};
  OpCheck c{{&logits}, {"logits"}, N,
            [&](Vec& out) { K::softmax_xent_forward(out.data(), lse.data(), logits.data(), targets.data(), N, Vp, V); },
            [&](std::vector<Vec>& g, const Vec& dout) {
              K::softmax_xent_backward(g[0].data(), dout.data(), logits.data(), lse.data(), targets.data(), N, Vp, V, 0);
            }};
  c.run();
}

TYPED_TEST(OpGrad, EmbeddingWithPositionsAndVocabRange) {
  using K = TypeParam;
  const int64_t B = 2, T = 3, V = 4, vocab_start = 2;
  Vec wte = random_vector<double>(V * C, 11), wpe = random_vector<double>(T * C, 12);
  // Tokens 0 and 1 belong to another vocabulary shard: they must contribute nothing here.
  const std::vector<int32_t> tokens = {2, 5, 0, 3, 3, 1};
  OpCheck c{{&wte, &wpe}, {"wte", "wpe"}, B * T * C,
            [&](Vec& out) { K::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, vocab_start, V); },
            [&](std::vector<Vec>& g, const Vec& dout) {
              K::embedding_backward(g[0].data(), g[1].data(), dout.data(), tokens.data(), B, T, C, vocab_start, V);
            }};
  c.run();
}

TYPED_TEST(OpGrad, Bias) {
  using K = TypeParam;
  Vec b = random_vector<double>(C, 13), base = random_vector<double>(N * C, 14);
  OpCheck c{{&b}, {"bias"}, N * C,
            [&](Vec& out) {
              out = base;
              K::bias_forward(out.data(), b.data(), N, C);
            },
            [&](std::vector<Vec>& g, const Vec& dout) { K::bias_backward(g[0].data(), dout.data(), N, C); }};
  c.run();
}

// A LayerNorm backward with a classic bug (the projection term xhat * mean(dxhat * xhat) is
// missing). The same check that passes the real kernel must reject it.
void broken_layernorm_backward(double* din, double* dw, double* db, const double* dout, const double* in,
                               const double* w, const double* mean, const double* rstd, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i) {
    double m = 0;
    for (int64_t j = 0; j < c; ++j) m += dout[i * c + j] * w[j];
    m /= double(c);
    for (int64_t j = 0; j < c; ++j) {
      const double xhat = (in[i * c + j] - mean[i]) * rstd[i];
      dw[j] += dout[i * c + j] * xhat;
      db[j] += dout[i * c + j];
      din[i * c + j] += rstd[i] * (dout[i * c + j] * w[j] - m);
    }
  }
}

TEST(GradCheckCatches, BrokenLayerNormBackward) {
  Vec x = random_vector<double>(N * C, 1), w = random_vector<double>(C, 2, 0.5, 1.5),
      b = random_vector<double>(C, 3), mean(N), rstd(N);
  OpCheck c{{&x}, {"x"}, N * C,
            [&](Vec& out) { kernels::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5); },
            [&](std::vector<Vec>& g, const Vec& dout) {
              Vec dw(C), db(C);
              broken_layernorm_backward(g[0].data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                                        mean.data(), rstd.data(), N, C);
            }};
  // Run the check outside EXPECT so its own failure report does not fail this test.
  double worst;
  {
    ::testing::TestPartResultArray failures;
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    worst = c.run();
    EXPECT_GT(failures.size(), 0) << "the gradient check did not report the broken kernel";
  }
  EXPECT_GT(worst, 1e-2) << "a missing LayerNorm term must give a large relative error";
}

}  // namespace
}  // namespace hokusai
