// Pipeline parallelism under mpirun (ctest: 1, 2, 3 and 4 ranks, the world being one pipeline).
// First the schedules alone: every micro-batch chunk runs forward once and backward once after
// it, the documented 1F1B order, the slot counts, and a simulation of all stages with blocking
// receives that must finish (no schedule can deadlock). Then the real thing: Pipeline::train over
// the stages of a small model (1F1B and interleaved, tied and untied embeddings, with and without
// recomputation) must give every parameter the gradient the serial model computes on one rank.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/grid_comm.hpp"
#include "gradcheck.hpp"
#include "parallel/pipeline.hpp"

namespace hokusai::parallel {
namespace {

comm::Communicator& world() {
  static comm::Communicator w = comm::Communicator::world();  // test-local: one world per process
  return w;
}

std::string text(const std::vector<Pipeline::Op>& ops) {
  std::string s;
  for (const auto& op : ops) s += (s.empty() ? "" : " ") + std::string(op.forward ? "F" : "B") + std::to_string(op.micro);
  return s;
}

TEST(PipelineSchedule, OneFOneBMatchesTheDocumentedExample) {
  EXPECT_EQ(text(Pipeline::schedule(4, 0, 6)), "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5");
  EXPECT_EQ(text(Pipeline::schedule(4, 2, 6)), "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5");
  EXPECT_EQ(text(Pipeline::schedule(4, 3, 6)), "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5");
  for (int P = 1; P <= 5; ++P)
    for (int s = 0; s < P; ++s)
      for (int m = 1; m <= 7; ++m) EXPECT_EQ(Pipeline::slots(P, s, m), std::min(P - s, m)) << P << " " << s << " " << m;
}

TEST(PipelineSchedule, EveryChunkRunsOnceForwardThenBackward) {
  for (int P = 1; P <= 4; ++P)
    for (int v = 1; v <= 3; ++v) {
      if (v > 1 && P == 1) continue;
      for (int m = (v > 1 ? P : 1); m <= 3 * P; m += (v > 1 ? P : 1))
        for (int s = 0; s < P; ++s) {
          std::map<std::pair<int, int>, int> state;  // (micro, chunk) -> 1 after forward, 2 after backward
          int last_micro_fwd[8], last_micro_bwd[8];
          std::fill(last_micro_fwd, last_micro_fwd + 8, -1);
          std::fill(last_micro_bwd, last_micro_bwd + 8, -1);
          for (const auto& op : Pipeline::schedule(P, s, m, v)) {
            int& st = state[{op.micro, op.chunk}];
            ASSERT_EQ(st, op.forward ? 0 : 1) << "P=" << P << " v=" << v << " m=" << m << " s=" << s;
            st = op.forward ? 1 : 2;
            int& last = (op.forward ? last_micro_fwd : last_micro_bwd)[op.chunk];
            ASSERT_GT(op.micro, last) << "micro-batches of a chunk run in order";
            last = op.micro;
          }
          ASSERT_EQ(int(state.size()), m * v);
          for (const auto& [key, st] : state) ASSERT_EQ(st, 2);
        }
    }
  EXPECT_THROW(Pipeline::schedule(2, 0, 3, 2), std::invalid_argument);  // m not a multiple of P
}

// All stages at once: a stage runs its next operation when its input has arrived (forward: the
// previous virtual stage's forward of that micro-batch; backward: the next one's backward), sends
// never wait. Finishing proves the schedules cannot deadlock under the executor's semantics.
TEST(PipelineSchedule, AllStagesTogetherNeverDeadlock) {
  for (int P = 2; P <= 5; ++P)
    for (int v = 1; v <= 3; ++v)
      for (int m = P; m <= 3 * P; m += (v > 1 ? P : 1)) {
        std::vector<std::vector<Pipeline::Op>> ops;
        for (int s = 0; s < P; ++s) ops.push_back(Pipeline::schedule(P, s, m, v));
        std::vector<size_t> next(size_t(P), 0);
        std::map<std::tuple<bool, int, int>, bool> done;  // (forward, micro, virtual stage)
        bool progress = true;
        while (progress) {
          progress = false;
          for (int s = 0; s < P; ++s) {
            if (next[size_t(s)] == ops[size_t(s)].size()) continue;
            const auto& op = ops[size_t(s)][next[size_t(s)]];
            const int vs = op.chunk * P + s, last = P * v - 1;
            const bool ready = op.forward ? (vs == 0 || done[{true, op.micro, vs - 1}])
                                          : (vs == last ? done[{true, op.micro, vs}] : done[{false, op.micro, vs + 1}]);
            if (!ready) continue;
            done[{op.forward, op.micro, vs}] = true;
            ++next[size_t(s)];
            progress = true;
          }
        }
        for (int s = 0; s < P; ++s)
          ASSERT_EQ(next[size_t(s)], ops[size_t(s)].size()) << "deadlock: P=" << P << " v=" << v << " m=" << m;
      }
}

ModelConfig small(const std::string& family, bool tied, int layers) {
  ModelConfig m;
  m.family = parse_name<Family>(family);
  m.layers = layers;
  m.hidden = 16;
  m.heads = 2;
  m.ffn_hidden = family == "llama" ? 24 : 32;
  m.vocab_size = 29;
  m.vocab_pad_multiple = 8;
  m.max_seq_len = 8;
  m.tie_embeddings = tied;
  m.init_std = 0.2;
  return m;
}

struct Case {
  std::string family;
  bool tied;
  int chunks;
  Recompute recompute;
};

class PipelineTrain : public ::testing::TestWithParam<Case> {};

TEST_P(PipelineTrain, GradientsEqualTheSerialModel) {
  const auto [family, tied, v, recompute] = GetParam();
  const int P = world().size(), s = world().rank();
  if (v > 1 && P == 1) GTEST_SKIP() << "interleaving needs two stages";
  const ModelConfig cfg = small(family, tied, 2 * P * v);
  const int64_t B = 2, T = 6, m = 2 * P;  // m a multiple of P for the interleaved schedule
  const auto tokens_of = [&](int micro, int32_t* tok, int32_t* tgt) {
    for (int64_t i = 0; i < B * T; ++i) {
      tok[i] = int32_t((micro * 7 + i * 5) % cfg.vocab_size);
      tgt[i] = int32_t((micro * 3 + i * 11 + 1) % cfg.vocab_size);
    }
  };
  const float dloss = 1.0f / float(m * B * T);
  // Serial reference, on every rank.
  Model<float> serial(ModelDims::from(cfg, comm::ParallelGrid::single()), B, T);
  serial.init(7);
  serial.zero_grads();
  std::vector<int32_t> tok(size_t(B * T)), tgt(size_t(B * T));
  const ComputeContext ctx{};
  double serial_loss = 0.0;
  for (int i = 0; i < m; ++i) {
    tokens_of(i, tok.data(), tgt.data());
    serial_loss += serial.forward(ctx, tok.data(), tgt.data(), B, T);
    serial.backward(ctx, tok.data(), tgt.data(), dloss);
  }
  // The pipeline stage of this rank.
  const comm::GridComms g = comm::GridComms::build({1, P, 1}, world());
  const ModelDims d = ModelDims::from(cfg, g.grid, {}, v);
  Model<float> stage(d, B, T, Pipeline::slots(P, s, int(m), v), recompute);
  stage.init(7);
  stage.zero_grads();
  Pipeline pipe(g.pp, stage, B, T);
  int reported = 0;
  double loss = pipe.train(ctx, int(m), tokens_of, dloss, [&](int64_t, int64_t) { ++reported; });
  HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, world().raw()));
  EXPECT_NEAR(loss, serial_loss, 1e-5 * std::abs(serial_loss));
  EXPECT_GT(reported, 0);
  std::map<std::string, const TensorSpec*> serial_by_name;
  for (const auto& t : serial.table()) serial_by_name[t.name] = &t;
  for (const auto& t : stage.table()) {
    float* gr = stage.grads().data() + t.offset;
    if (tied && t.name == "wte" && g.embed.size() > 1)  // tied: the two stages' parts add up to the serial gradient
      comm::allreduce(g.embed, gr, t.numel, comm::ReduceOp::sum);
    const TensorSpec& ref = *serial_by_name.at(t.name);
    ASSERT_EQ(ref.numel, t.numel) << t.name;
    float scale = 0.0f, worst = 0.0f;
    for (int64_t i = 0; i < t.numel; ++i) {
      scale = std::max(scale, std::abs(serial.grads()[size_t(ref.offset + i)]));
      worst = float(testing::max_nan(worst, std::abs(gr[i] - serial.grads()[size_t(ref.offset + i)])));
    }
    EXPECT_LE(worst, 1e-5f * scale + 1e-8f) << t.name << " on stage " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, PipelineTrain,
                         ::testing::Values(Case{"gpt2", true, 1, Recompute::none}, Case{"gpt2", false, 1, Recompute::none},
                                           Case{"llama", false, 1, Recompute::none},
                                           Case{"gpt2", true, 2, Recompute::none},
                                           Case{"llama", false, 2, Recompute::selective},
                                           Case{"gpt2", true, 1, Recompute::full}));

}  // namespace
}  // namespace hokusai::parallel
