#include "ckpt/hf_export.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "comm/grid.hpp"
#include "hokusai/checkpoint.hpp"
#include "hokusai/data.hpp"
#include "hokusai/model.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;
using safetensors::DType;

uint16_t to_bf16(float f) {  // round to nearest even; NaN stays a (quiet) NaN
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return uint16_t((b >> 16) | 0x40u);
  b += 0x7fffu + ((b >> 16) & 1u);
  return uint16_t(b >> 16);
}

uint16_t to_f16(float f) {  // IEEE half, round to nearest even, overflow to inf
  uint32_t b;
  std::memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                  // below the smallest normal half
    if (abs < 0x33000000u) return uint16_t(sign);           // < half of the smallest subnormal
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(abs >> 23);                 // 14 .. 24
    const uint32_t half_mant = mant >> shift, rest = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    return uint16_t(sign | (half_mant + ((rest > halfway || (rest == halfway && (half_mant & 1u))) ? 1 : 0)));
  }
  uint32_t h = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ffu);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return uint16_t(sign | h);
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  if (!f.flush()) throw std::runtime_error("export: cannot write '" + path.string() + "': " + std::strerror(errno));
}

}  // namespace

std::vector<HfTensor> hf_tensor_map(const ModelConfig& m) {
  const bool gpt2 = m.family == Family::gpt2;
  const int64_t C = m.hidden, V = m.vocab_size, A = m.hidden;  // attention width = heads x head size
  Config tmp;
  tmp.model = m;
  resolve(tmp);
  const int64_t F = tmp.model.ffn_hidden, K = A / m.heads * tmp.model.kv_heads;  // key/value width
  std::vector<HfTensor> t;
  const auto whole = [](std::string hf, std::vector<int64_t> shape, std::string src) {
    HfTensor h;
    h.name = std::move(hf);
    h.shape = std::move(shape);
    h.source = std::move(src);
    h.rows = h.shape.empty() ? 0 : h.shape[0];
    return h;
  };
  const auto rows = [](std::string hf, std::vector<int64_t> shape, std::string src, int64_t begin) {
    HfTensor h;
    h.name = std::move(hf);
    h.shape = std::move(shape);
    h.source = std::move(src);
    h.row_begin = begin;
    h.rows = h.shape[0];
    return h;
  };
  const auto transposed = [](std::string hf, int64_t out, int64_t in, std::string src) {
    HfTensor h;  // hokusai (out, in) -> Conv1D (in, out)
    h.name = std::move(hf);
    h.shape = {in, out};
    h.source = std::move(src);
    h.rows = out;
    h.transpose = true;
    return h;
  };
  if (gpt2) {
    t.push_back(rows("transformer.wte.weight", {V, C}, "wte", 0));
    t.push_back(whole("transformer.wpe.weight", {m.max_seq_len, C}, "wpe"));
    for (int l = 0; l < m.layers; ++l) {
      const std::string h = "transformer.h." + std::to_string(l) + ".", s = "layers." + std::to_string(l) + ".";
      t.push_back(whole(h + "ln_1.weight", {C}, s + "ln1_w"));
      t.push_back(whole(h + "ln_1.bias", {C}, s + "ln1_b"));
      t.push_back(transposed(h + "attn.c_attn.weight", 3 * A, C, s + "qkv_w"));
      t.push_back(whole(h + "attn.c_attn.bias", {3 * A}, s + "qkv_b"));
      t.push_back(transposed(h + "attn.c_proj.weight", C, A, s + "proj_w"));
      t.push_back(whole(h + "attn.c_proj.bias", {C}, s + "proj_b"));
      t.push_back(whole(h + "ln_2.weight", {C}, s + "ln2_w"));
      t.push_back(whole(h + "ln_2.bias", {C}, s + "ln2_b"));
      t.push_back(transposed(h + "mlp.c_fc.weight", F, C, s + "fc_w"));
      t.push_back(whole(h + "mlp.c_fc.bias", {F}, s + "fc_b"));
      t.push_back(transposed(h + "mlp.c_proj.weight", C, F, s + "fcproj_w"));
      t.push_back(whole(h + "mlp.c_proj.bias", {C}, s + "fcproj_b"));
    }
    t.push_back(whole("transformer.ln_f.weight", {C}, "lnf_w"));
    t.push_back(whole("transformer.ln_f.bias", {C}, "lnf_b"));
  } else {
    t.push_back(rows("model.embed_tokens.weight", {V, C}, "wte", 0));
    for (int l = 0; l < m.layers; ++l) {
      const std::string h = "model.layers." + std::to_string(l) + ".", s = "layers." + std::to_string(l) + ".";
      t.push_back(whole(h + "input_layernorm.weight", {C}, s + "ln1_w"));
      t.push_back(rows(h + "self_attn.q_proj.weight", {A, C}, s + "qkv_w", 0));
      t.push_back(rows(h + "self_attn.k_proj.weight", {K, C}, s + "qkv_w", A));
      t.push_back(rows(h + "self_attn.v_proj.weight", {K, C}, s + "qkv_w", A + K));
      t.push_back(whole(h + "self_attn.o_proj.weight", {C, A}, s + "proj_w"));
      t.push_back(whole(h + "post_attention_layernorm.weight", {C}, s + "ln2_w"));
      t.push_back(rows(h + "mlp.gate_proj.weight", {F, C}, s + "fc_w", 0));
      t.push_back(rows(h + "mlp.up_proj.weight", {F, C}, s + "fc_w", F));
      t.push_back(whole(h + "mlp.down_proj.weight", {C, F}, s + "fcproj_w"));
    }
    t.push_back(whole("model.norm.weight", {C}, "lnf_w"));
  }
  if (!m.tie_embeddings) t.push_back(rows("lm_head.weight", {V, C}, "lm_head", 0));
  return t;
}

ExportSummary export_hf(const std::string& run_or_checkpoint, const std::string& out_dir, const ExportOptions& opts) {
  if (opts.dtype != DType::F32 && opts.dtype != DType::BF16 && opts.dtype != DType::F16)
    throw ConfigError("export: --dtype must be fp32, bf16 or fp16");
  if (opts.max_shard_bytes < (int64_t(1) << 20)) throw ConfigError("export: --max-shard-size must be at least 1 MB");
  if (!fs::exists(run_or_checkpoint))
    throw ConfigError("export: '" + run_or_checkpoint + "' does not exist: give a run directory or checkpoints/step_N");
  fs::create_directories(out_dir);
  // A model-parallel run: merged first (every shard gathered into one serial checkpoint).
  std::string source = run_or_checkpoint;
  const fs::path merge_dir = fs::path(out_dir) / ".merge";
  const fs::path run_cfg = fs::path(run_or_checkpoint) / "config.yaml";
  if (fs::exists(run_cfg) && !fs::exists(fs::path(run_or_checkpoint) / "checkpoints")) {
    Config c = load_config(run_cfg.string());
    resolve(c);
    if (c.parallel.tp * c.parallel.pp > 1) {
      fs::remove_all(merge_dir);
      source = merge_checkpoint(run_or_checkpoint, merge_dir.string());
    }
  }
  ExportSummary sum;
  sum.checkpoint = checkpoint_dir(source);
  Config cfg = load_config((fs::path(sum.checkpoint) / "config.yaml").string());
  resolve(cfg);
  validate(cfg);
  const ModelDims d = ModelDims::from(cfg.model, comm::ParallelGrid::single());
  const std::vector<TensorSpec> table = param_table(d);
  const CheckpointData ck = load_checkpoint(sum.checkpoint, table_hash(table), false);
  sum.step = ck.step;
  std::map<std::string, const TensorSpec*> by_name;
  for (const auto& s : table) by_name[s.name] = &s;

  // Every Hugging Face tensor, converted, in the order of the map.
  const std::vector<HfTensor> map = hf_tensor_map(cfg.model);
  const int64_t esize = safetensors::dtype_bytes(opts.dtype);
  std::vector<std::vector<unsigned char>> bytes(map.size());
  for (size_t k = 0; k < map.size(); ++k) {
    const HfTensor& h = map[k];
    const auto it = by_name.find(h.source);
    if (it == by_name.end()) throw std::runtime_error("export: the checkpoint has no tensor " + h.source);
    const TensorSpec& s = *it->second;
    const int64_t cols = s.shape.size() == 2 ? s.shape[1] : 1;
    if (h.row_begin + h.rows > s.shape[0])
      throw std::runtime_error(fmt::format("export: {} needs rows {}..{} of {}, which has {}", h.name, h.row_begin,
                                           h.row_begin + h.rows, s.name, s.shape[0]));
    const float* src = ck.params.data() + s.offset + h.row_begin * cols;
    const int64_t n = h.rows * cols;
    std::vector<float> vals(static_cast<size_t>(n));
    if (h.transpose) {
      for (int64_t r = 0; r < h.rows; ++r)
        for (int64_t c = 0; c < cols; ++c) vals[size_t(c * h.rows + r)] = src[r * cols + c];
    } else {
      std::memcpy(vals.data(), src, size_t(n) * sizeof(float));
    }
    auto& out = bytes[k];
    out.resize(size_t(n * esize));
    for (int64_t i = 0; i < n; ++i) {
      if (opts.dtype == DType::F32) {
        std::memcpy(out.data() + 4 * i, &vals[size_t(i)], 4);
      } else {
        const uint16_t v = opts.dtype == DType::BF16 ? to_bf16(vals[size_t(i)]) : to_f16(vals[size_t(i)]);
        std::memcpy(out.data() + 2 * i, &v, 2);
      }
    }
    sum.bytes += int64_t(out.size());
  }
  sum.tensors = int64_t(map.size());

  // Shards: consecutive tensors up to max_shard_bytes each (a larger tensor gets a shard alone).
  std::vector<std::vector<size_t>> shards(1);
  int64_t in_shard = 0;
  for (size_t k = 0; k < map.size(); ++k) {
    const int64_t b = int64_t(bytes[k].size());
    if (!shards.back().empty() && in_shard + b > opts.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(k);
    in_shard += b;
  }
  const std::map<std::string, std::string> metadata{{"format", "pt"}};
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t sh = 0; sh < shards.size(); ++sh) {
    const std::string file = shards.size() == 1 ? "model.safetensors"
                                                : fmt::format("model-{:05d}-of-{:05d}.safetensors", sh + 1, shards.size());
    std::vector<safetensors::TensorData> tensors;
    for (size_t k : shards[sh]) {
      tensors.push_back({map[k].name, opts.dtype, map[k].shape, std::span<const unsigned char>(bytes[k])});
      weight_map[map[k].name] = file;
    }
    safetensors::write((fs::path(out_dir) / file).string(), tensors, metadata);
    sum.files.push_back(file);
  }
  if (shards.size() > 1) {
    const nlohmann::json index{{"metadata", {{"total_size", sum.bytes}}}, {"weight_map", weight_map}};
    write_text(fs::path(out_dir) / "model.safetensors.index.json", index.dump(2) + "\n");
    sum.files.push_back("model.safetensors.index.json");
  }
  // Stale shards of an earlier export with another count would confuse a reader: removed.
  for (const auto& e : fs::directory_iterator(out_dir)) {
    const std::string f = e.path().filename().string();
    const bool ours = std::find(sum.files.begin(), sum.files.end(), f) != sum.files.end();
    if (!ours && f.size() > 12 && f.rfind("model", 0) == 0 && f.find(".safetensors") != std::string::npos) fs::remove(e.path());
  }

  // config.json / generation_config.json.
  std::string tok_model = cfg.data.tokenizer_model;
  if (!tok_model.empty()) tok_model = resolve_data_path(tok_model, {HOKUSAI_SOURCE_DIR});
  const auto tok = make_tokenizer(cfg.data.tokenizer, tok_model);
  const int eod = tok->end_of_document();
  const char* torch_dtype = opts.dtype == DType::F32 ? "float32" : opts.dtype == DType::BF16 ? "bfloat16" : "float16";
  const ModelConfig& m = cfg.model;
  nlohmann::json config;
  if (m.family == Family::gpt2) {
    config = {{"architectures", {"GPT2LMHeadModel"}},
              {"model_type", "gpt2"},
              {"vocab_size", m.vocab_size},
              {"n_positions", m.max_seq_len},
              {"n_ctx", m.max_seq_len},
              {"n_embd", m.hidden},
              {"n_layer", m.layers},
              {"n_head", m.heads},
              {"n_inner", cfg.model.ffn_hidden},
              {"activation_function", "gelu_new"},  // the tanh approximation hokusai trains with
              {"layer_norm_epsilon", m.norm_eps},
              {"initializer_range", m.init_std},
              {"resid_pdrop", 0.0},
              {"embd_pdrop", 0.0},
              {"attn_pdrop", 0.0},
              {"scale_attn_weights", true},
              {"tie_word_embeddings", m.tie_embeddings},
              {"bos_token_id", eod},
              {"eos_token_id", eod},
              {"torch_dtype", torch_dtype}};
  } else {
    config = {{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", m.vocab_size},
              {"hidden_size", m.hidden},
              {"intermediate_size", cfg.model.ffn_hidden},
              {"num_hidden_layers", m.layers},
              {"num_attention_heads", m.heads},
              {"num_key_value_heads", cfg.model.kv_heads},
              {"hidden_act", "silu"},
              {"max_position_embeddings", m.max_seq_len},
              {"rms_norm_eps", m.norm_eps},
              {"rope_theta", m.rope_theta},
              {"attention_bias", false},
              {"mlp_bias", false},
              {"initializer_range", m.init_std},
              {"tie_word_embeddings", m.tie_embeddings},
              {"bos_token_id", eod},
              {"eos_token_id", eod},
              {"torch_dtype", torch_dtype}};
  }
  write_text(fs::path(out_dir) / "config.json", config.dump(2) + "\n");
  const nlohmann::json generation{{"bos_token_id", eod}, {"eos_token_id", eod}, {"max_length", m.max_seq_len}};
  write_text(fs::path(out_dir) / "generation_config.json", generation.dump(2) + "\n");
  sum.files.push_back("config.json");
  sum.files.push_back("generation_config.json");

  std::string readme = fmt::format(
      "# {} exported by hokusai\n\nFrom `{}` (step {}), {} tensors, {} ({:.1f} MB). Family `{}`: load with "
      "`{}.from_pretrained(\"<this directory>\")`.\n\n",
      fs::path(out_dir).filename().string(), sum.checkpoint, sum.step, sum.tensors, torch_dtype,
      double(sum.bytes) / 1e6, name_of(m.family), m.family == Family::gpt2 ? "GPT2LMHeadModel" : "LlamaForCausalLM");
  if (cfg.data.tokenizer == TokenizerKind::sentencepiece) {
    fs::copy_file(tok_model, fs::path(out_dir) / "tokenizer.model", fs::copy_options::overwrite_existing);
    const nlohmann::json tc{{"tokenizer_class", "LlamaTokenizer"}, {"model_max_length", m.max_seq_len},
                            {"add_bos_token", false},            {"add_eos_token", false},
                            {"eos_token", "</s>"},               {"clean_up_tokenization_spaces", false}};
    write_text(fs::path(out_dir) / "tokenizer_config.json", tc.dump(2) + "\n");
    sum.files.push_back("tokenizer.model");
    sum.files.push_back("tokenizer_config.json");
    readme += "Tokenizer: the run's SentencePiece model (`tokenizer.model`), no BOS added, end of document = id " +
              std::to_string(eod) + ".\n";
  } else {
    readme += fmt::format(
        "Tokenizer: hokusai's byte-level tokenizer, which has no Hugging Face class. Token id = the byte's value "
        "(0-255) of the UTF-8 text, {} = end of document. In Python:\n\n```python\nids = list(text.encode(\"utf-8\"))"
        "\nlogits = model(torch.tensor([ids])).logits\ntext = bytes(i for i in ids if i < 256).decode(\"utf-8\", "
        "errors=\"replace\")\n```\n",
        eod);
  }
  write_text(fs::path(out_dir) / "README.md", readme);
  sum.files.push_back("README.md");
  if (fs::exists(merge_dir)) fs::remove_all(merge_dir);
  return sum;
}

}  // namespace hokusai
