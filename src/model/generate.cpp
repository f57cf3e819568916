#include "hokusai/generate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

namespace hokusai {

std::vector<int32_t> generate(Model<float>& model, const ComputeContext& ctx, std::vector<int32_t> ids,
                              int64_t context, const SamplingOptions& opts, int32_t end_of_document) {
  const ModelDims& d = model.dims();
  if (ids.empty()) ids.push_back(end_of_document);  // an empty prompt starts a new document
  std::mt19937_64 rng(opts.seed);
  std::vector<int32_t> out;
  std::vector<int32_t> targets(size_t(context), -1);  // no loss needed
  std::vector<double> probs(size_t(d.V));
  std::vector<int32_t> order(size_t(d.V));
  for (int64_t n = 0; n < opts.max_new_tokens; ++n) {
    const int64_t T = std::min<int64_t>(int64_t(ids.size()), context);
    const int32_t* window = ids.data() + (int64_t(ids.size()) - T);
    // Recomputes the whole window each token: simple and exact; a KV cache is not worth it at
    // the model sizes sampled on one rank.
    model.forward(ctx, window, targets.data(), 1, T);
    const float* logits = model.logits() + (T - 1) * d.Vl;
    int32_t next;
    if (opts.temperature <= 0) {
      next = int32_t(std::max_element(logits, logits + d.V) - logits);
    } else {
      std::iota(order.begin(), order.end(), 0);
      const int k = opts.top_k > 0 ? std::min<int>(opts.top_k, int(d.V)) : int(d.V);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
      const double mx = logits[order[0]];
      double sum = 0;
      for (int i = 0; i < k; ++i) sum += probs[size_t(i)] = std::exp((logits[order[size_t(i)]] - mx) / opts.temperature);
      double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
      int i = 0;
      while (i < k - 1 && (u -= probs[size_t(i)]) > 0) ++i;
      next = order[size_t(i)];
    }
    ids.push_back(next);
    out.push_back(next);
    if (opts.stop_at_end_of_document && next == end_of_document) break;
  }
  return out;
}

}  // namespace hokusai
