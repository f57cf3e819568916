// Tensor-parallel building blocks under mpirun (ctest: 1, 2, 3 and 4 ranks, the world being the
// tp group): each communication pair on rank-valued inputs whose results are known in closed
// form, then a column-parallel -> GELU -> row-parallel MLP (the model's own tp linears), the vocabulary-parallel embedding and
// the vocabulary-parallel cross-entropy against the serial layers computed on every rank from the
// same values (forward outputs, input gradients, every weight gradient).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "comm/grid.hpp"
#include "comm/mpi.hpp"
#include "gradcheck.hpp"
#include "hokusai/model.hpp"
#include "kernels/ops.hpp"
#include "model/layers.hpp"
#include "model/vocab_parallel.hpp"
#include "parallel/tensor_parallel.hpp"

namespace hokusai::parallel {
namespace {

comm::Communicator& world() {
  static comm::Communicator w = comm::Communicator::world();  // test-local: one world per process
  return w;
}

float value(int64_t i, int64_t j) { return float((i * 7 + j * 3) % 11); }  // integers: exact sums

TEST(TpPairs, ReduceSumsRankValues) {
  const int p = world().size(), r = world().rank();
  std::vector<float> x(37);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(r + 1) + float(i);
  tp_reduce(world(), x.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], float(p * (p + 1) / 2) + float(p) * float(i)) << i;
}

// Odd sizes so blocks are uneven for 2, 3 and 4 ranks.
TEST(TpPairs, SplitAndGatherColumnsAreInverse) {
  const int p = world().size(), r = world().rank();
  const int64_t rows = 5, cols = 13;
  std::vector<float> full(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) full[size_t(i * cols + j)] = value(i, j);
  const comm::Range c = comm::split_evenly(cols, p, r);
  std::vector<float> mine(size_t(rows * c.size()));
  tp_split_columns(world(), full.data(), rows, cols, mine.data());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < c.size(); ++j) ASSERT_EQ(mine[size_t(i * c.size() + j)], value(i, c.begin + j));
  std::vector<float> back(full.size(), -1.0f);
  tp_gather_columns(world(), mine.data(), rows, cols, back.data());
  EXPECT_EQ(back, full);
}

TEST(TpPairs, GatherRowsAndReduceScatterRowsAreConjugate) {
  const int p = world().size(), r = world().rank();
  const int64_t rows = 11, cols = 3;
  const comm::Range rr = comm::split_evenly(rows, p, r);
  std::vector<float> mine(size_t(rr.size() * cols));
  for (int64_t i = 0; i < rr.size(); ++i)
    for (int64_t j = 0; j < cols; ++j) mine[size_t(i * cols + j)] = value(rr.begin + i, j);
  std::vector<float> full(size_t(rows * cols), -1.0f);
  tp_gather_rows(world(), mine.data(), rows, cols, full.data());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) ASSERT_EQ(full[size_t(i * cols + j)], value(i, j));
  // Backward of the gather: every rank's gradient of the full tensor summed, this rank's rows kept.
  std::vector<float> grad(full.size());
  for (size_t k = 0; k < grad.size(); ++k) grad[k] = float(r + 1) * float(k % 5);
  std::vector<float> dmine(mine.size(), -1.0f);
  tp_reduce_scatter_rows(world(), grad.data(), rows, cols, dmine.data());
  for (int64_t i = 0; i < rr.size(); ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const size_t k = size_t((rr.begin + i) * cols + j);
      ASSERT_EQ(dmine[size_t(i * cols + j)], float(p * (p + 1) / 2) * float(k % 5));
    }
}

// Deterministic weights in [-0.5, 0.5).
std::vector<float> weights(int64_t n, uint64_t seed) {
  std::vector<float> w(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : w) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = float(double(s >> 11) / double(1ull << 53) - 0.5);
  }
  return w;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 2e-5 * (1.0 + std::abs(want[i]))) << what << " at " << i << " (rank "
                                                                    << world().rank() << ")";
}

// The MLP of a GPT-2 block: h = gelu(x·W1^T + b1) (column-parallel over F), y = h·W2^T + b2
// (row-parallel over F). F = 22 does not divide evenly by 3 or 4 ranks.
TEST(TpLinear, ColumnThenRowParallelMlpEqualsSerial) {
  const int p = world().size(), r = world().rank();
  const int64_t N = 9, C = 8, F = 22;
  const kernels::GemmContext ctx{kernels::GemmBackend::native, 1};
  const auto x = weights(N * C, 1), w1 = weights(F * C, 2), b1 = weights(F, 3), w2 = weights(C * F, 4),
             b2 = weights(C, 5), dy = weights(N * C, 6);

  // Serial reference, on every rank.
  std::vector<float> a(N * F), h(N * F), y(N * C);
  model::linear_forward(ctx, a.data(), x.data(), w1.data(), b1.data(), N, C, F);
  kernels::gelu_forward(h.data(), a.data(), N * F);
  model::linear_forward(ctx, y.data(), h.data(), w2.data(), b2.data(), N, F, C);
  std::vector<float> dh(N * F, 0.0f), da(N * F, 0.0f), dx(N * C, 0.0f), dw1(F * C, 0.0f), db1(F, 0.0f),
      dw2(C * F, 0.0f), db2(C, 0.0f);
  model::linear_backward(ctx, dh.data(), dw2.data(), db2.data(), dy.data(), h.data(), w2.data(), N, F, C);
  kernels::gelu_backward(da.data(), dh.data(), a.data(), N * F);
  model::linear_backward(ctx, dx.data(), dw1.data(), db1.data(), da.data(), x.data(), w1.data(), N, C, F);

  // This rank's shards: rows of W1/b1, columns of W2 (F block), b2 whole.
  const comm::Range f = comm::split_evenly(F, p, r);
  const int64_t Fr = f.size();
  std::vector<float> w1_r(w1.begin() + f.begin * C, w1.begin() + f.end * C), b1_r(b1.begin() + f.begin, b1.begin() + f.end);
  std::vector<float> w2_r(size_t(C * Fr));
  tp_split_columns(world(), w2.data(), C, F, w2_r.data());

  const TensorParallelOps ops = tensor_parallel_ops(world());
  std::vector<float> a_r(N * Fr), h_r(N * Fr), y_tp(N * C);
  model::linear_forward(ctx, a_r.data(), x.data(), w1_r.data(), b1_r.data(), N, C, Fr);  // column-parallel
  kernels::gelu_forward(h_r.data(), a_r.data(), N * Fr);
  model::row_parallel_linear_forward(ctx, &ops, y_tp.data(), h_r.data(), w2_r.data(), b2.data(), N, Fr, C);
  expect_close(y_tp, y, "forward output");

  std::vector<float> dh_r(N * Fr, 0.0f), da_r(N * Fr, 0.0f), dw1_r(Fr * C, 0.0f), db1_r(Fr, 0.0f),
      dw2_r(C * Fr, 0.0f), db2_tp(C, 0.0f);
  std::vector<float> dx_tp(N * C, -1.0f);  // stale values: the column-parallel backward overwrites
  // Row-parallel backward: dy is replicated, no communication.
  model::linear_backward(ctx, dh_r.data(), dw2_r.data(), db2_tp.data(), dy.data(), h_r.data(), w2_r.data(), N, Fr, C);
  kernels::gelu_backward(da_r.data(), dh_r.data(), a_r.data(), N * Fr);
  model::column_parallel_linear_backward(ctx, &ops, dx_tp.data(), dw1_r.data(), db1_r.data(), da_r.data(), x.data(),
                                         w1_r.data(), N, C, Fr);
  expect_close(dx_tp, dx, "input gradient");
  expect_close(dw1_r, std::vector<float>(dw1.begin() + f.begin * C, dw1.begin() + f.end * C), "W1 gradient shard");
  expect_close(db1_r, std::vector<float>(db1.begin() + f.begin, db1.begin() + f.end), "b1 gradient shard");
  std::vector<float> dw2_full(C * F);
  tp_gather_columns(world(), dw2_r.data(), C, F, dw2_full.data());
  expect_close(dw2_full, dw2, "W2 gradient (gathered)");
  expect_close(db2_tp, db2, "b2 gradient (replicated)");
}

// Vp = 48 splits evenly over 1-4 ranks; ids 45..47 are padding (the last rank's block holds
// real and padded ids); targets hit every rank's block, and -1 is ignored.
constexpr int64_t kVp = 48, kVreal = 45;
const std::vector<int32_t> kTargets = {0, 13, 44, 23, -1, 30, 7, 36, 11};

TEST(VocabParallel, CrossEntropyEqualsSerial) {
  const int p = world().size(), r = world().rank();
  const int64_t N = int64_t(kTargets.size());
  auto logits = weights(N * kVp, 11);
  for (auto& v : logits) v *= 8.0f;
  const auto dl = weights(N, 12);
  std::vector<float> losses(N), lse(N), dlogits(N * kVp, 0.0f);
  kernels::softmax_xent_forward(losses.data(), lse.data(), logits.data(), kTargets.data(), N, kVp, kVreal);
  kernels::softmax_xent_backward(dlogits.data(), dl.data(), logits.data(), lse.data(), kTargets.data(), N, kVp,
                                 kVreal, 0);

  const comm::Range v = comm::split_evenly(kVp, p, r);
  ASSERT_EQ(v.size() * p, kVp);
  std::vector<float> logits_r(N * v.size()), losses_tp(N), lse_tp(N), dlogits_r(N * v.size(), 0.0f);
  tp_split_columns(world(), logits.data(), N, kVp, logits_r.data());
  const TensorParallelOps ops = tensor_parallel_ops(world());
  model::vocab_parallel_xent_forward(ops, losses_tp.data(), lse_tp.data(), logits_r.data(), kTargets.data(), N,
                              v.size(), v.begin, kVreal);
  expect_close(losses_tp, losses, "losses");
  expect_close(lse_tp, lse, "log-sum-exp");
  // The backward is the serial kernel on this rank's slice (global lse, target offset by v0).
  kernels::softmax_xent_backward(dlogits_r.data(), dl.data(), logits_r.data(), lse_tp.data(), kTargets.data(), N,
                                 v.size(), std::clamp<int64_t>(kVreal - v.begin, 0, v.size()), v.begin);
  std::vector<float> gathered(N * kVp);
  tp_gather_columns(world(), dlogits_r.data(), N, kVp, gathered.data());
  expect_close(gathered, dlogits, "logit gradients (gathered)");
}

TEST(VocabParallel, EmbeddingEqualsSerial) {
  const int p = world().size(), r = world().rank();
  const int64_t C = 5;
  std::vector<int32_t> tokens = {0, 13, 44, 23, 23, 30, 7, 36, 11};  // 23 twice: rows accumulate
  const int64_t N = int64_t(tokens.size());
  const auto wte = weights(kVp * C, 21), dout = weights(N * C, 22), wpe = weights(N * C, 23);
  const comm::Range v = comm::split_evenly(kVp, p, r);
  const std::vector<float> wte_r(wte.begin() + v.begin * C, wte.begin() + v.end * C);
  std::vector<float> out(N * C), want(N * C), dwte(kVp * C, 0.0f), dwte_r(v.size() * C, 0.0f);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c) {
      want[size_t(i * C + c)] = wte[size_t(tokens[size_t(i)] * C + c)] + wpe[size_t(i * C + c)];
      dwte[size_t(tokens[size_t(i)] * C + c)] += dout[size_t(i * C + c)];
    }
  model::vocab_parallel_embedding_forward(tensor_parallel_ops(world()), out.data(), tokens.data(), wte_r.data(),
                                          wpe.data(), 1, N, C, v.begin, v.size());
  EXPECT_EQ(out, want);
  // Sequence parallelism: only this rank's rows, reduce-scattered; the others left untouched.
  const comm::Range rows = comm::split_evenly(N, world().size(), world().rank());
  std::vector<float> mine(out.size(), -7.0f), partial(out.size());
  model::vocab_parallel_embedding_forward(tensor_parallel_ops(world()), mine.data(), tokens.data(), wte_r.data(),
                                          wpe.data(), 1, N, C, v.begin, v.size(), rows, partial.data());
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c)
      ASSERT_EQ(mine[size_t(i * C + c)], i >= rows.begin && i < rows.end ? want[size_t(i * C + c)] : -7.0f)
          << "row " << i << " of rank " << world().rank() << "'s " << rows.begin << ".." << rows.end;
  // The backward needs no communication: the model's embedding_backward with its vocab_start.
  kernels::embedding_backward<float>(dwte_r.data(), nullptr, dout.data(), tokens.data(), 1, N, C, v.begin, v.size());
  expect_close(dwte_r, std::vector<float>(dwte.begin() + v.begin * C, dwte.begin() + v.end * C), "wte gradient shard");
}

// Sequence parallelism over the micro-batches of a step: each rank's norm weight gradients cover
// its own token rows, so they stay partial in the model until the step's last backward
// (Model::backward's `last`) sums them over tp — once per layer per step. Two steps of three
// micro-batches, without zeroing between them, must give the gradients of summing after every
// micro-batch (every backward `last`) with 2 * (m - 1) * L fewer tp sums; and the replicated
// norms' gradients must be the same on every rank.
TEST(SequenceParallel, NormGradientsSummedOncePerStep) {
  const int p = world().size(), r = world().rank();
  if (p < 2) GTEST_SKIP() << "sequence parallelism needs tp >= 2";
  for (const Family family : {Family::gpt2, Family::llama}) {
    ModelConfig cfg;
    cfg.family = family;
    cfg.layers = 2, cfg.hidden = 24, cfg.heads = 12, cfg.ffn_hidden = 48;  // heads and width divide by 2, 3, 4
    cfg.vocab_size = 29, cfg.vocab_pad_multiple = 8, cfg.max_seq_len = 8, cfg.init_std = 0.2;
    ModelDims d = ModelDims::from(cfg, comm::ParallelGrid(comm::GridShape{p, 1, 1}, p, r));
    d.sequence_parallel = true;
    const TensorParallelOps ops = tensor_parallel_ops(world());
    int64_t sums = 0;
    TensorParallelOps counted = ops;
    counted.sum = [&](float* x, int64_t n) { ++sums, ops.sum(x, n); };
    ComputeContext ctx;
    ctx.tp = &counted;
    const int64_t B = 2, T = 7, m = 3;  // N = 14 rows: uneven blocks over 3 and 4 ranks
    const float dloss = 1.0f / float(m * B * T);
    std::vector<int32_t> tok(size_t(B * T)), tgt(size_t(B * T));
    const auto train = [&](bool once, std::vector<float>& grads) {
      Model<float> model(d, B, T);
      model.init(7);
      model.zero_grads();
      sums = 0;
      for (int step = 0; step < 2; ++step)
        for (int i = 0; i < m; ++i) {
          for (int64_t j = 0; j < B * T; ++j)
            tok[size_t(j)] = int32_t((i * 7 + j * 5 + step) % 29), tgt[size_t(j)] = int32_t((i * 3 + j * 11 + 1) % 29);
          model.forward(ctx, tok.data(), tgt.data(), B, T);
          model.backward(ctx, tok.data(), tgt.data(), dloss, nullptr, 0, nullptr, 0, !once || i == m - 1);
        }
      grads.assign(model.grads().begin(), model.grads().end());
      EXPECT_THROW(model.backward(ctx, tok.data(), tgt.data(), dloss, [](int64_t, int64_t) {}, 0, nullptr, 0, false),
                   std::invalid_argument);
      return std::pair{sums, param_table(d)};
    };
    std::vector<float> each, once;
    const auto [each_sums, table] = train(false, each);
    const int64_t once_sums = train(true, once).first;
    EXPECT_EQ(each_sums - once_sums, 2 * (m - 1) * cfg.layers) << name_of(family);
    for (const TensorSpec& t : table) {
      float scale = 0.0f, worst = 0.0f;
      for (int64_t i = t.offset; i < t.offset + t.numel; ++i)
        scale = std::max(scale, std::abs(each[size_t(i)])),
        worst = float(testing::max_nan(worst, std::abs(each[size_t(i)] - once[size_t(i)])));
      EXPECT_LE(worst, 1e-5f * scale) << name_of(family) << " " << t.name << " (rank " << r << ")";
      if (t.name.find("ln") == std::string::npos) continue;  // the norms: replicated, the same on every rank
      EXPECT_GT(scale, 0.0f) << t.name;
      std::vector<float> lo(once.begin() + t.offset, once.begin() + t.offset + t.numel), hi = lo;
      world().allreduce(lo.data(), t.numel, comm::Reduce::min);
      world().allreduce(hi.data(), t.numel, comm::Reduce::max);
      EXPECT_EQ(lo, hi) << name_of(family) << " " << t.name << " differs between ranks";
    }
  }
}

}  // namespace
}  // namespace hokusai::parallel
