// Hugging Face model directories into hokusai: `hokusai import HF_DIR OUT_RUN` and
// `hokusai train CONFIG --init-from HF_DIR`.
//
// The directory's config.json (GPT2LMHeadModel or LlamaForCausalLM) gives the model section
// (hf_model_config); its safetensors (model.safetensors, or the shards named by
// model.safetensors.index.json; F32, BF16 or F16) are read through the inverse of the export's
// tensor map (ckpt/hf_export.hpp) into the serial parameter arena of a model section, every name
// and shape checked: a missing tensor, a tensor of another shape or an unknown tensor is one line
// naming the file, the tensor, the expected and the found shape. The vocabulary padding rows are
// zero (never a target: the loss and sampling use the real vocabulary only).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/hf_export.hpp"
#include "hokusai/config.hpp"

namespace hokusai {

namespace safetensors {
class Reader;
struct TensorInfo;
}  // namespace safetensors

// The model section config.json describes. Throws ConfigError naming config.json and the field
// (a missing field, an architecture, activation or rotary scaling hokusai does not train).
ModelConfig hf_model_config(const std::string& hf_dir);

// A Hugging Face directory opened as the weights of `model`'s serial tensors: the files are
// mapped, every name, shape and dtype checked at construction (ConfigError, one line), nothing
// read until asked. read_rows gives rows [row_begin, row_end) of a serial tensor (hokusai's name
// and layout, fp32; rows beyond the real vocabulary zero), so a rank of a parallel layout reads
// only the rows its slices need, never the whole model.
class HfWeights {
 public:
  HfWeights(const std::string& hf_dir, const ModelConfig& model);
  ~HfWeights();
  HfWeights(const HfWeights&) = delete;
  HfWeights& operator=(const HfWeights&) = delete;
  void read_rows(const std::string& name, int64_t row_begin, int64_t row_end, float* out) const;

 private:
  struct Piece {  // one file tensor holding rows of a serial tensor
    HfTensor map;
    const safetensors::Reader* reader;
    const safetensors::TensorInfo* info;
  };
  static std::unique_ptr<safetensors::Reader> open_reader(const std::string& path);
  std::string dir_;
  std::map<std::string, std::unique_ptr<safetensors::Reader>> readers_;  // file -> reader
  std::map<std::string, std::vector<Piece>> pieces_;                      // serial tensor -> pieces
  std::map<std::string, int64_t> cols_;                                   // serial tensor -> columns
};

// The serial parameter arena (ModelDims::from(model, single grid)) filled from the directory.
std::vector<float> read_hf_params(const std::string& hf_dir, const ModelConfig& model);

// Writes the directory as a hokusai serial checkpoint of step 0 (no optimizer state) into
// out_run/checkpoints/, with `cfg` (its model section replaced by config.json's when
// from_hf_config) as its config. Returns the checkpoint directory.
std::string import_hf(const std::string& hf_dir, const std::string& out_run, Config cfg, bool from_hf_config);

}  // namespace hokusai
