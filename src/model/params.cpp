// Local sizes, the parameter size table, the views into an arena, and initialisation.
#include <cmath>
#include <stdexcept>

#include "comm/grid.hpp"
#include "hokusai/hash.hpp"
#include "hokusai/model.hpp"

namespace hokusai {

ModelDims ModelDims::from(const ModelConfig& m, const comm::ParallelGrid& grid, const std::vector<int>& stage_layers,
                          int chunks) {
  const auto& s = grid.shape();
  ModelDims d;
  d.family = m.family;
  comm::Range stage = comm::split_evenly(m.layers, s.pp, grid.pp_rank());
  if (!stage_layers.empty()) {
    if (int(stage_layers.size()) != s.pp)
      throw std::invalid_argument("ModelDims::from: stage_layers has " + std::to_string(stage_layers.size()) +
                                  " entries for " + std::to_string(s.pp) + " stages (config not validated)");
    stage.begin = 0;
    for (int p = 0; p < grid.pp_rank(); ++p) stage.begin += stage_layers[size_t(p)];
    stage.end = stage.begin + stage_layers[size_t(grid.pp_rank())];
  }
  if (chunks > 1) {  // interleaved: chunk c of stage s holds layers [(c*pp + s)*Lc, +Lc)
    if (!stage_layers.empty() || m.layers % (int64_t(s.pp) * chunks) != 0)
      throw std::invalid_argument("ModelDims::from: " + std::to_string(chunks) + " chunks per stage need layers (" +
                                  std::to_string(m.layers) + ") divisible by pp*chunks and no stage_layers "
                                  "(config not validated)");
    const int64_t Lc = m.layers / (int64_t(s.pp) * chunks);
    stage = {grid.pp_rank() * Lc, grid.pp_rank() * Lc + Lc * chunks};
  }
  d.chunks = std::max(1, chunks);
  d.pp = s.pp;
  d.pp_rank = grid.pp_rank();
  d.L = stage.size();
  d.L_total = m.layers;
  d.layer_offset = stage.begin;
  d.C = m.hidden;
  const int kv_heads = m.kv_heads == 0 ? m.heads : m.kv_heads;  // 0: one per query head
  d.NH = m.heads / s.tp;
  d.KV = kv_heads / s.tp;
  d.HS = m.hidden / m.heads;
  d.F = m.ffn_hidden / s.tp;
  d.tp = s.tp;
  d.tp_rank = grid.tp_rank();
  d.NH_total = m.heads;
  d.KV_total = kv_heads;
  d.F_total = m.ffn_hidden;
  d.head_start = int64_t(d.tp_rank) * d.NH;
  d.kv_head_start = int64_t(d.tp_rank) * d.KV;
  d.ffn_start = int64_t(d.tp_rank) * d.F;
  d.V = m.vocab_size;
  d.Vp = padded_vocab(m, s.tp);
  d.Vl = d.Vp / s.tp;
  d.vocab_start = int64_t(grid.tp_rank()) * d.Vl;
  d.max_T = m.max_seq_len;
  d.tied = m.tie_embeddings;
  d.has_embedding = grid.first_stage();
  d.has_head = grid.last_stage();
  d.eps = m.norm_eps;
  d.rope_theta = m.rope_theta;
  d.init_std = m.init_std;
  if (m.ffn_hidden == 0 || kv_heads <= 0 || m.heads % s.tp != 0 || kv_heads % s.tp != 0 ||
      m.heads % kv_heads != 0 || m.ffn_hidden % s.tp != 0)
    throw std::invalid_argument("ModelDims::from: config not resolved/validated (ffn_hidden=0, or heads, kv_heads "
                                "not divisible)");
  return d;
}

double train_flops_per_token(const ModelConfig& m, int64_t T) {
  const double C = m.hidden, F = m.ffn_hidden;
  const double KVC = C * double(m.kv_heads == 0 ? m.heads : m.kv_heads) / double(m.heads);  // k, v widths
  const double ffn_in = m.family == Family::llama ? 2.0 : 1.0;  // SwiGLU's gate and up
  const double per_layer = 2.0 * C * C + 2.0 * C * KVC + (ffn_in + 1.0) * C * F;
  const double matmul_params = double(m.layers) * per_layer + double(padded_vocab(m, 1)) * C;
  return 6.0 * matmul_params + 12.0 * double(m.layers) * double(T) * C;
}

std::vector<TensorSpec> param_table(const ModelDims& d) {
  std::vector<TensorSpec> t;
  // Split over tp: the vocabulary rows, the heads' QKV rows and output-projection columns, the
  // MLP's hidden rows and down-projection columns. Norms, positions and the biases added after
  // a row-parallel reduction are replicated.
  const auto sharded = [](const std::string& leaf) {
    return leaf == "wte" || leaf == "lm_head" || leaf == "qkv_w" || leaf == "qkv_b" || leaf == "proj_w" ||
           leaf == "fc_w" || leaf == "fc_b" || leaf == "fcproj_w";
  };
  const auto add = [&](std::string name, std::vector<int64_t> shape, int layer, Init init, bool decay,
                       bool embedding = false) {
    const std::string leaf = name.substr(name.rfind('.') + 1);
    TensorSpec s{std::move(name), std::move(shape), 0, 1, layer, init, decay, embedding, d.tp > 1 && sharded(leaf)};
    for (int64_t n : s.shape) s.numel *= n;
    t.push_back(std::move(s));
  };
  const bool gpt2 = d.family == Family::gpt2;
  const int64_t QKV = d.qkv_rows(), A = d.NH * d.HS;
  if (d.has_embedding) {
    add("wte", {d.Vl, d.C}, -1, Init::normal, false, true);
    if (gpt2) add("wpe", {d.max_T, d.C}, -1, Init::normal, false, true);
  }
  for (int64_t l = 0; l < d.L; ++l) {
    const std::string p = "layers." + std::to_string(d.global_layer(l)) + ".";
    const int li = int(l);
    add(p + "ln1_w", {d.C}, li, Init::ones, false);
    if (gpt2) add(p + "ln1_b", {d.C}, li, Init::zeros, false);
    add(p + "qkv_w", {QKV, d.C}, li, Init::normal, true);
    if (gpt2) add(p + "qkv_b", {QKV}, li, Init::zeros, false);
    add(p + "proj_w", {d.C, A}, li, Init::normal_residual, true);
    if (gpt2) add(p + "proj_b", {d.C}, li, Init::zeros, false);
    add(p + "ln2_w", {d.C}, li, Init::ones, false);
    if (gpt2) add(p + "ln2_b", {d.C}, li, Init::zeros, false);
    add(p + "fc_w", {gpt2 ? d.F : 2 * d.F, d.C}, li, Init::normal, true);
    if (gpt2) add(p + "fc_b", {d.F}, li, Init::zeros, false);
    add(p + "fcproj_w", {d.C, d.F}, li, Init::normal_residual, true);
    if (gpt2) add(p + "fcproj_b", {d.C}, li, Init::zeros, false);
  }
  if (d.has_head) {
    add("lnf_w", {d.C}, -1, Init::ones, false);
    if (gpt2) add("lnf_b", {d.C}, -1, Init::zeros, false);
    // Untied: its own matrix. Tied on a separate last stage: a copy of wte kept equal by summing
    // the two stages' gradients (the pipeline issue); tied on one stage: wte itself.
    if (!d.tied)
      add("lm_head", {d.Vl, d.C}, -1, Init::normal, true);
    else if (!d.has_embedding) {
      add("wte", {d.Vl, d.C}, -1, Init::normal, false, true);
      t.back().tied_copy = true;
    }
  }
  int64_t offset = 0;
  for (auto& s : t) {
    s.offset = offset;
    offset += s.numel;
  }
  return t;
}

int64_t arena_size(const std::vector<TensorSpec>& table) {
  return table.empty() ? 0 : table.back().offset + table.back().numel;
}

template <typename T>
ModelViews<T> point_views(T* arena, const std::vector<TensorSpec>& table, const ModelDims& d) {
  ModelViews<T> v{};
  v.layers.assign(size_t(d.L), LayerViews<T>{});
  for (const auto& s : table) {
    T* p = arena + s.offset;
    const std::string leaf = s.layer < 0 ? s.name : s.name.substr(s.name.rfind('.') + 1);
    if (s.layer < 0) {
      if (leaf == "wte") v.wte = p;
      else if (leaf == "wpe") v.wpe = p;
      else if (leaf == "lnf_w") v.lnf_w = p;
      else if (leaf == "lnf_b") v.lnf_b = p;
      else if (leaf == "lm_head") v.lm_head = p;
      else throw std::logic_error("point_views: unknown tensor " + s.name);
      continue;
    }
    LayerViews<T>& l = v.layers[size_t(s.layer)];
    T** slot = leaf == "ln1_w"      ? &l.ln1_w
               : leaf == "ln1_b"    ? &l.ln1_b
               : leaf == "qkv_w"    ? &l.qkv_w
               : leaf == "qkv_b"    ? &l.qkv_b
               : leaf == "proj_w"   ? &l.proj_w
               : leaf == "proj_b"   ? &l.proj_b
               : leaf == "ln2_w"    ? &l.ln2_w
               : leaf == "ln2_b"    ? &l.ln2_b
               : leaf == "fc_w"     ? &l.fc_w
               : leaf == "fc_b"     ? &l.fc_b
               : leaf == "fcproj_w" ? &l.fcproj_w
               : leaf == "fcproj_b" ? &l.fcproj_b
                                    : nullptr;
    if (!slot) throw std::logic_error("point_views: unknown tensor " + s.name);
    *slot = p;
  }
  if (d.has_head && d.tied) v.lm_head = v.wte;
  return v;
}

int64_t serial_index(const TensorSpec& s, const ModelDims& d, int64_t i) {
  if (!s.tp_sharded) return i;
  const std::string leaf = s.name.substr(s.name.rfind('.') + 1);
  const int64_t C = d.C, A = d.NH * d.HS, A_total = d.NH_total * d.HS, h0 = d.head_start * d.HS;
  const int64_t K = d.KV * d.HS, K_total = d.KV_total * d.HS, k0 = d.kv_head_start * d.HS;
  if (leaf == "wte" || leaf == "lm_head") return d.vocab_start * C + i;  // rows [vocab_start, +Vl)
  if (leaf == "qkv_w" || leaf == "qkv_b") {  // rows [q | k | v], each this rank's heads
    const int64_t cols = leaf == "qkv_w" ? C : 1, r = i / cols, c = i % cols;
    const int64_t row = r < A       ? h0 + r                                  // q
                        : r < A + K ? A_total + k0 + (r - A)                  // k
                                    : A_total + K_total + k0 + (r - A - K);  // v
    return row * cols + c;
  }
  if (leaf == "proj_w") return (i / A) * A_total + h0 + i % A;  // columns of this rank's heads
  if (leaf == "fc_w" || leaf == "fc_b") {  // rows [gate | up] (llama) or the hidden rows (gpt2)
    const int64_t cols = leaf == "fc_w" ? C : 1, r = i / cols, c = i % cols;
    return ((r / d.F) * d.F_total + d.ffn_start + r % d.F) * cols + c;
  }
  if (leaf == "fcproj_w") return (i / d.F) * d.F_total + d.ffn_start + i % d.F;
  throw std::logic_error("serial_index: no serial layout for " + s.name);
}

namespace {

// Standard normal of element `i` of the stream `key` (Box-Muller on two hashed uniforms).
double normal_at(uint64_t key, uint64_t i) {
  const double u1 = (double(splitmix64(key ^ (2 * i)) >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = double(splitmix64(key ^ (2 * i + 1)) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace

template <typename T>
void init_params(T* arena, const std::vector<TensorSpec>& table, const ModelDims& d, uint64_t seed) {
  const double residual_std = d.init_std / std::sqrt(2.0 * double(d.L_total));
  for (const auto& s : table) {
    T* p = arena + s.offset;
    const uint64_t key = splitmix64(seed ^ fnv1a(s.name));
    switch (s.init) {
      case Init::ones:
        for (int64_t i = 0; i < s.numel; ++i) p[i] = T(1);
        break;
      case Init::zeros:
        for (int64_t i = 0; i < s.numel; ++i) p[i] = T(0);
        break;
      case Init::normal:
      case Init::normal_residual: {
        const double std = s.init == Init::normal ? d.init_std : residual_std;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < s.numel; ++i) p[i] = T(std * normal_at(key, uint64_t(serial_index(s, d, i))));
        break;
      }
    }
  }
}

template ModelViews<float> point_views<float>(float*, const std::vector<TensorSpec>&, const ModelDims&);
template ModelViews<double> point_views<double>(double*, const std::vector<TensorSpec>&, const ModelDims&);
template void init_params<float>(float*, const std::vector<TensorSpec>&, const ModelDims&, uint64_t);
template void init_params<double>(double*, const std::vector<TensorSpec>&, const ModelDims&, uint64_t);

}  // namespace hokusai
