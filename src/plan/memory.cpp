#include "plan/memory.hpp"

#include <algorithm>
#include <iterator>

namespace hokusai::plan {

double MemoryAccount::peak() const { return steady() + std::max(0.0, checkpoint_gather - dp_scratch) + snapshot; }

std::pair<const char*, double> MemoryAccount::largest() const {
  const std::pair<const char*, double> terms[] = {{"parameters", params},
                                                  {"gradients", grads},
                                                  {"optimizer state", optimizer},
                                                  {"activations", activations},
                                                  {"communication buffers", comm},
                                                  {"checkpoint copies", checkpoint_gather + snapshot}};
  return *std::max_element(std::begin(terms), std::end(terms),
                           [](const auto& a, const auto& b) { return a.second < b.second; });
}

MemoryAccount account_memory(const MemoryInputs& in) {
  MemoryAccount a;
  a.params = 4.0 * double(in.params);
  a.grads = a.params;
  a.optimizer = 8.0 * double(in.optimizer_params);  // m and v
  a.activations = double(in.activation_bytes);
  a.dp_scratch = in.dp > 1 ? a.params / in.dp : 0.0;
  a.comm = double(in.pipeline_bytes) + a.dp_scratch;
  if (in.zero1 && in.dp_rank_zero) a.checkpoint_gather = 2.0 * a.params;
  // The async writer copies the parameters and the whole Adam state (12 bytes a parameter).
  if (in.async_snapshot && in.dp_rank_zero) a.snapshot = 3.0 * a.params;
  return a;
}

double pipeline_bubble(int stages, int chunks, int micro_batches) {
  return double(stages - 1) / double(chunks * micro_batches + stages - 1);
}

}  // namespace hokusai::plan
