#include "ckpt/hf_import.hpp"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "ckpt/hf_export.hpp"
#include "ckpt/reshard.hpp"
#include "ckpt/safetensors.hpp"
#include "comm/grid.hpp"
#include "hokusai/checkpoint.hpp"
#include "hokusai/model.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string() + ": cannot open it: give a Hugging Face model directory (config.json + safetensors)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(path.string() + ": not JSON (" + e.what() + ")");
  }
}

// Tensors that Hugging Face files may carry and that are not parameters (GPT-2's causal-mask
// buffers, old LLaMA files' rotary frequencies).
bool is_buffer(const std::string& name) {
  const auto ends = [&](const char* s) {
    const size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  return ends(".attn.bias") || ends(".attn.masked_bias") || ends("rotary_emb.inv_freq");
}

}  // namespace

ModelConfig hf_model_config(const std::string& hf_dir) {
  const fs::path path = fs::path(hf_dir) / "config.json";
  const nlohmann::json j = read_json(path);
  const auto need = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key) || j[key].is_null())
      throw ConfigError(path.string() + ": no field '" + key + "' (needed for the model section)");
    return j[key];
  };
  const std::string type = j.value("model_type", "");
  ModelConfig m;
  try {
    if (type == "gpt2") {
      m.family = Family::gpt2;
      m.hidden = need("n_embd").get<int>();
      m.layers = need("n_layer").get<int>();
      m.heads = need("n_head").get<int>();
      m.ffn_hidden = j.contains("n_inner") && !j["n_inner"].is_null() ? j["n_inner"].get<int>() : 4 * m.hidden;
      m.max_seq_len = need("n_positions").get<int>();
      m.vocab_size = need("vocab_size").get<int>();
      m.norm_eps = j.value("layer_norm_epsilon", 1e-5);
      m.tie_embeddings = j.value("tie_word_embeddings", true);
      const std::string act = j.value("activation_function", "gelu_new");
      if (act != "gelu_new" && act != "gelu_pytorch_tanh")
        throw ConfigError(path.string() + ": activation_function '" + act +
                          "': hokusai trains the tanh GELU (gelu_new / gelu_pytorch_tanh) only");
    } else if (type == "llama") {
      m.family = Family::llama;
      m.hidden = need("hidden_size").get<int>();
      m.layers = need("num_hidden_layers").get<int>();
      m.heads = need("num_attention_heads").get<int>();
      m.ffn_hidden = need("intermediate_size").get<int>();
      m.max_seq_len = j.value("max_position_embeddings", 2048);
      m.vocab_size = need("vocab_size").get<int>();
      m.norm_eps = j.value("rms_norm_eps", 1e-6);
      m.rope_theta = j.value("rope_theta", 10000.0);
      m.tie_embeddings = j.value("tie_word_embeddings", false);
      m.kv_heads = j.value("num_key_value_heads", m.heads);
      if (m.kv_heads <= 0 || m.heads % m.kv_heads != 0)
        throw ConfigError(path.string() + fmt::format(": num_key_value_heads {} does not divide num_attention_heads {}",
                                                      m.kv_heads, m.heads));
      if (j.contains("head_dim") && !j["head_dim"].is_null() && m.heads > 0 &&
          j["head_dim"].get<int>() != m.hidden / m.heads)
        throw ConfigError(path.string() + fmt::format(": head_dim {} differs from hidden_size / num_attention_heads = "
                                                      "{}: hokusai's head size is hidden / heads",
                                                      j["head_dim"].get<int>(), m.hidden / m.heads));
      if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
        throw ConfigError(path.string() + ": rope_scaling is set: hokusai's rotary embedding has no scaling");
      const std::string act = j.value("hidden_act", "silu");
      if (act != "silu") throw ConfigError(path.string() + ": hidden_act '" + act + "': hokusai's SwiGLU uses silu");
    } else {
      throw ConfigError(path.string() + ": model_type '" + type + "': hokusai reads gpt2 and llama");
    }
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(path.string() + ": a model field of the wrong type (" + e.what() + ")");
  }
  if (m.heads <= 0 || m.hidden % m.heads != 0)
    throw ConfigError(path.string() + fmt::format(": hidden size {} is not a multiple of the {} heads", m.hidden, m.heads));
  return m;
}

HfWeights::HfWeights(const std::string& hf_dir, const ModelConfig& model) : dir_(hf_dir) {
  const fs::path cfg_path = fs::path(hf_dir) / "config.json";
  if (fs::exists(cfg_path)) {  // a family mismatch is said as such, not as a missing tensor
    const std::string type = read_json(cfg_path).value("model_type", "");
    if (!type.empty() && type != name_of(model.family))
      throw ConfigError(fmt::format("{}: a {} model, but model.family is {} (--from-hf-config takes the model from "
                                    "config.json)",
                                    cfg_path.string(), type, name_of(model.family)));
  }
  // The files: the index's, or the one model.safetensors.
  std::map<std::string, std::string> file_of;  // tensor -> file
  const fs::path index = fs::path(hf_dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const nlohmann::json j = read_json(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw ConfigError(index.string() + ": no weight_map object");
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw ConfigError(index.string() + ": weight_map entry '" + name + "' is not a file name");
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        throw ConfigError(index.string() + ": weight_map names '" + f + "', not a file of this directory");
      file_of[name] = f;
      if (!readers_.count(f)) readers_[f] = open_reader((fs::path(hf_dir) / f).string());
    }
    for (const auto& [f, r] : readers_)
      for (const auto& t : r->tensors())
        if (file_of.count(t.name) && file_of[t.name] != f)
          throw ConfigError(r->path() + ": holds tensor " + t.name + ", which the index puts in " + file_of[t.name]);
  } else {
    const std::string f = "model.safetensors";
    if (!fs::exists(fs::path(hf_dir) / f))
      throw ConfigError(hf_dir + ": neither model.safetensors nor model.safetensors.index.json");
    readers_[f] = open_reader((fs::path(hf_dir) / f).string());
    for (const auto& t : readers_[f]->tensors()) file_of[t.name] = f;
  }
  // Every tensor the model needs, present with its shape; nothing else but known buffers.
  const std::vector<TensorSpec> table = param_table(ModelDims::from(model, comm::ParallelGrid::single()));
  for (const auto& t : table) cols_[t.name] = t.shape.size() == 2 ? t.shape[1] : 1;
  std::set<std::string> used;
  for (const HfTensor& h : hf_tensor_map(model)) {
    const auto at = file_of.find(h.name);
    if (at == file_of.end())
      throw ConfigError(fmt::format("{}: no tensor {} (expected {} for the model: {} layers, hidden {})", hf_dir, h.name,
                                    safetensors::shape_text(h.shape), model.layers, model.hidden));
    const safetensors::Reader& r = *readers_.at(at->second);
    const safetensors::TensorInfo* info = r.find(h.name);
    if (!info) throw ConfigError(r.path() + ": no tensor " + h.name + " (the index says it is here)");
    if (info->shape != h.shape)
      throw ConfigError(fmt::format("{}: tensor {} has shape {}, expected {}", r.path(), h.name,
                                    safetensors::shape_text(info->shape), safetensors::shape_text(h.shape)));
    if (info->dtype != safetensors::DType::F32 && info->dtype != safetensors::DType::BF16 &&
        info->dtype != safetensors::DType::F16 && info->dtype != safetensors::DType::F64)
      throw ConfigError(fmt::format("{}: tensor {} is {}, expected F32, BF16 or F16", r.path(), h.name,
                                    name_of(info->dtype)));
    pieces_[h.source].push_back({h, &r, info});
    used.insert(h.name);
  }
  for (const auto& [name, file] : file_of)
    if (!used.count(name) && !is_buffer(name) && !(name == "lm_head.weight" && model.tie_embeddings))
      throw ConfigError(fmt::format("{}: tensor {} has no place in the model (model.family {}, model.layers {}): "
                                    "a model of another shape? (--from-hf-config takes the model from config.json)",
                                    (fs::path(hf_dir) / file).string(), name, name_of(model.family), model.layers));
}

HfWeights::~HfWeights() = default;

std::unique_ptr<safetensors::Reader> HfWeights::open_reader(const std::string& path) {
  try {
    return std::make_unique<safetensors::Reader>(path);
  } catch (const std::runtime_error& e) {
    throw ConfigError(e.what());
  }
}

void HfWeights::read_rows(const std::string& name, int64_t row_begin, int64_t row_end, float* out) const {
  const auto c = cols_.find(name);
  if (c == cols_.end()) throw std::logic_error("HfWeights::read_rows: no tensor " + name + " in the model");
  const int64_t cols = c->second;
  std::fill_n(out, (row_end - row_begin) * cols, 0.0f);  // rows no file holds: vocabulary padding
  const auto p = pieces_.find(name);
  if (p == pieces_.end()) return;
  for (const Piece& piece : p->second) {
    const HfTensor& h = piece.map;
    const int64_t lo = std::max(row_begin, h.row_begin), hi = std::min(row_end, h.row_begin + h.rows);
    if (lo >= hi) continue;
    float* dst = out + (lo - row_begin) * cols;
    if (!h.transpose) {  // the rows are contiguous in the file
      piece.reader->read_f32(*piece.info, (lo - h.row_begin) * cols, (hi - lo) * cols, dst);
      continue;
    }
    // Conv1D (in, out) = (cols, rows) of the source: column r of the file is source row r.
    std::vector<float> line(size_t(h.rows));
    for (int64_t k = 0; k < cols; ++k) {
      piece.reader->read_f32(*piece.info, k * h.rows, h.rows, line.data());
      for (int64_t r = lo; r < hi; ++r) dst[(r - lo) * cols + k] = line[size_t(r - h.row_begin)];
    }
  }
}

std::vector<float> read_hf_params(const std::string& hf_dir, const ModelConfig& model) {
  const HfWeights weights(hf_dir, model);
  const std::vector<TensorSpec> table = param_table(ModelDims::from(model, comm::ParallelGrid::single()));
  std::vector<float> params(size_t(arena_size(table)), 0.0f);
  for (const TensorSpec& s : table) weights.read_rows(s.name, 0, s.shape[0], params.data() + s.offset);
  return params;
}

std::string import_hf(const std::string& hf_dir, const std::string& out_run, Config cfg, bool from_hf_config) {
  if (from_hf_config) cfg.model = hf_model_config(hf_dir);
  resolve(cfg);
  validate(cfg);
  cfg.parallel.tp = cfg.parallel.pp = cfg.parallel.dp = 1;  // a serial checkpoint
  cfg.parallel.virtual_stages = 1;
  cfg.parallel.stage_layers.clear();
  cfg.parallel.zero1 = false;
  const std::vector<float> params = read_hf_params(hf_dir, cfg.model);
  const std::vector<TensorSpec> table = param_table(ModelDims::from(cfg.model, comm::ParallelGrid::single()));
  cfg.logging.run_dir = out_run;
  fs::create_directories(out_run);
  const CheckpointView view{0, 0, 0, params, {}, {}, tensor_manifest(cfg, 0, 0), {}};
  return save_checkpoint(out_run, cfg, table_hash(table), view, 1);
}

}  // namespace hokusai
