// `hokusai export`: a checkpoint of any layout -> a Hugging Face model directory.
//
// What it writes (docs/checkpoints.md has the mapping table):
//   config.json             GPT2LMHeadModel or LlamaForCausalLM, from the run's config
//   generation_config.json  eos/bos ids of the tokenizer
//   model.safetensors       or model-0000k-of-0000n.safetensors + model.safetensors.index.json
//                           above max_shard_bytes; fp32, bf16 (nearest even) or fp16
//   tokenizer.model + tokenizer_config.json   for a SentencePiece tokenizer
//   README.md               what produced the directory, and how to feed the byte-level tokenizer
// Names and orientation: GPT-2's Conv1D weights are stored (in, out), so hokusai's (out, in)
// matrices are transposed, and its c_attn is hokusai's fused [q|k|v]; LLaMA's q/k/v/o and
// gate/up/down are separate (out, in) matrices cut from hokusai's fused qkv and [gate|up]. The
// vocabulary padding rows are dropped; a tied lm_head is left to tie_word_embeddings.
// A run of tp or pp > 1 is merged first (into OUT_DIR/.merge, removed afterwards).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckpt/safetensors.hpp"
#include "hokusai/config.hpp"

namespace hokusai {

struct ExportOptions {
  safetensors::DType dtype = safetensors::DType::F32;  // F32, BF16 or F16
  int64_t max_shard_bytes = int64_t(5) << 30;          // larger models are split into shards
};

struct ExportSummary {
  std::string checkpoint;           // the checkpoint directory exported
  int64_t step = 0, tensors = 0, bytes = 0;
  std::vector<std::string> files;   // written, relative to the output directory
};

// Throws std::runtime_error (or ConfigError) naming the file or tensor when the input is not a
// checkpoint of this build, or the output directory cannot be written.
ExportSummary export_hf(const std::string& run_or_checkpoint, const std::string& out_dir, const ExportOptions& opts);

// One hokusai (serial) tensor -> the Hugging Face tensors it becomes: name, shape and the source
// rows/transposition. Exposed for the docs' mapping table and the tests.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;  // Hugging Face shape
  std::string source;          // hokusai tensor
  int64_t row_begin = 0, rows = 0;  // the source rows taken (all its columns)
  bool transpose = false;      // (rows, cols) of the source stored as (cols, rows)
};
std::vector<HfTensor> hf_tensor_map(const ModelConfig& model);

}  // namespace hokusai
