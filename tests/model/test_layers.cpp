// GEMM-based layers against their scalar references: causal attention through GEMM (every GEMM
// backend) against kernels::ref::attention_forward/backward.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

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

// Flash attention against the reference: every sequence length around the tile edges (one row,
// a partial tile, exactly one tile, one more), query tiles smaller, equal and larger than key
// tiles, whole or in bands of rows where the diagonal crosses them (bands that divide the tile or
// not, bands above a whole key tile), multi-head and grouped-query; in double to 1e-12 and in float
// to 1e-5 relative. The key chunks' dQ parts start as NaN: every part row the sum reads must be
// written first.
template <typename T>
void check_flash(int64_t NH, int64_t KV, int64_t T_, model::FlashTiles tiles, double tol) {
  const int64_t B = 2, HS = 8, W = (NH + 2 * KV) * HS, N = B * T_;
  const auto qkv = testing::random_vector<T>(N * W, 3, -2, 2);
  const auto dy = testing::random_vector<T>(N * NH * HS, 4);
  std::vector<T> o_ref(size_t(N * NH * HS)), p_ref(size_t(B * NH * T_ * T_)), d_ref(size_t(N * W), T(0.5));
  kernels::ref::attention_forward(o_ref.data(), p_ref.data(), qkv.data(), B, T_, NH, KV, HS);
  kernels::ref::attention_backward(d_ref.data(), dy.data(), p_ref.data(), qkv.data(), B, T_, NH, KV, HS);
  const kernels::GemmContext ctx{kernels::GemmBackend::native, 2};
  // The output starts as NaN: the forward must write every value, never read what was there.
  std::vector<T> o(o_ref.size(), std::numeric_limits<T>::quiet_NaN()), lse(size_t(B * NH * T_)), d(d_ref.size(), T(0.5));
  model::flash_attention_forward(ctx, o.data(), lse.data(), qkv.data(), B, T_, NH, KV, HS, tiles);
  std::vector<T> parts(size_t(model::flash_backward_parts(B, T_, NH, KV, HS, tiles)), std::numeric_limits<T>::quiet_NaN());
  model::flash_attention_backward(ctx, d.data(), dy.data(), o.data(), lse.data(), qkv.data(), B, T_, NH, KV, HS, tiles,
                                  std::span<T>(parts));
  const auto rel = [](const std::vector<T>& got, const std::vector<T>& want) {
    double err = 0, scale = 1e-30;
    for (size_t i = 0; i < want.size(); ++i) {
      err = testing::max_nan(err, std::abs(double(got[i]) - double(want[i])));
      scale = std::max(scale, std::abs(double(want[i])));
    }
    return err / scale;
  };
  const std::string what = "T=" + std::to_string(T_) + " NH=" + std::to_string(NH) + " KV=" + std::to_string(KV) +
                           " tiles " + std::to_string(tiles.q) + "x" + std::to_string(tiles.k) + "/" +
                           std::to_string(tiles.band);
  EXPECT_LT(rel(o, o_ref), tol) << "out " << what;
  EXPECT_LT(rel(d, d_ref), tol) << "dqkv " << what;
  // The log-sum-exp the backward relies on: log Σ_j exp(s_j) of each row, from the reference's P.
  double worst = 0;
  for (int64_t bh = 0; bh < B * NH; ++bh)
    for (int64_t t = 0; t < T_; ++t) {  // p_ref[t][0] = exp(s_0 - lse): lse = s_0 - log p_0
      const int64_t b = bh / NH, h = bh % NH, g = h / (NH / KV);
      double s0 = 0;
      for (int64_t c = 0; c < HS; ++c)
        s0 += double(qkv[size_t((b * T_ + t) * W + h * HS + c)]) * double(qkv[size_t((b * T_) * W + (NH + g) * HS + c)]);
      s0 /= std::sqrt(double(HS));
      const double want = s0 - std::log(double(p_ref[size_t((bh * T_ + t) * T_)]));
      worst = testing::max_nan(worst, std::abs(double(lse[size_t(bh * T_ + t)]) - want) / std::max(1.0, std::abs(want)));
    }
  EXPECT_LT(worst, tol) << "lse " << what;
}

TEST(FlashAttention, MatchesTheReferenceAroundTileEdges) {
  for (const auto& [NH, KV] : {std::pair<int64_t, int64_t>{3, 3}, {4, 2}, {2, 1}})
    for (const model::FlashTiles tiles : {model::FlashTiles{16, 32}, model::FlashTiles{32, 16}, model::FlashTiles{16, 16},
                                          model::FlashTiles{32, 32, 8}, model::FlashTiles{32, 16, 8},
                                          model::FlashTiles{48, 32, 20}, model::FlashTiles{16, 32, 0}})
      for (const int64_t T_ : {int64_t(1), int64_t(15), int64_t(16), int64_t(17), int64_t(33), int64_t(64), int64_t(71)}) {
        check_flash<double>(NH, KV, T_, tiles, 1e-12);
        check_flash<float>(NH, KV, T_, tiles, 1e-5);
      }
  check_flash<float>(4, 4, 300, model::FlashTiles{}, 1e-5);  // the default tiles (128 x 128), several of each
  check_flash<float>(2, 1, 600, model::FlashTiles{}, 1e-5);  // above 512: 256 x 256
}

// Q, K and V as 16-bit patterns (what a 16-bit run keeps of qkv): forward and backward bit for bit
// the same as from the values those patterns stand for, in bf16 and fp16 products, around tile
// edges, whole tiles and bands, grouped-query; the values pointer is not read (NaN there changes
// nothing). double products refuse patterns.
TEST(FlashAttention, QkvPatternsGiveTheValuesBits) {
  const int64_t B = 2, HS = 8;
  for (const kernels::Precision p : {kernels::Precision::bf16, kernels::Precision::fp16})
    for (const auto& [NH, KV] : {std::pair<int64_t, int64_t>{3, 3}, {4, 2}})
      for (const model::FlashTiles tiles : {model::FlashTiles{16, 32}, model::FlashTiles{32, 16, 8}, model::FlashTiles{}})
        for (const int64_t T_ : {int64_t(1), int64_t(17), int64_t(33), int64_t(71)}) {
          const int64_t W = (NH + 2 * KV) * HS, N = B * T_;
          const auto raw = testing::random_vector<float>(N * W, 3, -2, 2);
          std::vector<uint16_t> bits(raw.size());
          std::vector<float> qkv(raw.size());
          kernels::narrow(p, raw.data(), bits.data(), int64_t(raw.size()));
          kernels::widen(p, bits.data(), qkv.data(), int64_t(raw.size()));  // the values the patterns stand for
          const std::vector<float> unread(raw.size(), std::numeric_limits<float>::quiet_NaN());
          const auto dy = testing::random_vector<float>(N * NH * HS, 4);
          kernels::GemmContext ctx{kernels::GemmBackend::native, 2};
          ctx.precision = p;
          std::vector<float> o(size_t(N * NH * HS)), lse(size_t(B * NH * T_)), d(size_t(N * W), 0.5f);
          std::vector<float> ob(o.size()), lseb(lse.size()), db(d);
          model::flash_attention_forward(ctx, o.data(), lse.data(), qkv.data(), B, T_, NH, KV, HS, tiles);
          model::flash_attention_forward(ctx, ob.data(), lseb.data(), unread.data(), B, T_, NH, KV, HS, tiles,
                                         bits.data());
          model::flash_attention_backward(ctx, d.data(), dy.data(), o.data(), lse.data(), qkv.data(), B, T_, NH, KV, HS,
                                          tiles);
          model::flash_attention_backward(ctx, db.data(), dy.data(), o.data(), lse.data(), unread.data(), B, T_, NH, KV,
                                          HS, tiles, {}, bits.data());
          const std::string what = std::string(name_of(p)) + " T=" + std::to_string(T_) + " NH=" + std::to_string(NH) +
                                   " KV=" + std::to_string(KV) + " tiles " + std::to_string(tiles.q) + "x" +
                                   std::to_string(tiles.k) + "/" + std::to_string(tiles.band);
          ASSERT_EQ(0, std::memcmp(o.data(), ob.data(), o.size() * sizeof(float))) << "out " << what;
          ASSERT_EQ(0, std::memcmp(lse.data(), lseb.data(), lse.size() * sizeof(float))) << "lse " << what;
          ASSERT_EQ(0, std::memcmp(d.data(), db.data(), d.size() * sizeof(float))) << "dqkv " << what;
        }
  std::vector<double> o(8 * 8), lse(8), qkv(8 * 24);
  const std::vector<uint16_t> bits(qkv.size());
  EXPECT_THROW(model::flash_attention_forward(kernels::GemmContext{kernels::GemmBackend::native, 1}, o.data(), lse.data(),
                                              qkv.data(), 1, 8, 1, 1, 8, {}, bits.data()),
               std::invalid_argument);
}

// The dQ parts in the caller's buffer (the model's scratch, counted by the planner): stale values
// in it change nothing (bit for bit against the call's own buffer), one value short is refused,
// and the planner's size covers every shape up to the largest.
TEST(FlashAttention, DqPartsFromTheCallerMayHoldStaleValuesAndAreSized) {
  const int64_t B = 1, T_ = 600, NH = 2, KV = 1, HS = 8, W = (NH + 2 * KV) * HS;  // 3 key tiles, 3 chunks
  const auto qkv = testing::random_vector<float>(B * T_ * W, 7, -2, 2);
  const auto dy = testing::random_vector<float>(B * T_ * NH * HS, 8);
  const kernels::GemmContext ctx{kernels::GemmBackend::native, 2};
  std::vector<float> o(size_t(B * T_ * NH * HS)), lse(size_t(B * NH * T_));
  model::flash_attention_forward(ctx, o.data(), lse.data(), qkv.data(), B, T_, NH, KV, HS);
  const int64_t parts = model::flash_backward_parts(B, T_, NH, KV, HS);
  ASSERT_EQ(parts, 3 * B * NH * T_ * HS);
  std::vector<float> own(size_t(B * T_ * W), 0.5f), given(own), stale(size_t(parts), 1e30f);
  model::flash_attention_backward(ctx, own.data(), dy.data(), o.data(), lse.data(), qkv.data(), B, T_, NH, KV, HS);
  model::flash_attention_backward(ctx, given.data(), dy.data(), o.data(), lse.data(), qkv.data(), B, T_, NH, KV, HS, {},
                                  std::span<float>(stale));
  EXPECT_EQ(own, given);
  EXPECT_THROW(model::flash_attention_backward(ctx, given.data(), dy.data(), o.data(), lse.data(), qkv.data(), B, T_, NH,
                                               KV, HS, {}, std::span<float>(stale).first(size_t(parts - 1))),
               std::invalid_argument);
  const int64_t most = model::flash_backward_parts_max(4, 1024, 12, 12, 64);
  for (int64_t b = 1; b <= 4; ++b)
    for (const int64_t t : {int64_t(1), int64_t(256), int64_t(512), int64_t(513), int64_t(1024)})
      EXPECT_LE(model::flash_backward_parts(b, t, 12, 12, 64), most) << "B " << b << " T " << t;
  EXPECT_EQ(model::flash_backward_parts(4, 256, 12, 12, 64), 0);  // 48 (batch, head) tasks: one chunk each
}

// The comparison can fail: flash attention of inputs with one key changed by 1e-3 (in the second
// key tile, seen by later queries only) is told apart from the reference of the original inputs.
TEST(FlashAttention, AChangedKeyIsCaught) {
  const int64_t B = 1, T_ = 40, NH = 2, HS = 8, W = 3 * NH * HS;
  auto qkv = testing::random_vector<double>(B * T_ * W, 5, -2, 2);
  std::vector<double> o_ref(size_t(B * T_ * NH * HS)), p(size_t(B * NH * T_ * T_)), o(o_ref.size()), lse(size_t(NH * T_));
  kernels::ref::attention_forward(o_ref.data(), p.data(), qkv.data(), B, T_, NH, NH, HS);
  qkv[size_t(20 * W + NH * HS + 3)] += 1e-3;  // key 20, head 0
  model::flash_attention_forward(kernels::GemmContext{kernels::GemmBackend::native, 1}, o.data(), lse.data(), qkv.data(),
                                 B, T_, NH, NH, HS, model::FlashTiles{16, 16});
  double err = 0;
  for (size_t i = 0; i < o.size(); ++i) err = testing::max_nan(err, std::abs(o[i] - o_ref[i]));
  EXPECT_GT(err, 1e-7);
  for (int64_t t = 0; t < 20; ++t)  // queries before key 20 do not see it
    for (int64_t c = 0; c < NH * HS; ++c)
      EXPECT_NEAR(o[size_t(t * NH * HS + c)], o_ref[size_t(t * NH * HS + c)], 1e-12) << "row " << t;
}

INSTANTIATE_TEST_SUITE_P(Heads, AttentionGemm,
                         ::testing::Values(std::pair<int64_t, int64_t>{3, 3}, std::pair<int64_t, int64_t>{4, 2},
                                           std::pair<int64_t, int64_t>{3, 1}));

}  // namespace
}  // namespace hokusai
