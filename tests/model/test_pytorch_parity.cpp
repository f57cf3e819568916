// hokusai's model against an independent implementation: the loss, logits and every parameter
// gradient of tiny GPT-2 and LLaMA decoders (one LLaMA with grouped-query attention) computed by
// PyTorch (float64 on the same float32 parameters; tests/model/pytorch_reference.py wrote the
// fixtures, and regenerates them). Every
// recomputation mode must match. A negative control checks the comparison can fail: a model
// with one parameter changed must not pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "ckpt/safetensors.hpp"
#include "comm/grid.hpp"
#include "gradcheck.hpp"
#include "hokusai/model.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& family) {
  return fs::path(HOKUSAI_TEST_DIR) / ("pytorch_parity_" + family + ".safetensors");
}

ModelConfig config_of(const safetensors::Reader& f) {
  const auto& m = f.metadata();
  const auto get = [&](const std::string& key) {
    const auto it = m.find("model." + key);
    if (it == m.end()) throw std::runtime_error(f.path() + ": __metadata__ lacks model." + key);
    return it->second;
  };
  ModelConfig c;
  c.family = parse_name<Family>(get("family"));
  c.layers = std::stoi(get("layers"));
  c.hidden = std::stoi(get("hidden"));
  c.heads = std::stoi(get("heads"));
  const auto kv = m.find("model.kv_heads");  // grouped-query fixtures only
  c.kv_heads = kv == m.end() ? c.heads : std::stoi(kv->second);
  c.ffn_hidden = std::stoi(get("ffn_hidden"));
  c.vocab_size = std::stoi(get("vocab_size"));
  c.max_seq_len = std::stoi(get("max_seq_len"));
  c.tie_embeddings = get("tie_embeddings") == "true";
  c.norm_eps = std::stod(get("norm_eps"));
  c.rope_theta = std::stod(get("rope_theta"));
  return c;  // vocab_pad_multiple stays 64: V = 50 is padded to 64 rows the reference lacks
}

// max |got - want| over max(|want|): the error relative to the tensor's scale.
double relative_error(std::span<const float> got, std::span<const float> want) {
  double err = 0.0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    err = testing::max_nan(err, std::abs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return err / scale;
}

struct Result {
  double loss_err = 0.0, logits_err = 0.0, worst_grad_err = 0.0;
  std::string worst_grad;
};

// Loads the fixture's parameters into a model of its configuration (padded vocabulary rows zero),
// runs forward and backward, and measures each output against the reference. `perturb` may
// change the parameters first (the negative control).
Result run(const safetensors::Reader& f, Recompute recompute,
           const std::function<void(Model<float>&)>& perturb = nullptr, Attention attention = Attention::gemm) {
  const ModelConfig cfg = config_of(f);
  const ModelDims d = ModelDims::from(cfg, comm::ParallelGrid::single());
  const int64_t B = std::stoll(f.metadata().at("batch")), T = std::stoll(f.metadata().at("seq_len"));
  const int64_t V = cfg.vocab_size;
  Model<float> model(d, B, T, 1, recompute, attention);
  for (const TensorSpec& s : model.table()) {
    std::fill_n(model.params().data() + s.offset, s.numel, 0.0f);
    const bool vocab_rows = s.name == "wte" || s.name == "lm_head";
    const std::vector<int64_t> shape = vocab_rows ? std::vector<int64_t>{V, s.shape[1]} : s.shape;
    const std::vector<float> p = f.read_f32("param." + s.name, shape);
    std::copy(p.begin(), p.end(), model.params().data() + s.offset);
  }
  if (perturb) perturb(model);
  const std::vector<int32_t> tokens = f.read_i32("tokens", {B, T}), targets = f.read_i32("targets", {B, T});
  const double valid = double(std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; }));

  const ComputeContext ctx{};
  Result r;
  model.zero_grads();
  const double loss = model.forward(ctx, tokens.data(), targets.data(), B, T) / valid;
  const double want_loss = f.read_f64("loss", {1})[0];
  r.loss_err = std::abs(loss - want_loss) / std::abs(want_loss);
  const std::vector<float> want_logits = f.read_f32("logits", {B, T, V});
  std::vector<float> logits(size_t(B * T * V));
  for (int64_t i = 0; i < B * T; ++i) std::copy_n(model.logits() + i * d.Vl, V, logits.begin() + i * V);
  r.logits_err = relative_error(logits, want_logits);

  model.backward(ctx, tokens.data(), targets.data(), float(1.0 / valid));
  for (const TensorSpec& s : model.table()) {
    const std::span<const float> g(model.grads().data() + s.offset, size_t(s.numel));
    const bool vocab_rows = s.name == "wte" || s.name == "lm_head";
    const std::vector<float> want = f.read_f32("grad." + s.name);
    const int64_t n = int64_t(want.size());
    double err = relative_error(g.first(size_t(n)), want);
    if (vocab_rows)  // padded rows: no gradient at all
      for (int64_t i = n; i < s.numel; ++i) err = testing::max_nan(err, double(std::abs(g[size_t(i)])));
    if (!(err < r.worst_grad_err)) r.worst_grad_err = err, r.worst_grad = s.name;  // NaN included
  }
  return r;
}

// fp32 arithmetic against float64: relative errors near 1e-6 are rounding, a wrong convention
// (head order, rotary pairing, a transposed matrix, a missing bias) is of order 1.
constexpr double kLossTol = 1e-6, kLogitsTol = 5e-6, kGradTol = 2e-5;

bool matches(const Result& r) {
  return r.loss_err < kLossTol && r.logits_err < kLogitsTol && r.worst_grad_err < kGradTol;
}

class PytorchParity : public ::testing::TestWithParam<std::string> {};

TEST_P(PytorchParity, LossLogitsAndGradientsMatchEveryRecomputeMode) {
  const safetensors::Reader f(fixture(GetParam()).string());
  for (const Attention at : {Attention::gemm, Attention::flash})
    for (const Recompute rc : {Recompute::none, Recompute::selective, Recompute::full}) {
      const Result r = run(f, rc, nullptr, at);
      std::printf("%s, %s attention, recompute %s: relative error loss %.1e, logits %.1e, worst gradient %.1e (%s)\n",
                  GetParam().c_str(), std::string(name_of(at)).c_str(), std::string(name_of(rc)).c_str(), r.loss_err,
                  r.logits_err, r.worst_grad_err, r.worst_grad.c_str());
      const std::string what = std::string(name_of(at)) + " attention, recompute " + std::string(name_of(rc));
      EXPECT_LT(r.loss_err, kLossTol) << what;
      EXPECT_LT(r.logits_err, kLogitsTol) << what;
      EXPECT_LT(r.worst_grad_err, kGradTol) << what << ": worst gradient " << r.worst_grad;
      EXPECT_TRUE(matches(r));
    }
}

// The comparison above must be able to fail: swap the first two rows of a layer's fused QKV
// matrix (a head-order bug of the kind a converter makes) and expect a mismatch.
TEST_P(PytorchParity, DetectsASwappedWeight) {
  const safetensors::Reader f(fixture(GetParam()).string());
  const Result r = run(f, Recompute::none, [](Model<float>& m) {
    for (const TensorSpec& s : m.table())
      if (s.name == "layers.1.qkv_w") {
        float* w = m.params().data() + s.offset;
        std::swap_ranges(w, w + s.shape[1], w + s.shape[1]);
      }
  });
  EXPECT_FALSE(matches(r)) << "loss " << r.loss_err << ", logits " << r.logits_err << ", gradient "
                           << r.worst_grad_err << " (" << r.worst_grad << ")";
  EXPECT_GT(r.logits_err, kLogitsTol);
}

INSTANTIATE_TEST_SUITE_P(Families, PytorchParity, ::testing::Values("gpt2", "llama", "llama_gqa"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace hokusai
