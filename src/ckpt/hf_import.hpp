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

#include <string>
#include <vector>

#include "hokusai/config.hpp"

namespace hokusai {

// The model section config.json describes. Throws ConfigError naming config.json and the field
// (a missing field, an architecture or activation hokusai does not train, grouped-query
// attention, which it does not have yet).
ModelConfig hf_model_config(const std::string& hf_dir);

// The serial parameter arena (ModelDims::from(model, single grid)) filled from the directory.
std::vector<float> read_hf_params(const std::string& hf_dir, const ModelConfig& model);

// Writes the directory as a hokusai serial checkpoint of step 0 (no optimizer state) into
// out_run/checkpoints/, with `cfg` (its model section replaced by config.json's when
// from_hf_config) as its config. Returns the checkpoint directory.
std::string import_hf(const std::string& hf_dir, const std::string& out_run, Config cfg, bool from_hf_config);

}  // namespace hokusai
