// Run configuration: typed structs filled from YAML, then `--set key=value` overrides, then
// validated. Precedence: defaults < file < --set. Every field is registered once (registry.cpp)
// with its key and doc, and that one registry drives YAML parsing, --set, --dump-config and
// docs/configuration.md. Fields with a fixed set of values are enums, each named once in its
// Names table (hokusai/names.hpp), which parsing, dumping, errors and the reference all read.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/algorithms.hpp"
#include "hokusai/names.hpp"
#include "kernels/gemm.hpp"

namespace hokusai {

enum class Family { gpt2, llama };

// Activation recomputation (parallel.recompute): what a forward keeps for backward.
//   none      every block's intermediate tensors;
//   selective all but the attention probabilities (B*NH*T*T) and weighted sum, recomputed from
//             the kept QKV in backward (Megatron's selective recomputation);
//   full      only each block's input; backward re-runs the block's forward first.
enum class Recompute { none, selective, full };

// kernels.attention: how causal self-attention is computed.
//   gemm   per (batch, head) the whole T x T scores through the GEMM, the probabilities saved
//          for backward (B x heads x T x T per layer): the reference;
//   flash  fused: key tiles against query tiles with an online softmax, only the log-sum-exp
//          saved (B x heads x T), probabilities recomputed tile by tile in backward.
enum class Attention { gemm, flash };

enum class Decay { cosine, linear, constant };  // schedule.decay

enum class TokenizerKind { byte, sentencepiece };  // data.tokenizer

// checkpoint.on_error: what a failed save (disk full, quota, I/O error) does. Either way the
// previous checkpoint and `latest` stay intact.
enum class OnSaveError { stop, keep_training };

template <>
struct Names<Family> {
  static constexpr std::array<std::pair<Family, std::string_view>, 2> table = {
      {{Family::gpt2, "gpt2"}, {Family::llama, "llama"}}};
};
template <>
struct Names<Attention> {
  static constexpr std::array<std::pair<Attention, std::string_view>, 2> table = {
      {{Attention::gemm, "gemm"}, {Attention::flash, "flash"}}};
};
template <>
struct Names<Recompute> {
  static constexpr std::array<std::pair<Recompute, std::string_view>, 3> table = {
      {{Recompute::none, "none"}, {Recompute::selective, "selective"}, {Recompute::full, "full"}}};
};
template <>
struct Names<Decay> {
  static constexpr std::array<std::pair<Decay, std::string_view>, 3> table = {
      {{Decay::cosine, "cosine"}, {Decay::linear, "linear"}, {Decay::constant, "constant"}}};
};
template <>
struct Names<OnSaveError> {
  static constexpr std::array<std::pair<OnSaveError, std::string_view>, 2> table = {
      {{OnSaveError::stop, "stop"}, {OnSaveError::keep_training, "continue"}}};
};
template <>
struct Names<TokenizerKind> {
  static constexpr std::array<std::pair<TokenizerKind, std::string_view>, 2> table = {
      {{TokenizerKind::byte, "byte"}, {TokenizerKind::sentencepiece, "sentencepiece"}}};
};

struct ModelConfig {
  Family family = Family::gpt2;
  int layers = 4;                // Transformer blocks (L)
  int hidden = 256;              // model width (C)
  int heads = 8;                 // attention heads (NH); head size = hidden / heads
  int kv_heads = 0;              // key/value heads (grouped-query attention, llama); 0 = heads
  int ffn_hidden = 0;            // MLP width (F); 0 = 4*hidden (gpt2) or 8/3*hidden rounded up (llama)
  int ffn_multiple_of = 64;      // llama's default F is rounded up to a multiple of this (Meta: 256)
  int vocab_size = 257;          // tokens the tokenizer produces (V)
  int vocab_pad_multiple = 64;   // pad V up to a multiple of this (times tp) for GEMM shapes
  int max_seq_len = 256;         // rows of the learned position table (gpt2) / longest sequence
  bool tie_embeddings = true;    // share the input embedding with the output projection
  double init_std = 0.02;        // std of the normal initialisation
  double norm_eps = 1e-5;        // epsilon of LayerNorm / RMSNorm
  double rope_theta = 10000.0;   // rotary base (llama)
};

struct ParallelConfig {
  int tp = 1;  // tensor-parallel ranks
  int pp = 1;  // pipeline stages
  int dp = 1;  // data-parallel replicas
  bool zero1 = false;  // shard Adam state over dp ranks (ZeRO-1)
  bool sequence_parallel = false;  // split the norms' and residuals' token rows over tp (Megatron)
  std::vector<int> stage_layers;  // layers per pipeline stage; empty = as even as possible
  int virtual_stages = 1;         // model chunks per stage: > 1 selects interleaved 1F1B
  Recompute recompute = Recompute::none;  // activation recomputation
  std::vector<int> recompute_stages;  // stages that recompute; empty = every stage
};

struct TrainConfig {
  int64_t steps = 1000;       // optimizer steps
  int micro_batch = 8;        // sequences per micro-batch per data-parallel rank
  int global_batch = 8;       // sequences per optimizer step over all ranks
  int seq_len = 128;          // tokens per sequence (T)
  uint64_t seed = 1234;       // initialisation and data order
  int skip_nonfinite = 0;     // non-finite steps skipped in a row before stopping (0: stop at the first)
  kernels::Precision precision = kernels::Precision::fp32;  // of the matrix products' inputs
  double loss_scale = 65536;        // fp16: the dynamic loss scale's start
  int64_t loss_scale_window = 1000; // fp16: steps without overflow before the scale doubles
};

struct OptimizerConfig {
  double lr = 3e-4;            // peak learning rate
  double min_lr = 3e-5;        // learning rate at the end of decay
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;   // decoupled (AdamW)
  bool decay_all = false;      // also decay norms, biases and embeddings
  double grad_clip = 1.0;      // clip by global norm; 0 disables
};

struct ScheduleConfig {
  int64_t warmup_steps = 100;  // linear warm-up from 0
  Decay decay = Decay::cosine;
  int64_t decay_steps = 0;     // steps from start to the end of decay; 0 = train.steps
};

// One input of a blend: a Megatron dataset prefix (PREFIX.bin + PREFIX.idx) or a .txt/.jsonl
// file (preprocessed once into the cache), and its sampling weight.
struct DataSource {
  std::string path;
  double weight = 1.0;
  bool operator==(const DataSource&) const = default;
};

struct DataConfig {
  std::vector<DataSource> paths = {{"data/corpus-en.txt", 1.0}};  // datasets and blend weights
  TokenizerKind tokenizer = TokenizerKind::byte;
  std::string tokenizer_model;       // SentencePiece .model file (tokenizer: sentencepiece)
  std::string split = "98,2,0";      // train,valid,test proportions, by documents
  std::string cache_dir;             // sample indexes and preprocessed text; "" = .hokusai-cache beside the data
  std::string json_key = "text";     // field holding the text in .jsonl inputs
};

struct CheckpointConfig {
  int64_t interval = 0;  // save every N steps (0: only at the end)
  int keep = 2;          // newest checkpoints kept (older ones deleted after a save succeeds)
  OnSaveError on_error = OnSaveError::stop;
  bool async = false;       // write in a background thread from a snapshot; the step goes on
  double mtbf_hours = 0;    // expected mean time between failures: interval advice (Young's rule)
};

struct LoggingConfig {
  int interval = 10;         // steps between log lines
  std::string run_dir;       // empty: runs/<config name>-<timestamp>
  int64_t eval_interval = 100;  // steps between validation passes (0: only at the end)
  int eval_batches = 8;      // micro-batches per validation pass
  bool progress = true;      // progress bar when stdout is a terminal
};

struct KernelsConfig {
  kernels::GemmBackend gemm = kernels::GemmBackend::native;  // native is ours
  Attention attention = Attention::flash;  // fused (O(T) memory) or the GEMM reference
  int threads = 0;                // OpenMP threads; 0 = OMP_NUM_THREADS or all cores
  double peak_gflops = 0.0;       // MFU denominator; 0 = probe the FMA throughput at start
  bool huge_pages = true;         // model arenas and Adam moments advised for transparent huge pages
};

// The machine under the grid and the collectives run on it (docs/communication.md).
struct CommConfig {
  std::string topology = "flat";  // torus of nodes: flat, 4x4x4x2x3x2, mesh:4x4
  std::string coordinates;        // node coordinates file (Fugaku vcoordfile style); "" = row-major
  int ranks_per_node = 0;         // 0 = from MPI's shared-memory split
  double timeout_s = 600.0;       // a rank without progress this long ends the job (0: never)
  double straggler_factor = 2.0;  // a rank computing this much slower than its stage's median ...
  int straggler_steps = 100;      // ... for this many steps in a row is reported (factor 0: never)
  comm::AllreduceAlgorithm tp_allreduce = comm::AllreduceAlgorithm::automatic;  // activation allreduce
  comm::AllreduceAlgorithm dp_allreduce = comm::AllreduceAlgorithm::automatic;  // gradient allreduce
};

struct Config {
  ModelConfig model;
  ParallelConfig parallel;
  CommConfig comm;
  TrainConfig train;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  DataConfig data;
  CheckpointConfig checkpoint;
  LoggingConfig logging;
  KernelsConfig kernels;

  std::string source;                          // file the config came from ("" = defaults)
  std::map<std::string, std::string> origin;   // key -> "file:line" or "--set", for messages
};

// Every user-facing configuration problem. what() is one line naming the key and what to do.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads `path` over the defaults. Throws ConfigError (missing file, YAML syntax, unknown key with
// the nearest valid key, wrong type) naming the file and line.
Config load_config(const std::string& path);
// The same from YAML text (e.g. a config another rank read); `origin` names it in messages.
Config load_config_text(const std::string& yaml, const std::string& origin);
// Applies "key=value" (value parsed as YAML); throws ConfigError naming the key.
void apply_override(Config& cfg, const std::string& assignment);
// Throws ConfigError for impossible values, naming the field(s).
void validate(const Config& cfg);
// Fills derived defaults (ffn_hidden = 0 ...). Idempotent; load_config callers run it after
// overrides and before validate.
void resolve(Config& cfg);

// The resolved config as YAML (every field, registry order).
std::string dump_config(const Config& cfg);
// Markdown reference of every field (docs/configuration.md is this output).
std::string config_reference_markdown();
// All registered keys, in registry order.
std::vector<std::string> config_keys();

// Derived sizes used everywhere.
int padded_vocab(const ModelConfig& m, int tp);

}  // namespace hokusai
