// GEMM-based layers against their scalar references: causal attention through GEMM (every GEMM
// backend) against kernels::ref::attention_forward/backward.
#include <gtest/gtest.h>

#include "model/layers.hpp"
#include "gradcheck.hpp"
#include "kernels/ref/ops_ref.hpp"

namespace hokusai {
namespace {

// Multi-head (KV = NH), grouped-query (2 query heads per key/value head) and multi-query (KV = 1).
class AttentionGemm : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(AttentionGemm, MatchesTheReferenceForEveryBackend) {
  const auto [NH, KV] = GetParam();
  const int64_t B = 2, T = 37, HS = 16, W = (NH + 2 * KV) * HS, N = B * T;
  const auto qkv = testing::random_vector<float>(N * W, 1, -2, 2);
  const auto dy = testing::random_vector<float>(N * NH * HS, 2);
  std::vector<float> o_ref(size_t(N * NH * HS)), p_ref(size_t(B * NH * T * T)), d_ref(size_t(N * W), 0.5f);
  kernels::ref::attention_forward(o_ref.data(), p_ref.data(), qkv.data(), B, T, NH, KV, HS);
  kernels::ref::attention_backward(d_ref.data(), dy.data(), p_ref.data(), qkv.data(), B, T, NH, KV, HS);
  for (auto backend : {kernels::GemmBackend::native, kernels::GemmBackend::openblas, kernels::GemmBackend::onednn,
                       kernels::GemmBackend::reference}) {
    const kernels::GemmContext ctx{backend, 2};
    std::vector<float> o(o_ref.size()), p(p_ref.size()), d(d_ref.size(), 0.5f);  // backward adds: start at 0.5
    model::attention_forward(ctx, o.data(), p.data(), qkv.data(), B, T, NH, KV, HS);
    model::attention_backward(ctx, d.data(), dy.data(), p.data(), qkv.data(), B, T, NH, KV, HS);
    for (size_t i = 0; i < o.size(); ++i) ASSERT_NEAR(o[i], o_ref[i], 2e-5) << name_of(backend) << " out " << i;
    for (int64_t b = 0; b < B * NH; ++b)  // probabilities: causal part only (the reference leaves the rest)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j <= t; ++j) {
          const size_t at = size_t((b * T + t) * T + j);
          ASSERT_NEAR(p[at], p_ref[at], 2e-6) << name_of(backend) << " probs";
        }
    for (size_t i = 0; i < d.size(); ++i) ASSERT_NEAR(d[i], d_ref[i], 5e-5) << name_of(backend) << " dqkv " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, AttentionGemm,
                         ::testing::Values(std::pair<int64_t, int64_t>{3, 3}, std::pair<int64_t, int64_t>{4, 2},
                                           std::pair<int64_t, int64_t>{3, 1}));

}  // namespace
}  // namespace hokusai
