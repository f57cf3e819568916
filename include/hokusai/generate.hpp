// Sampling text from a trained model (single rank).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hokusai/model.hpp"

namespace hokusai {

struct SamplingOptions {
  int64_t max_new_tokens = 200;
  double temperature = 0.8;  // 0: greedy
  int top_k = 40;            // 0: whole vocabulary
  uint64_t seed = 1;
  bool stop_at_end_of_document = true;
};

// Continues `prompt` (token ids) with up to max_new_tokens tokens. The context is the last
// `context` tokens (the model's trained sequence length). Deterministic for a given seed.
std::vector<int32_t> generate(Model<float>& model, const ComputeContext& ctx, std::vector<int32_t> prompt,
                              int64_t context, const SamplingOptions& opts, int32_t end_of_document);

}  // namespace hokusai
