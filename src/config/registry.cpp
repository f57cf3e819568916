#include "registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

namespace hokusai::config_detail {

namespace {

std::string scalar_text(const YAML::Node& node) {
  if (!node.IsScalar()) throw ConfigError("expected a single value, got a list or map");
  return node.Scalar();
}

template <typename V>
V convert(const YAML::Node& node) {
  if constexpr (std::is_enum_v<V>) {  // by its Names table (hokusai/names.hpp)
    const std::string text = scalar_text(node);
    if (const std::optional<V> v = value_named<V>(text)) return *v;
    throw ConfigError("'" + text + "' is not one of: " + name_list<V>());
  } else if constexpr (std::is_same_v<V, bool>) {
    bool out;
    if (!YAML::convert<bool>::decode(node, out))
      throw ConfigError("expected true or false, got '" + scalar_text(node) + "'");
    return out;
  } else if constexpr (std::is_integral_v<V>) {
    const std::string text = scalar_text(node);
    V out{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc() || end != text.data() + text.size())
      throw ConfigError("expected an integer, got '" + text + "'");
    return out;
  } else if constexpr (std::is_floating_point_v<V>) {
    const std::string text = scalar_text(node);
    char* end = nullptr;
    const double out = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(out))
      throw ConfigError("expected a number, got '" + text + "'");
    return V(out);
  } else if constexpr (std::is_same_v<V, std::string>) {
    return scalar_text(node);
  } else if constexpr (std::is_same_v<V, std::vector<DataSource>>) {
    // A path, a list of paths, or a list of {path, weight} maps.
    const auto one = [](const YAML::Node& item) {
      if (item.IsScalar()) return DataSource{item.Scalar(), 1.0};
      if (!item.IsMap()) throw ConfigError("expected a path or a {path, weight} map");
      DataSource src{"", 1.0};
      for (const auto& kv : item) {
        const std::string k = kv.first.as<std::string>();
        if (k == "path")
          src.path = scalar_text(kv.second);
        else if (k == "weight")
          src.weight = convert<double>(kv.second);
        else
          throw ConfigError("unknown field '" + k + "' in a data source (expected path and weight)");
      }
      if (src.path.empty()) throw ConfigError("a data source needs a path");
      return src;
    };
    if (!node.IsSequence()) return V{one(node)};
    V out;
    for (const auto& item : node) out.push_back(one(item));
    return out;
  } else if constexpr (std::is_same_v<V, std::vector<int>>) {
    V out;
    if (node.IsScalar()) return {convert<int>(node)};
    if (!node.IsSequence()) throw ConfigError("expected a list of integers");
    for (const auto& item : node) out.push_back(convert<int>(item));
    return out;
  } else {
    static_assert(std::is_same_v<V, std::vector<std::string>>);
    std::vector<std::string> out;
    if (node.IsScalar()) return {node.Scalar()};
    if (!node.IsSequence()) throw ConfigError("expected a list of strings");
    for (const auto& item : node) out.push_back(scalar_text(item));
    return out;
  }
}

template <typename V>
const char* type_name() {
  if constexpr (std::is_enum_v<V>) return "string";
  else if constexpr (std::is_same_v<V, bool>) return "bool";
  else if constexpr (std::is_integral_v<V>) return "int";
  else if constexpr (std::is_floating_point_v<V>) return "float";
  else if constexpr (std::is_same_v<V, std::string>) return "string";
  else if constexpr (std::is_same_v<V, std::vector<DataSource>>) return "list of {path, weight}";
  else if constexpr (std::is_same_v<V, std::vector<int>>) return "list of int";
  else return "list of string";
}

// An enum field accepts every name of its table, or only `choices` when given (a subset).
template <typename Section, typename V>
Field field_of(std::string key, Section Config::*section, V Section::*member, std::string doc,
           std::vector<std::string> choices = {}) {
  if constexpr (std::is_enum_v<V>)
    if (choices.empty())
      for (const auto& entry : Names<V>::table) choices.emplace_back(entry.second);
  Field f{std::move(key), type_name<V>(), std::move(doc), choices, nullptr, nullptr};
  f.set = [section, member, choices](Config& cfg, const YAML::Node& node) {
    V value = convert<V>(node);
    if constexpr (std::is_enum_v<V>) {
      if (std::find(choices.begin(), choices.end(), name_of(value)) == choices.end()) {
        std::string list;
        for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
        throw ConfigError("'" + std::string(name_of(value)) + "' is not one of: " + list);
      }
    }
    cfg.*section.*member = std::move(value);
  };
  f.get = [section, member](const Config& cfg) {
    if constexpr (std::is_same_v<V, std::vector<DataSource>>) {
      YAML::Node list(YAML::NodeType::Sequence);
      for (const auto& src : cfg.*section.*member) {
        YAML::Node item;
        item["path"] = src.path;
        item["weight"] = src.weight;
        list.push_back(item);
      }
      return list;
    } else if constexpr (std::is_enum_v<V>) {
      return YAML::Node(std::string(name_of(cfg.*section.*member)));
    } else if constexpr (std::is_floating_point_v<V>) {
      // Shortest text that reads back to the same double: 0.0003, not 0.00029999999999999997.
      char buf[32];
      const auto res = std::to_chars(buf, buf + sizeof buf, cfg.*section.*member);
      return YAML::Node(std::string(buf, res.ptr));
    } else {
      return YAML::Node(cfg.*section.*member);
    }
  };
  return f;
}

std::vector<Field> make_registry() {
  using C = Config;
  return {
      field_of("model.family", &C::model, &ModelConfig::family,
           "Architecture: gpt2 (LayerNorm+bias, GELU, learned positions; Fugaku-LLM) or llama "
           "(RMSNorm, SwiGLU, rotary, no biases)"),
      field_of("model.layers", &C::model, &ModelConfig::layers, "Transformer blocks (L)"),
      field_of("model.hidden", &C::model, &ModelConfig::hidden, "Model width (C); divisible by model.heads"),
      field_of("model.heads", &C::model, &ModelConfig::heads, "Attention heads (NH)"),
      field_of("model.kv_heads", &C::model, &ModelConfig::kv_heads,
               "Key/value heads (llama): fewer than model.heads is grouped-query attention, each serving "
               "heads/kv_heads query heads (HF num_key_value_heads); 0 = heads"),
      field_of("model.ffn_hidden", &C::model, &ModelConfig::ffn_hidden,
           "MLP width (F); 0 = 4*hidden for gpt2, 8/3*hidden rounded up to model.ffn_multiple_of for llama"),
      field_of("model.ffn_multiple_of", &C::model, &ModelConfig::ffn_multiple_of,
           "llama: the default MLP width 8/3*hidden is rounded up to a multiple of this (Meta's LLaMA: 256); "
           "an explicit model.ffn_hidden (Hugging Face's intermediate_size) is taken as it is"),
      field_of("model.vocab_size", &C::model, &ModelConfig::vocab_size,
           "Token ids the tokenizer produces (257 for the byte tokenizer)"),
      field_of("model.vocab_pad_multiple", &C::model, &ModelConfig::vocab_pad_multiple,
           "Embedding rows padded to a multiple of this times parallel.tp; padded logits are masked"),
      field_of("model.max_seq_len", &C::model, &ModelConfig::max_seq_len,
           "Position-table rows (gpt2) and longest allowed train.seq_len"),
      field_of("model.tie_embeddings", &C::model, &ModelConfig::tie_embeddings,
           "Share the input embedding with the output projection"),
      field_of("model.init_std", &C::model, &ModelConfig::init_std,
           "Std of the normal initialisation; residual projections use init_std/sqrt(2L)"),
      field_of("model.norm_eps", &C::model, &ModelConfig::norm_eps, "Epsilon of LayerNorm/RMSNorm"),
      field_of("model.rope_theta", &C::model, &ModelConfig::rope_theta, "Rotary embedding base (llama)"),
      field_of("parallel.tp", &C::parallel, &ParallelConfig::tp, "Tensor-parallel ranks"),
      field_of("parallel.pp", &C::parallel, &ParallelConfig::pp, "Pipeline stages"),
      field_of("parallel.dp", &C::parallel, &ParallelConfig::dp, "Data-parallel replicas"),
      field_of("parallel.zero1", &C::parallel, &ParallelConfig::zero1,
           "ZeRO-1 distributed optimizer: reduce-scatter gradients, each data-parallel rank updates its "
           "shard of parameters and Adam state (optimizer memory / dp), then all-gather parameters"),
      field_of("parallel.sequence_parallel", &C::parallel, &ParallelConfig::sequence_parallel,
           "Sequence parallelism (Megatron's, with tp > 1; no effect at tp = 1): the norms, residual adds "
           "and their saved activations run on each tensor-parallel rank's block of the token rows only; "
           "an all-gather before each column-parallel linear and a reduce-scatter after each row-parallel "
           "one replace the all-reduce (the same bytes on a ring). Activation memory of those tensors / tp"),
      field_of("parallel.stage_layers", &C::parallel, &ParallelConfig::stage_layers,
           "Layers of each pipeline stage, e.g. [5, 6, 6, 5]: pp entries summing to model.layers; empty = "
           "as even as possible (the first layers % pp stages get one more)"),
      field_of("parallel.virtual_stages", &C::parallel, &ParallelConfig::virtual_stages,
           "Model chunks per pipeline stage: 1 = 1F1B; v > 1 = interleaved 1F1B (bubble / v, v times the "
           "point-to-point messages); model.layers must divide by pp*v and the micro-batches per step by pp"),
      field_of("parallel.recompute", &C::parallel, &ParallelConfig::recompute,
           "Activation recomputation: none; selective (attention scores and weighted sum recomputed in "
           "backward, the B*heads*T*T probabilities never kept); full (only each layer's input kept, the "
           "layer re-run in backward)"),
      field_of("parallel.recompute_stages", &C::parallel, &ParallelConfig::recompute_stages,
           "Pipeline stages that recompute (0-based); empty = every stage. Early stages hold the most "
           "micro-batches in flight under 1F1B, so they gain the most"),
      field_of("comm.topology", &C::comm, &CommConfig::topology,
           "Torus (or mesh) the nodes form, e.g. 4x4x4x2x3x2 for a Tofu-D slice or mesh:4x4; flat = "
           "unknown. Grid ranks are then placed so each dp group spans torus dimensions of its own and "
           "tp groups share a node or neighbouring nodes (the chosen mapping is printed at start)"),
      field_of("comm.coordinates", &C::comm, &CommConfig::coordinates,
           "File of node coordinates on comm.topology, one node per line in rank order, e.g. (0,1,2) "
           "as in Fugaku's virtual-coordinate files; empty = nodes in row-major order"),
      field_of("comm.timeout_s", &C::comm, &CommConfig::timeout_s,
           "Watchdog: a rank that makes no progress for this many seconds (e.g. waiting in a collective for "
           "a stopped peer) prints one line naming the silent ranks and ends the job, exit 1 (docs/reliability.md). "
           "Larger than the slowest step and checkpoint save; 0 disables"),
      field_of("comm.straggler_factor", &C::comm, &CommConfig::straggler_factor,
           "Straggler report: a rank whose own work (compute and optimizer, without waits) per step "
           "exceeds this multiple of the median of the ranks on its pipeline stage, by at least 5% of the "
           "slowest rank's step, for comm.straggler_steps steps in a row is named in the log with its time by "
           "phase, and in metrics.jsonl; 0 disables"),
      field_of("comm.straggler_steps", &C::comm, &CommConfig::straggler_steps,
           "Steps in a row a rank must be slow before the straggler report names it (measured at each "
           "log step, over the steps since the previous one)"),
      field_of("comm.ranks_per_node", &C::comm, &CommConfig::ranks_per_node,
           "MPI ranks per node (consecutive ranks share a node); 0 = from MPI's shared-memory split. Set "
           "it to emulate several nodes on one machine"),
      field_of("comm.tp_allreduce", &C::comm, &CommConfig::tp_allreduce,
           "Tensor-parallel activation allreduce (blocking, on the critical path): automatic (mpi below "
           "64 KiB, ring for 2 ranks and rabenseifner beyond above), or one forced",
           {"automatic", "mpi", "ring", "rabenseifner"}),
      field_of("comm.dp_allreduce", &C::comm, &CommConfig::dp_allreduce,
           "Data-parallel gradient allreduce: automatic (mpi below 64 KiB; above, torus when each dp group "
           "lies on comm.topology one rank per node, hierarchical when it has several ranks on each of "
           "several nodes, else ring for 2 ranks and rabenseifner beyond), or one forced"),
      field_of("train.steps", &C::train, &TrainConfig::steps, "Optimizer steps"),
      field_of("train.skip_nonfinite", &C::train, &TrainConfig::skip_nonfinite,
           "A step whose loss or gradient norm is not finite on any rank is skipped by every rank "
           "(parameters and Adam state untouched, the skip logged and counted in metrics.jsonl), up to "
           "this many in a row; then the run stops. 0: stop at the first"),
      field_of("train.precision", &C::train, &TrainConfig::precision,
           "Precision of the matrix products' inputs (every linear and attention product; both passes). fp32: "
           "the reference. bf16 / fp16: inputs rounded to that format, products accumulated in fp32; master "
           "weights, gradients, Adam state, norms, softmax and the loss stay fp32. Runs on the CPU's 16-bit unit "
           "where it has one (bf16: AMX or AVX512_BF16; fp16: SVE, the A64FX) and emulated at fp32 speed "
           "elsewhere (the start-up log says which). fp16 scales the loss (train.loss_scale). Needs "
           "kernels.gemm native or reference"),
      field_of("train.loss_scale", &C::train, &TrainConfig::loss_scale,
           "fp16 only: the dynamic loss scale's start. The loss gradient is multiplied by it so that small "
           "gradients survive fp16; the gradients are divided by it before clipping. A step whose gradients "
           "overflow is skipped (parameters and Adam state untouched), counted in metrics.jsonl "
           "(overflow_steps) and the scale halved; after train.loss_scale_window good steps it doubles. A "
           "scale below 1 stops the run. Restarts from this value on --resume"),
      field_of("train.loss_scale_window", &C::train, &TrainConfig::loss_scale_window,
           "fp16 only: steps without overflow after which the loss scale doubles"),
      field_of("train.micro_batch", &C::train, &TrainConfig::micro_batch,
           "Sequences per micro-batch on each data-parallel rank"),
      field_of("train.global_batch", &C::train, &TrainConfig::global_batch,
           "Sequences per optimizer step over all ranks; a multiple of micro_batch*dp "
           "(the quotient is the gradient-accumulation count)"),
      field_of("train.seq_len", &C::train, &TrainConfig::seq_len, "Tokens per sequence (T)"),
      field_of("train.seed", &C::train, &TrainConfig::seed, "Seed of initialisation and data order"),
      field_of("optimizer.lr", &C::optimizer, &OptimizerConfig::lr, "Peak learning rate"),
      field_of("optimizer.min_lr", &C::optimizer, &OptimizerConfig::min_lr,
           "Learning rate at the end of the decay"),
      field_of("optimizer.beta1", &C::optimizer, &OptimizerConfig::beta1, "Adam beta1"),
      field_of("optimizer.beta2", &C::optimizer, &OptimizerConfig::beta2, "Adam beta2"),
      field_of("optimizer.eps", &C::optimizer, &OptimizerConfig::eps, "Adam epsilon"),
      field_of("optimizer.weight_decay", &C::optimizer, &OptimizerConfig::weight_decay,
           "Decoupled weight decay (AdamW) on matrices"),
      field_of("optimizer.decay_all", &C::optimizer, &OptimizerConfig::decay_all,
           "Also apply weight decay to norms, biases and embeddings"),
      field_of("optimizer.grad_clip", &C::optimizer, &OptimizerConfig::grad_clip,
           "Clip gradients to this global L2 norm; 0 disables"),
      field_of("schedule.warmup_steps", &C::schedule, &ScheduleConfig::warmup_steps,
           "Linear warm-up steps from 0 to optimizer.lr"),
      field_of("schedule.decay", &C::schedule, &ScheduleConfig::decay,
           "Decay after warm-up down to optimizer.min_lr"),
      field_of("schedule.decay_steps", &C::schedule, &ScheduleConfig::decay_steps,
           "Step at which the decay reaches min_lr; 0 = train.steps"),
      field_of("data.paths", &C::data, &DataConfig::paths,
           "Datasets to blend: Megatron prefixes (PREFIX.bin + PREFIX.idx) or .txt (one document per "
           "line) / .jsonl files, preprocessed once into the cache; a path, a list of paths, or a list of "
           "{path, weight}. Relative paths are tried from the working directory, the config file's "
           "directory, then the source tree"),
      field_of("data.tokenizer", &C::data, &DataConfig::tokenizer,
           "Tokenizer: byte (256 byte values + end-of-document = 257 ids) or sentencepiece"),
      field_of("data.tokenizer_model", &C::data, &DataConfig::tokenizer_model,
           "SentencePiece .model file (data.tokenizer: sentencepiece); its </s> is the end-of-document token"),
      field_of("data.split", &C::data, &DataConfig::split,
           "Train,valid,test proportions, split by documents in order (Megatron's convention)"),
      field_of("data.cache_dir", &C::data, &DataConfig::cache_dir,
           "Where sample indexes and preprocessed text go; empty = .hokusai-cache beside each dataset"),
      field_of("data.json_key", &C::data, &DataConfig::json_key, "Field holding the text in .jsonl inputs"),
      field_of("checkpoint.interval", &C::checkpoint, &CheckpointConfig::interval,
           "Save a checkpoint every N steps; 0 = only at the end"),
      field_of("checkpoint.keep", &C::checkpoint, &CheckpointConfig::keep,
           "Newest checkpoints kept; older ones are removed only after a newer save succeeded"),
      field_of("checkpoint.on_error", &C::checkpoint, &CheckpointConfig::on_error,
           "A save that fails (disk full, quota, I/O error): stop the job, or continue training and "
           "save again at the next interval. The previous checkpoint and `latest` stay intact either way"),
      field_of("checkpoint.async", &C::checkpoint, &CheckpointConfig::async,
           "Write checkpoints in a background thread from a copy of the parameters and Adam state "
           "(12 bytes per parameter more memory on the writing ranks); the step is blocked only "
           "for the copy. The end-of-run and stop-signal saves are always synchronous"),
      field_of("checkpoint.mtbf_hours", &C::checkpoint, &CheckpointConfig::mtbf_hours,
           "Expected mean time between failures of the job (hours; 0 = no advice): logs the interval "
           "Young's rule sqrt(2 * save time * MTBF) suggests, from the measured save and step times"),
      field_of("logging.interval", &C::logging, &LoggingConfig::interval, "Steps between log lines"),
      field_of("logging.run_dir", &C::logging, &LoggingConfig::run_dir,
           "Run directory (logs, metrics, config, checkpoints); empty = runs/<config>-<time>"),
      field_of("logging.eval_interval", &C::logging, &LoggingConfig::eval_interval,
           "Steps between validation passes; 0 = only at the end"),
      field_of("logging.eval_batches", &C::logging, &LoggingConfig::eval_batches,
           "Micro-batches per validation pass"),
      field_of("logging.progress", &C::logging, &LoggingConfig::progress,
           "Progress bar with ETA when stdout is a terminal"),
      field_of("kernels.gemm", &C::kernels, &KernelsConfig::gemm,
           "GEMM backend: native (ours: AVX-512/AVX2/SVE/generic microkernels, HOKUSAI_GEMM_ISA "
           "forces one), openblas, onednn (peers, where the build has them) or reference (scalar)"),
      field_of("kernels.attention", &C::kernels, &KernelsConfig::attention,
           "Causal attention: flash (fused: query tiles against key tiles with an online softmax, the "
           "log-sum-exp saved, O(T) memory per layer) or gemm (the whole T x T scores through the GEMM, "
           "the B*heads*T*T probabilities saved: the reference)"),
      field_of("kernels.threads", &C::kernels, &KernelsConfig::threads,
           "OpenMP threads per rank; 0 = OMP_NUM_THREADS, else the cores it may use, divided among the ranks of its node that share them"),
      field_of("kernels.peak_gflops", &C::kernels, &KernelsConfig::peak_gflops,
           "Peak fp32 GFLOP/s per rank for MFU; 0 = measure with the FMA probe at start"),
      field_of("kernels.huge_pages", &C::kernels, &KernelsConfig::huge_pages,
           "Ask Linux for huge pages (madvise MADV_HUGEPAGE; 2 MiB on x86-64) under the parameter, gradient, "
           "activation and Adam-moment arenas of 64 MiB or more: fewer TLB misses in every pass over them; takes effect where "
           "/sys/kernel/mm/transparent_hugepage/enabled is madvise or always; results are identical either way"),
  };
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

const std::vector<Field>& registry() {
  static const std::vector<Field> fields = make_registry();  // immutable after first use
  return fields;
}

const Field* find_field(const std::string& key) {
  for (const auto& f : registry())
    if (f.key == key) return &f;
  return nullptr;
}

std::string nearest_key(const std::string& key) {
  // Compare with the full key and with the leaf name, so "lrr" finds "optimizer.lr" and
  // "optimzer.lr" finds "optimizer.lr".
  const auto leaf = [](const std::string& k) { return k.substr(k.rfind('.') + 1); };
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& f : registry()) {
    const size_t d = std::min(edit_distance(key, f.key), edit_distance(leaf(key), leaf(f.key)) + 1);
    if (d < best_d) {
      best_d = d;
      best = f.key;
    }
  }
  return best;
}

}  // namespace hokusai::config_detail
