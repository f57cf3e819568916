#include "hokusai/config.hpp"

#include <yaml-cpp/yaml.h>

#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "comm/torus.hpp"
#include "registry.hpp"

namespace hokusai {

using config_detail::Field;
using config_detail::find_field;
using config_detail::nearest_key;
using config_detail::registry;

namespace {

bool is_section(const std::string& prefix) {
  for (const auto& f : registry())
    if (f.key.rfind(prefix + ".", 0) == 0) return true;
  return false;
}

std::string location(const std::string& file, const YAML::Node& node) {
  return file + ":" + std::to_string(node.Mark().line + 1);
}

void load_map(Config& cfg, const YAML::Node& map, const std::string& prefix, const std::string& file) {
  for (const auto& kv : map) {
    if (!kv.first.IsScalar())  // "? [a, b]: x": a complex key (found by tests/fuzz)
      throw ConfigError(location(file, kv.first) + ": expected a key name, found " +
                        (kv.first.IsNull() ? std::string("an empty key") : "a " + std::string(kv.first.IsMap() ? "map" : "list")));
    const std::string name = kv.first.Scalar();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const std::string where = location(file, kv.first);
    if (const Field* f = find_field(key)) {
      try {
        f->set(cfg, kv.second);
      } catch (const ConfigError& e) {
        throw ConfigError(where + ": " + key + ": " + e.what());
      }
      cfg.origin[key] = where;
    } else if (is_section(key)) {
      if (!kv.second.IsMap())
        throw ConfigError(where + ": '" + key + "' is a section: expected a map of its fields");
      load_map(cfg, kv.second, key, file);
    } else {
      throw ConfigError(where + ": unknown key '" + key + "' (did you mean '" + nearest_key(key) +
                        "'?)");
    }
  }
}

// A value on one line (lists and maps in flow style).
std::string one_line(const YAML::Node& node) {
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

// The field, its origin and its value, for validation messages: "tiny.yaml:4: model.hidden=250".
std::string describe(const Config& cfg, const std::string& key) {
  const auto it = cfg.origin.find(key);
  const Field* f = find_field(key);
  std::string value = f ? one_line(f->get(cfg)) : "?";
  return (it != cfg.origin.end() ? it->second + ": " : std::string()) + key + "=" + value;
}

}  // namespace

Config load_config(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    throw ConfigError("config file '" + path + "' not found (give a path to a YAML file, e.g. configs/tiny.yaml)");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw ConfigError("config file '" + path + "' cannot be read");
  return load_config_text(text.str(), path);
}

Config load_config_text(const std::string& yaml, const std::string& origin) {
  Config cfg;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
  cfg.source = origin;
  if (root.IsNull()) return cfg;
  if (!root.IsMap()) throw ConfigError(origin + ": expected a map of sections (model:, train:, ...)");
  load_map(cfg, root, "", origin);
  return cfg;
}

void apply_override(Config& cfg, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set '" + assignment + "': expected key=value, e.g. --set optimizer.lr=3e-4");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  const Field* f = find_field(key);
  if (!f) throw ConfigError("--set: unknown key '" + key + "' (did you mean '" + nearest_key(key) + "'?)");
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set " + key + ": cannot parse '" + text + "': " + e.msg);
  }
  try {
    f->set(cfg, value);
  } catch (const ConfigError& e) {
    throw ConfigError("--set " + key + ": " + e.what());
  }
  cfg.origin[key] = "--set";
}

int padded_vocab(const ModelConfig& m, int tp) {
  const int64_t mult = int64_t(m.vocab_pad_multiple) * tp;  // validate() keeps the result an int
  return int((m.vocab_size + mult - 1) / mult * mult);
}

void resolve(Config& cfg) {
  auto& m = cfg.model;
  if (m.kv_heads == 0) m.kv_heads = m.heads;
  if (m.ffn_hidden == 0 && m.hidden > 0 && m.ffn_multiple_of > 0) {
    if (m.family == Family::llama)
      m.ffn_hidden = (8 * m.hidden / 3 + m.ffn_multiple_of - 1) / m.ffn_multiple_of * m.ffn_multiple_of;
    else
      m.ffn_hidden = 4 * m.hidden;
  }
}

void validate(const Config& cfg) {
  const auto fail = [&](const std::string& key, const std::string& why) {
    throw ConfigError(describe(cfg, key) + ": " + why);
  };
  const auto& m = cfg.model;
  const auto& p = cfg.parallel;
  const auto& t = cfg.train;
  const auto& o = cfg.optimizer;
  const auto positive = [&](const std::string& key, double v) {
    if (!(v > 0)) fail(key, "must be > 0");
  };
  // Upper limits far beyond any model or machine this trains on, so that no size computed from
  // the config overflows (every product of them is taken in 64 bits).
  const auto at_most = [&](const std::string& key, int64_t v, int64_t limit, const char* what) {
    if (v > limit) fail(key, "at most " + std::to_string(limit) + " (" + what + ")");
  };
  at_most("model.layers", m.layers, 1 << 12, "Transformer blocks");
  at_most("model.hidden", m.hidden, 1 << 17, "model width");
  at_most("model.heads", m.heads, 1 << 12, "attention heads");
  at_most("model.kv_heads", m.kv_heads, 1 << 12, "key/value heads");
  at_most("model.ffn_hidden", m.ffn_hidden, 1 << 20, "MLP width");
  at_most("model.vocab_size", m.vocab_size, 1 << 24, "tokens");
  at_most("model.vocab_pad_multiple", m.vocab_pad_multiple, 1 << 16, "a vocabulary padding multiple; 64 to 1024 are usual");
  at_most("model.ffn_multiple_of", m.ffn_multiple_of, 1 << 16, "a rounding multiple of the MLP width; 64 or 256 are usual");
  at_most("model.max_seq_len", m.max_seq_len, 1 << 20, "tokens per sequence");
  at_most("parallel.tp", p.tp, 1 << 20, "ranks");
  at_most("parallel.pp", p.pp, 1 << 20, "ranks");
  at_most("parallel.dp", p.dp, 1 << 20, "ranks");
  at_most("parallel.virtual_stages", p.virtual_stages, 1 << 12, "model chunks per stage");
  at_most("train.micro_batch", t.micro_batch, 1 << 20, "sequences");
  at_most("train.global_batch", t.global_batch, 1 << 30, "sequences");
  at_most("kernels.threads", cfg.kernels.threads, 1 << 10, "OpenMP threads per rank; 0 = as many as the rank's cores");
  if (int64_t(p.tp) * p.pp * p.dp > (int64_t(1) << 24))
    fail("parallel.dp", "tp*pp*dp = " + std::to_string(int64_t(p.tp) * p.pp * p.dp) + " ranks: at most 16777216");
  if (t.precision != kernels::Precision::fp32 && cfg.kernels.gemm != kernels::GemmBackend::native &&
      cfg.kernels.gemm != kernels::GemmBackend::reference)
    fail("train.precision", std::string(name_of(t.precision)) + " needs kernels.gemm native or reference (" +
                                std::string(name_of(cfg.kernels.gemm)) + " multiplies in fp32 only)");
  if (!(t.loss_scale >= 1) || !std::isfinite(t.loss_scale)) fail("train.loss_scale", "must be a finite number >= 1");
  if (t.loss_scale_window < 1) fail("train.loss_scale_window", "must be >= 1");
  positive("model.layers", m.layers);
  positive("model.hidden", m.hidden);
  positive("model.heads", m.heads);
  positive("model.vocab_size", m.vocab_size);
  positive("model.vocab_pad_multiple", m.vocab_pad_multiple);
  positive("model.ffn_multiple_of", m.ffn_multiple_of);
  if (m.vocab_pad_multiple > 0 && p.tp > 0) {
    const int64_t mult = int64_t(m.vocab_pad_multiple) * p.tp;
    if ((m.vocab_size + mult - 1) / mult * mult > INT32_MAX)
      fail("model.vocab_pad_multiple", "pads the vocabulary to more than 2^31-1 rows (the multiple times parallel.tp=" +
                                           std::to_string(p.tp) + " is " + std::to_string(mult) + ")");
  }
  positive("model.max_seq_len", m.max_seq_len);
  positive("model.init_std", m.init_std);
  positive("model.norm_eps", m.norm_eps);
  positive("model.rope_theta", m.rope_theta);
  if (m.ffn_hidden < 0) fail("model.ffn_hidden", "must be >= 0 (0 picks the family default)");
  if (m.hidden % m.heads != 0)
    fail("model.hidden", "not divisible by model.heads=" + std::to_string(m.heads));
  const int kv_heads = m.kv_heads == 0 ? m.heads : m.kv_heads;  // validate may run before resolve
  if (kv_heads < 0 || m.heads % kv_heads != 0)
    fail("model.kv_heads", "must divide model.heads=" + std::to_string(m.heads) +
                               " (each key/value head serves heads/kv_heads query heads); 0 = heads");
  if (m.family == Family::gpt2 && kv_heads != m.heads)
    fail("model.kv_heads", "grouped-query attention is a llama option: gpt2 has kv_heads = heads (" +
                               std::to_string(m.heads) + ")");
  if (m.family == Family::llama && (m.hidden / m.heads) % 2 != 0)
    fail("model.heads", "head size hidden/heads=" + std::to_string(m.hidden / m.heads) +
                            " must be even for rotary embeddings");
  positive("parallel.tp", p.tp);
  positive("parallel.pp", p.pp);
  positive("parallel.dp", p.dp);
  if (m.heads % p.tp != 0) fail("parallel.tp", "does not divide model.heads=" + std::to_string(m.heads));
  if (kv_heads % p.tp != 0)
    fail("parallel.tp", "does not divide model.kv_heads=" + std::to_string(kv_heads) +
                            " (each tensor-parallel rank holds whole key/value heads)");
  if (m.ffn_hidden % p.tp != 0)
    fail("parallel.tp", "does not divide model.ffn_hidden=" + std::to_string(m.ffn_hidden));
  if (m.layers < p.pp)
    fail("parallel.pp", "more pipeline stages than model.layers=" + std::to_string(m.layers));
  if (!p.stage_layers.empty()) {
    if (int(p.stage_layers.size()) != p.pp)
      fail("parallel.stage_layers", std::to_string(p.stage_layers.size()) + " entries for parallel.pp=" +
                                        std::to_string(p.pp) + " stages: give one layer count per stage");
    int64_t sum = 0;
    for (int n : p.stage_layers) {
      if (n < 0) fail("parallel.stage_layers", "a negative layer count (" + std::to_string(n) + ")");
      sum += n;
    }
    if (sum != m.layers)
      fail("parallel.stage_layers", "sums to " + std::to_string(sum) + " but model.layers=" + std::to_string(m.layers));
  }
  positive("parallel.virtual_stages", p.virtual_stages);
  if (p.virtual_stages > 1) {
    if (p.pp == 1) fail("parallel.virtual_stages", "interleaving needs parallel.pp > 1");
    if (m.layers % (int64_t(p.pp) * p.virtual_stages) != 0)
      fail("parallel.virtual_stages", "model.layers=" + std::to_string(m.layers) + " is not divisible by pp*v=" +
                                          std::to_string(int64_t(p.pp) * p.virtual_stages));
    if (!p.stage_layers.empty()) fail("parallel.virtual_stages", "cannot be combined with parallel.stage_layers");
    const int64_t micro = t.micro_batch * int64_t(p.dp);
    if (micro > 0 && t.global_batch % micro == 0 && (t.global_batch / micro) % p.pp != 0)
      fail("parallel.virtual_stages", "interleaving needs the micro-batches per step (global_batch/(micro_batch*dp)=" +
                                          std::to_string(t.global_batch / micro) + ") to be a multiple of parallel.pp=" +
                                          std::to_string(p.pp));
  }
  for (int s : p.recompute_stages)
    if (s < 0 || s >= p.pp)
      fail("parallel.recompute_stages", "stage " + std::to_string(s) + " is outside [0, parallel.pp=" +
                                            std::to_string(p.pp) + ")");
  positive("train.steps", double(t.steps));
  if (t.skip_nonfinite < 0) fail("train.skip_nonfinite", "must be >= 0 (0: stop at the first non-finite step)");
  positive("train.micro_batch", t.micro_batch);
  positive("train.global_batch", t.global_batch);
  positive("train.seq_len", t.seq_len);
  if (t.seq_len > m.max_seq_len)
    fail("train.seq_len", "longer than model.max_seq_len=" + std::to_string(m.max_seq_len) +
                              " (the position table): raise model.max_seq_len or shorten the sequence");
  if (t.global_batch % (int64_t(t.micro_batch) * p.dp) != 0)
    fail("train.global_batch", "not a multiple of train.micro_batch*parallel.dp=" +
                                   std::to_string(int64_t(t.micro_batch) * p.dp));
  positive("optimizer.lr", o.lr);
  if (o.min_lr < 0 || o.min_lr > o.lr) fail("optimizer.min_lr", "must be in [0, optimizer.lr]");
  if (o.beta1 < 0 || o.beta1 >= 1) fail("optimizer.beta1", "must be in [0, 1)");
  if (o.beta2 < 0 || o.beta2 >= 1) fail("optimizer.beta2", "must be in [0, 1)");
  positive("optimizer.eps", o.eps);
  if (o.weight_decay < 0) fail("optimizer.weight_decay", "must be >= 0");
  if (o.grad_clip < 0) fail("optimizer.grad_clip", "must be >= 0 (0 disables clipping)");
  if (cfg.schedule.warmup_steps < 0) fail("schedule.warmup_steps", "must be >= 0");
  if (cfg.schedule.decay_steps < 0) fail("schedule.decay_steps", "must be >= 0 (0 = train.steps)");
  if (cfg.data.paths.empty()) fail("data.paths", "needs at least one dataset");
  for (const auto& src : cfg.data.paths)
    if (!(src.weight > 0)) fail("data.paths", "weight of '" + src.path + "' must be > 0");
  if (cfg.data.tokenizer == TokenizerKind::byte && m.vocab_size < 257)
    fail("model.vocab_size", "the byte tokenizer produces 257 ids");
  if (cfg.data.tokenizer == TokenizerKind::sentencepiece && cfg.data.tokenizer_model.empty())
    fail("data.tokenizer_model", "needed by data.tokenizer: sentencepiece (path of a .model file)");
  if (cfg.checkpoint.interval < 0) fail("checkpoint.interval", "must be >= 0");
  positive("checkpoint.keep", cfg.checkpoint.keep);
  if (!(cfg.checkpoint.mtbf_hours >= 0)) fail("checkpoint.mtbf_hours", "must be >= 0 (0 = no interval advice)");
  positive("logging.interval", cfg.logging.interval);
  if (cfg.logging.eval_interval < 0) fail("logging.eval_interval", "must be >= 0");
  if (cfg.logging.eval_batches < 0) fail("logging.eval_batches", "must be >= 0");
  if (cfg.kernels.threads < 0) fail("kernels.threads", "must be >= 0 (0 = automatic)");
  if (cfg.kernels.peak_gflops < 0) fail("kernels.peak_gflops", "must be >= 0 (0 = probe)");
  const CommConfig& c = cfg.comm;
  if (c.ranks_per_node < 0) fail("comm.ranks_per_node", "must be >= 0 (0 = from MPI's shared-memory split)");
  if (!(c.timeout_s >= 0)) fail("comm.timeout_s", "must be >= 0 (0 disables the watchdog)");
  if (!(c.straggler_factor == 0 || c.straggler_factor > 1))
    fail("comm.straggler_factor", "must be > 1 (how many times slower than the median), or 0 to disable");
  positive("comm.straggler_steps", c.straggler_steps);
  if (c.topology != "flat") {
    try {
      comm::Torus::parse(c.topology);
    } catch (const std::invalid_argument& e) {
      fail("comm.topology", std::string(e.what()) + ", or flat");
    }
  }
  if (!c.coordinates.empty() && c.topology == "flat")
    fail("comm.coordinates", "needs comm.topology: the torus extents the coordinates are on (e.g. 4x4x4x2x3x2)");
  if (c.dp_allreduce == comm::AllreduceAlgorithm::torus && c.topology == "flat" && p.dp > 1)
    fail("comm.dp_allreduce", "torus needs comm.topology (the torus the dp groups lie on)");
}

std::string dump_config(const Config& cfg) {
  YAML::Node root;
  for (const auto& f : registry()) {
    const auto dot = f.key.find('.');
    root[f.key.substr(0, dot)][f.key.substr(dot + 1)] = f.get(cfg);
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

std::string config_reference_markdown() {
  const Config defaults;
  std::ostringstream md;
  md << "# Configuration reference\n\n"
        "Generated by `hokusai config --reference`; a test keeps this page equal to that output.\n"
        "A run reads defaults, then the YAML file, then every `--set key=value`, in that order, then\n"
        "validates. Unknown keys, wrong types and impossible values stop the run with one line\n"
        "naming the file, line and key. `hokusai train CONFIG --dump-config` writes the resolved\n"
        "YAML without training; every run also writes it to `<run_dir>/config.yaml`.\n";
  std::string section;
  for (const auto& f : registry()) {
    const std::string sec = f.key.substr(0, f.key.find('.'));
    if (sec != section) {
      section = sec;
      md << "\n## `" << sec << "`\n\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
    }
    const std::string def = one_line(f.get(defaults));
    std::string doc = f.doc;
    if (!f.choices.empty()) {
      doc += " (one of:";
      for (const auto& c : f.choices) doc += " `" + c + "`";
      doc += ")";
    }
    md << "| `" << f.key << "` | " << f.type << " | `" << (def.empty() ? "\"\"" : def) << "` | "
       << doc << " |\n";
  }
  return md.str();
}

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const auto& f : registry()) keys.push_back(f.key);
  return keys;
}

}  // namespace hokusai
