// Whole-model gradients (both families, tied and untied, llama also with grouped-query attention)
// against central finite differences in double, on a tiny configuration; and the float model
// against the double model.
#include <gtest/gtest.h>

#include <bit>

#include "comm/grid.hpp"
#include "gradcheck.hpp"
#include "hokusai/model.hpp"

namespace hokusai {
namespace {

// kv_heads 0: one key/value head per query head; else grouped-query attention (llama).
ModelConfig tiny(const std::string& family, bool tied, int kv_heads = 0) {
  ModelConfig m;
  m.family = parse_name<Family>(family);
  m.layers = 2;
  m.hidden = 8;
  m.heads = kv_heads ? 4 : 2;
  m.kv_heads = kv_heads;
  m.ffn_hidden = family == "llama" ? 12 : 16;
  m.vocab_size = 13;
  m.vocab_pad_multiple = 8;  // Vp = 16: three padded rows must get zero gradient
  m.max_seq_len = 6;
  m.tie_embeddings = tied;
  m.init_std = 0.3;  // large enough that every path carries signal
  return m;
}

struct Case {
  std::string family;
  bool tied;
  int kv_heads = 0;
  Attention attention = Attention::gemm;
};

class ModelGrad : public ::testing::TestWithParam<Case> {};

TEST_P(ModelGrad, MatchesFiniteDifferences) {
  const auto [family, tied, kv_heads, attention] = GetParam();
  const ModelConfig cfg = tiny(family, tied, kv_heads);
  const ModelDims d = ModelDims::from(cfg, comm::ParallelGrid::single());
  const int64_t B = 2, T = 5;
  Model<double> model(d, B, T, 1, Recompute::none, attention);
  model.init(42);
  // Biases and norm gains start at 0/1; perturb them so their gradients are generic.
  for (const auto& s : model.table())
    if (s.init == Init::zeros || s.init == Init::ones)
      for (int64_t i = 0; i < s.numel; ++i) model.params()[s.offset + i] += 0.1 * std::sin(double(i + s.offset));
  const std::vector<int32_t> tokens = {1, 5, 12, 0, 7, 3, 3, 9, 11, 2};
  const std::vector<int32_t> targets = {5, 12, 0, 7, -1, 3, 9, 11, 2, 4};
  const ComputeContext ctx{};
  const double n_valid = 9;
  const auto loss = [&] { return model.forward(ctx, tokens.data(), targets.data(), B, T) / n_valid; };
  model.zero_grads();
  loss();
  model.backward(ctx, tokens.data(), targets.data(), 1.0 / n_valid);
  const std::vector<double> analytic(model.grads().begin(), model.grads().end());
  for (const auto& s : model.table()) {
    std::vector<int64_t> idx;
    for (int64_t i : testing::sample_indices(s.numel, 48)) idx.push_back(s.offset + i);
    const auto r = testing::check_gradient(loss, model.params().data(), analytic.data(), idx);
    EXPECT_LT(r.max_err, 1e-6) << s.name << " offset " << r.worst - s.offset << ": analytic "
                               << r.analytic << " numeric " << r.numeric;
  }
  // Padded vocabulary rows (13..15) never see a gradient.
  const auto& wte = model.table().front();
  if (tied) {
    for (int64_t row = cfg.vocab_size; row < d.Vl; ++row)
      for (int64_t c = 0; c < d.C; ++c) EXPECT_EQ(analytic[wte.offset + row * d.C + c], 0.0) << "padded row " << row;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ModelGrad,
                         ::testing::Values(Case{"gpt2", true}, Case{"gpt2", false}, Case{"llama", true},
                                           Case{"llama", false}, Case{"llama", false, 2}, Case{"llama", true, 1},
                                           Case{"gpt2", true, 0, Attention::flash},
                                           Case{"llama", false, 2, Attention::flash}),
                         [](const auto& info) {
                           return info.param.family + (info.param.tied ? "_tied" : "_untied") +
                                  (info.param.kv_heads ? "_kv" + std::to_string(info.param.kv_heads) : "") +
                                  (info.param.attention == Attention::flash ? "_flash" : "");
                         });

// The float model (the training path, OpenBLAS GEMM) agrees with the double model.
TEST(ModelPrecision, FloatMatchesDouble) {
  for (const auto& [family, kv_heads] : {std::pair<std::string, int>{"gpt2", 0}, {"llama", 0}, {"llama", 2}}) {
    const ModelConfig cfg = tiny(family, true, kv_heads);
    const ModelDims d = ModelDims::from(cfg, comm::ParallelGrid::single());
    const int64_t B = 2, T = 6;
    Model<double> md(d, B, T);
    Model<float> mf(d, B, T);
    md.init(7);
    mf.init(7);
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (int64_t i = 0; i < B * T; ++i) tokens[i] = int32_t(i * 5 % 13), targets[i] = int32_t(i * 7 % 13);
    ComputeContext ctx{};
    ctx.gemm.backend = kernels::GemmBackend::native;  // ours, in every build
    const double ld = md.forward(ctx, tokens.data(), targets.data(), B, T);
    const double lf = mf.forward(ctx, tokens.data(), targets.data(), B, T);
    EXPECT_NEAR(lf, ld, 1e-5 * std::abs(ld)) << family;
    md.zero_grads();
    mf.zero_grads();
    md.backward(ctx, tokens.data(), targets.data(), 1.0);
    mf.backward(ctx, tokens.data(), targets.data(), 1.0f);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < md.grads().size(); ++i) {
      max_diff = testing::max_nan(max_diff, std::abs(md.grads()[i] - double(mf.grads()[i])));
      max_ref = std::max(max_ref, std::abs(md.grads()[i]));
    }
    EXPECT_LT(max_diff, 1e-4 * max_ref) << family;
  }
}

// train.precision bf16/fp16: only the matrix products' inputs are rounded. The loss must be the
// fp32 cross-entropy of the logits those products gave (a softmax or loss computed in the low
// precision differs by ~1e-3 relative: caught here), the logits and gradients must move by the
// rounding (so it is applied) and stay within its reach of fp32's.
TEST(ModelPrecision, LowPrecisionRoundsOnlyTheProducts) {
  const ModelConfig cfg = tiny("gpt2", true);
  const ModelDims d = ModelDims::from(cfg, comm::ParallelGrid::single());
  const int64_t B = 2, T = 6;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int64_t i = 0; i < B * T; ++i) tokens[i] = int32_t(i * 5 % 13), targets[i] = int32_t(i * 7 % 13);
  Model<float> ref(d, B, T);
  ref.init(7);
  ComputeContext fp32{};
  ref.forward(fp32, tokens.data(), targets.data(), B, T);
  const std::vector<float> ref_logits(ref.logits(), ref.logits() + B * T * d.Vl);
  ref.zero_grads();
  ref.backward(fp32, tokens.data(), targets.data(), 1.0f);
  for (kernels::Precision p : {kernels::Precision::bf16, kernels::Precision::fp16})
    for (kernels::GemmBackend backend : {kernels::GemmBackend::native, kernels::GemmBackend::reference}) {
      Model<float> m(d, B, T);
      m.init(7);
      ComputeContext ctx{};
      ctx.gemm.backend = backend;
      ctx.gemm.precision = p;
      const std::string what = kernels::gemm_precision_path(ctx.gemm);
      const double loss = m.forward(ctx, tokens.data(), targets.data(), B, T);
      double want = 0, moved = 0, worst = 0;
      for (int64_t r = 0; r < B * T; ++r) {
        const float* z = m.logits() + r * d.Vl;
        double mx = -1e300, sum = 0;
        for (int64_t v = 0; v < d.V; ++v) mx = std::max(mx, double(z[v]));
        for (int64_t v = 0; v < d.V; ++v) sum += std::exp(double(z[v]) - mx);
        want += std::log(sum) + mx - double(z[targets[r]]);
        for (int64_t v = 0; v < d.V; ++v) {
          moved = testing::max_nan(moved, std::abs(double(z[v]) - ref_logits[r * d.Vl + v]));
          worst = testing::max_nan(worst, std::abs(double(z[v]) - ref_logits[r * d.Vl + v]) /
                                                 (1 + std::abs(ref_logits[r * d.Vl + v])));
        }
      }
      EXPECT_NEAR(loss, want, 1e-6 * std::abs(want)) << what << ": the loss is not the fp32 loss of the logits";
      EXPECT_GT(moved, 1e-5) << what << ": the logits did not move: nothing was rounded";
      EXPECT_LT(worst, p == kernels::Precision::bf16 ? 5e-2 : 5e-3) << what;
      m.zero_grads();
      m.backward(ctx, tokens.data(), targets.data(), 1.0f);
      double max_diff = 0, max_ref = 0;
      for (size_t i = 0; i < m.grads().size(); ++i) {
        max_diff = testing::max_nan(max_diff, double(std::abs(m.grads()[i] - ref.grads()[i])));
        max_ref = std::max(max_ref, double(std::abs(ref.grads()[i])));
      }
      EXPECT_GT(max_diff, 1e-7 * max_ref) << what << ": gradients identical to fp32";
      EXPECT_LT(max_diff, (p == kernels::Precision::bf16 ? 5e-2 : 5e-3) * max_ref) << what;
    }
}

// Activations kept in 16 bits (Model's `saved` = the products' precision): the tensors kept so
// enter only products, which round them anyway, and the MLP pre-activation and attention output
// are rounded where they are made in a 16-bit run (the MLP activation is rebuilt from the rounded
// pre-activation), so losses and gradients must be bit-identical to a model keeping fp32 — two
// slots in flight (forward 0, forward 1, backward 1, backward 0), both families, with and without
// selective recomputation, flash and GEMM attention — and the saved bytes exactly 2 per element of
// the two norm outputs, qkv, the MLP pre-activation and a kept attention output plus 4 per element
// of the MLP activation per block and slot, less one fp32 working set (none for the norms' rows,
// which the norms write and read as 16-bit patterns, nor for GELU's input). A model told the wrong
// precision refuses to run.
TEST(ModelPrecision, SixteenBitActivationsChangeNothing) {
  const int64_t B = 2, T = 6, N = B * T;
  for (const std::string family : {"gpt2", "llama"})
    for (kernels::Precision p : {kernels::Precision::bf16, kernels::Precision::fp16})
      for (Recompute r : {Recompute::none, Recompute::selective})
        for (Attention att : {Attention::flash, Attention::gemm}) {
          const ModelDims d = ModelDims::from(tiny(family, family == "gpt2"), comm::ParallelGrid::single());
          const std::string what = family + " " + std::string(name_of(p)) + " " +
                                   std::string(name_of(r)) + " " + std::string(name_of(att));
          Model<float> wide(d, B, T, 2, r, att), narrow(d, B, T, 2, r, att, p);
          wide.init(7), narrow.init(7);
          wide.zero_grads(), narrow.zero_grads();
          ComputeContext ctx{};
          ctx.gemm.precision = p;
          std::vector<int32_t> tokens(2 * N), targets(2 * N);
          for (int64_t i = 0; i < 2 * N; ++i) tokens[i] = int32_t(i * 5 % 13), targets[i] = int32_t(i * 7 % 13);
          for (Model<float>* m : {&wide, &narrow}) {
            for (int s = 0; s < 2; ++s) m->forward(ctx, tokens.data() + s * N, targets.data() + s * N, B, T, s);
            for (int s = 1; s >= 0; --s) m->backward(ctx, tokens.data() + s * N, targets.data() + s * N, 0.5f, {}, s);
          }
          EXPECT_EQ(narrow.forward(ctx, tokens.data(), targets.data(), B, T),
                    wide.forward(ctx, tokens.data(), targets.data(), B, T)) << what;
          for (size_t i = 0; i < wide.grads().size(); ++i)
            ASSERT_EQ(std::bit_cast<uint32_t>(narrow.grads()[i]), std::bit_cast<uint32_t>(wide.grads()[i]))
                << what << ": gradient " << i << " " << narrow.grads()[i] << " vs " << wide.grads()[i];
          // Kept in 16 bits per block: ln1, ln2, qkv, fch, and atty unless recomputed; fch_act not kept.
          const int64_t halved = 2 * N * d.C + N * d.qkv_rows() + N * d.fc_rows() +
                                 (r == Recompute::none ? N * d.NH * d.HS : 0);
          // The working set: fp32 copies of qkv and atty, fch_act, and SwiGLU's input (forward only;
          // GELU's is made in fch_act). The norms' rows and the MLP pre-activation are read as patterns.
          const int64_t per_block = 2 * halved + 4 * N * d.F,
                        working_set = 4 * (halved - 2 * N * d.C - (family == "gpt2" ? N * d.fc_rows() : 0) + N * d.F);
          EXPECT_EQ(wide.activation_bytes() - narrow.activation_bytes(), 2 * d.L * per_block - working_set) << what;
          EXPECT_EQ(Model<float>::activation_bytes(d, B, T, 2, r, att, p), narrow.activation_bytes()) << what;
          ComputeContext fp32{};
          EXPECT_THROW(narrow.forward(fp32, tokens.data(), targets.data(), B, T), std::invalid_argument) << what;
        }
}

// The training head pass (HeadPass::gradient: the loss's gradient a block of at most 1024 rows at
// a time in forward, no N x V logits kept) against the logits pass (all logits kept, their
// gradient in backward): the same losses and bit for bit the same gradients on the native GEMM —
// N = 1280 runs as blocks of 1024 and 256 rows, N = 12 as one — both families, tied
// and untied, every recomputation mode, fp32 and (N = 12) a bf16 run keeping 16-bit activations,
// two micro-batches each forward then backward (as the last pipeline stage runs them;
// with slots in flight the head's weight gradient adds the micro-batches in forward order rather
// than backward order, which moves last bits only). The head's block of logits shares its bytes
// with the running block's scratch (gradients, working rows, recomputed tensors, the 16-bit run's
// fp32 working copies), so this also finds a head pass that overwrites anything backward reads.
// The loss pass gives the same losses and refuses a backward; a dloss that differs from the
// forward's is refused; the vocabulary enters the counted activations through one block of rows'
// logits only, not the slots' N x V, and only where that block outgrows the scratch it overlays.
TEST(ModelHead, GradientPassMatchesTheLogitsPass) {
  for (const std::string family : {"gpt2", "llama"})
    for (const bool tied : {true, false})
      for (const auto& [B, T] : {std::pair<int64_t, int64_t>{2, 6}, {160, 8}})  // narrow: cheap under qemu
        for (const Recompute r : {Recompute::none, Recompute::selective, Recompute::full})
          for (const kernels::Precision p : {kernels::Precision::fp32, kernels::Precision::bf16}) {
            if (p != kernels::Precision::fp32 && B * T > 1024) continue;  // one block: the same products
            ModelConfig cfg = tiny(family, tied);
            cfg.vocab_size = 40;
            cfg.max_seq_len = T;
            const ModelDims d = ModelDims::from(cfg, comm::ParallelGrid::single());
            const int64_t N = B * T;
            const std::string what = family + (tied ? " tied " : " untied ") + std::to_string(B) + "x" +
                                     std::to_string(T) + " recompute " + std::string(name_of(r)) + " " +
                                     std::string(name_of(p));
            Model<float> kept(d, B, T, 2, r, Attention::flash, p), blocks(d, B, T, 2, r, Attention::flash, p);
            kept.init(3), blocks.init(3);
            kept.zero_grads(), blocks.zero_grads();
            std::vector<int32_t> tokens(2 * N), targets(2 * N);
            for (int64_t i = 0; i < 2 * N; ++i)
              tokens[i] = int32_t(i * 5 % 40), targets[i] = i % 37 == 5 ? -1 : int32_t(i * 7 % 40);
            ComputeContext ctx{};
            ctx.gemm.precision = p;
            const float dloss = 1.0f / float(N);
            double loss_kept = 0, loss_blocks = 0;
            for (int s = 0; s < 2; ++s) {
              loss_kept += kept.forward(ctx, tokens.data() + s * N, targets.data() + s * N, B, T, s);
              kept.backward(ctx, tokens.data() + s * N, targets.data() + s * N, dloss, {}, s);
              loss_blocks += blocks.forward(ctx, tokens.data() + s * N, targets.data() + s * N, B, T, s, 0,
                                            HeadPass::gradient, dloss);
              blocks.backward(ctx, tokens.data() + s * N, targets.data() + s * N, dloss, {}, s);
            }
            EXPECT_EQ(loss_blocks, loss_kept) << what;
            for (size_t i = 0; i < kept.grads().size(); ++i)
              ASSERT_EQ(std::bit_cast<uint32_t>(blocks.grads()[i]), std::bit_cast<uint32_t>(kept.grads()[i]))
                  << what << ": gradient " << i << " " << blocks.grads()[i] << " vs " << kept.grads()[i];
            // The training layout has no N x V array (the logits pass allocates one on first use
            // only); a block of logits larger than the scratch it overlays adds its excess, row by
            // row of the vocabulary; this small one (at most 1024 x 40) adds nothing.
            const auto counted = [&](int64_t vocab) {
              ModelConfig v = cfg;
              v.vocab_size = vocab;
              return Model<float>::activation_bytes(ModelDims::from(v, comm::ParallelGrid::single()), B, T, 2, r,
                                                    Attention::flash, p);
            };
            const int64_t rows = std::min<int64_t>(N, 1024);
            EXPECT_EQ(counted(100800) - counted(100000), rows * 800 * int64_t(sizeof(float))) << what;
            EXPECT_EQ(counted(48), blocks.activation_bytes()) << what;
            EXPECT_LT(counted(100000) - blocks.activation_bytes(), rows * (100000 - 40) * int64_t(sizeof(float)))
                << what;
            EXPECT_THROW(blocks.logits(), std::logic_error) << what;
            EXPECT_EQ(blocks.forward(ctx, tokens.data(), targets.data(), B, T, 0, 0, HeadPass::loss),
                      kept.forward(ctx, tokens.data(), targets.data(), B, T)) << what;
            EXPECT_THROW(blocks.backward(ctx, tokens.data(), targets.data(), dloss), std::invalid_argument) << what;
            blocks.forward(ctx, tokens.data(), targets.data(), B, T, 0, 0, HeadPass::gradient, dloss);
            EXPECT_THROW(blocks.backward(ctx, tokens.data(), targets.data(), 2 * dloss), std::invalid_argument)
                << what;
          }
}

}  // namespace
}  // namespace hokusai
