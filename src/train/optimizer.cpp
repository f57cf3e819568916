#include <algorithm>
#include <cmath>

#include "hokusai/memory.hpp"
#include "hokusai/train.hpp"
#include "kernels/ops.hpp"

namespace hokusai {

double learning_rate(const Config& cfg, int64_t step) {
  const auto& s = cfg.schedule;
  const double lr = cfg.optimizer.lr, min_lr = cfg.optimizer.min_lr;
  if (s.warmup_steps > 0 && step <= s.warmup_steps) return lr * double(step) / double(s.warmup_steps);
  if (s.decay == Decay::constant) return lr;
  const int64_t end = s.decay_steps > 0 ? s.decay_steps : cfg.train.steps;
  if (step >= end || end <= s.warmup_steps) return min_lr;
  const double progress = double(step - s.warmup_steps) / double(end - s.warmup_steps);
  const double shape = s.decay == Decay::cosine ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return min_lr + (lr - min_lr) * shape;
}

AdamW::AdamW(const std::vector<TensorSpec>& table, const OptimizerConfig& cfg, comm::Range shard, bool huge_pages)
    : table_(table), cfg_(cfg), shard_(shard) {
  huge_page_bytes += int64_t(assign_zeroed(m, size_t(shard.size()), huge_pages));
  huge_page_bytes += int64_t(assign_zeroed(v, size_t(shard.size()), huge_pages));
}

void AdamW::step(float* params, const float* grads, double lr, double grad_scale) {
  ++t;
  // Consecutive tensors with the same decay flag form one call (fewer parallel regions), clipped
  // to the shard.
  size_t i = 0;
  while (i < table_.size()) {
    const bool decay = table_[i].decay || cfg_.decay_all;
    int64_t begin = table_[i].offset;
    int64_t end = begin + table_[i].numel;
    while (++i < table_.size() && (table_[i].decay || cfg_.decay_all) == decay) end += table_[i].numel;
    begin = std::max(begin, shard_.begin);
    end = std::min(end, shard_.end);
    if (end <= begin) continue;
    const kernels::AdamWParams hp{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, decay ? cfg_.weight_decay : 0.0, t, grad_scale};
    const int64_t local = begin - shard_.begin;
    kernels::adamw_update(params + begin, grads + begin, m.data() + local, v.data() + local, end - begin, hp);
  }
}

double clip_scale(double norm, double max_norm) {
  // Rounded to float here as the scaling pass it replaces rounded it: the same updates bit for bit.
  return max_norm > 0 && norm > max_norm ? double(float(max_norm / (norm + 1e-6))) : 1.0;
}

}  // namespace hokusai
