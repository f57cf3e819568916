#include "parallel/gradient_sync.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "kernels/ops.hpp"

namespace hokusai::parallel {

GradientSync::GradientSync(const comm::GridComms& comms, Model<float>& model, const Config& cfg)
    : comms_(comms), model_(model), n_params_(arena_size(model.table())), dp_algorithm_setting_(name_of(cfg.comm.dp_allreduce)) {
  shard_ = {0, n_params_};
  const ModelDims& d = model.dims();
  const int dp = comms_.dp.size();
  if (comms_.pp.size() > 1 && d.tied && (d.has_embedding || d.has_head))
    for (const TensorSpec& t : model.table())
      if (t.name == "wte") tied_wte_ = {t.offset, t.offset + t.numel};
  zero1_ = cfg.parallel.zero1 && dp > 1;
  if (zero1_) shard_ = comm::split_evenly(n_params_, dp, comms_.dp.rank());
  const comm::AllreduceAlgorithm a = cfg.comm.dp_allreduce;
  if (dp > 1) {
    const auto why = [&] {
      return comms_.placement.description.empty() ? std::string("no placement") : comms_.placement.description.back();
    };
    if (a == comm::AllreduceAlgorithm::torus && !comms_.dp_torus)
      throw ConfigError("comm.dp_allreduce: torus, but the dp groups are not laid on comm.topology with one rank "
                        "per node (" + why() + "): choose automatic or another algorithm");
    if (a == comm::AllreduceAlgorithm::hierarchical && !comms_.dp_nodes)
      throw ConfigError("comm.dp_allreduce: hierarchical, but the dp groups do not have several ranks on each of "
                        "several nodes (" + why() + "): choose automatic or another algorithm");
    if (!zero1_) buckets_.emplace(comms_.dp, model.grads(), a, comms_.dp_torus.get(), comms_.dp_nodes.get());
  }
  algorithm_ = a;
}

// Each dp rank's part of `bucket`: its global shard cut to the bucket, relative to the bucket's
// start (empty where they do not meet).
std::vector<comm::Range> GradientSync::shard_chunks(comm::Range bucket) const {
  const int dp = comms_.dp.size();
  std::vector<comm::Range> chunks(static_cast<size_t>(dp));
  for (int q = 0; q < dp; ++q) {
    const comm::Range s = comm::split_evenly(n_params_, dp, q);
    const int64_t b = std::clamp(s.begin, bucket.begin, bucket.end), e = std::clamp(s.end, bucket.begin, bucket.end);
    chunks[size_t(q)] = {b - bucket.begin, e - bucket.begin};
  }
  return chunks;
}

// Tags: the bucket's position in this step (every rank reports the same ranges in the same
// order); gathers use a second range of tags.
constexpr int kScatterTag = 1, kGatherTag = 1 << 12;

void GradientSync::scatter(comm::Range bucket) {
  for (auto& h : scatters_)
    if (!h.done()) h.test();
  zero1_buckets_.push_back(bucket);
  if (scatter_scratch_.size() < scatters_.size() + 1) scatter_scratch_.emplace_back();
  scatters_.push_back(comm::AllreduceHandle::ring_reduce_scatter(comms_.dp, model_.grads().data() + bucket.begin,
                                                                 shard_chunks(bucket),
                                                                 kScatterTag + int(scatters_.size()),
                                                                 &scatter_scratch_[scatters_.size()]));
}

Model<float>::GradsReady GradientSync::on_ready() {
  deferred_.reset();
  zero1_buckets_.clear();
  if (buckets_ || zero1_)
    return [this](int64_t b, int64_t e) {
      // A tied wte shared by two stages is final only once the stages have summed it (finish).
      if (tied_wte_.size() > 0 && b <= tied_wte_.begin && tied_wte_.end <= e)
        deferred_ = comm::Range{b, e};
      else if (zero1_)
        scatter({b, e});
      else
        buckets_->ready(b, e);
    };
  return nullptr;
}

GradientSync::Exposed GradientSync::finish() {
  double exposed = 0.0;
  // Tied embeddings over a pipeline: the first stage's wte (input embedding) and the last
  // stage's copy (output projection) each hold part of the gradient; both take the sum, so both
  // apply the same update and stay equal.
  // The ring on a kept receive buffer: the wte's gradient is tens to hundreds of MB, and a fresh
  // buffer every step cost its first-touch faults again.
  const double t_tied = comm::wall_time();
  if (tied_wte_.size() > 0 && comms_.embed.size() > 1)
    comm::AllreduceHandle(comms_.embed, model_.grads().data() + tied_wte_.begin, tied_wte_.size(), comm::ReduceOp::sum,
                          comm::AllreduceAlgorithm::ring, /*tag=*/1, nullptr, &tied_scratch_)
        .wait();
  const double tied = comm::wall_time() - t_tied;
  if (buckets_) {
    if (deferred_) buckets_->ready(deferred_->begin, deferred_->end);
    exposed = buckets_->finish();
  }
  if (zero1_) {  // each rank needs only its shard of the summed gradient
    if (deferred_) scatter(*deferred_);
    int64_t covered = 0;
    for (const comm::Range& b : zero1_buckets_) covered += b.size();
    if (covered != n_params_)  // every parameter's gradient must be reduced before its shard steps
      throw std::logic_error("ZeRO-1: backward reported " + std::to_string(covered) + " of " +
                             std::to_string(n_params_) + " gradients final");
    const double t0 = comm::wall_time();
    for (auto& h : scatters_) h.wait();
    scatters_.clear();
    exposed = comm::wall_time() - t0 + std::exchange(gather_wait_s_, 0.0);
  }
  return {tied, exposed};
}

double GradientSync::grad_norm(const ComputeContext& ctx) const {
  const float* g = model_.grads().data();
  double split = 0.0, replicated = 0.0;
  for (const TensorSpec& t : model_.table()) {
    const int64_t b = std::max(t.offset, shard_.begin), e = std::min(t.offset + t.numel, shard_.end);
    if (b >= e || t.tied_copy) continue;
    (t.tp_sharded ? split : replicated) += kernels::sum_squares(g + b, e - b);
  }
  if (ctx.tp) ctx.tp->sum_f64(&split, 1);
  double sq = split + replicated;
  // Pipeline stages hold different tensors: their sums add up; ZeRO-1 shards too.
  sq = comms_.pp.allreduce(sq, comm::Reduce::sum);
  if (zero1_) sq = comms_.dp.allreduce(sq, comm::Reduce::sum);
  return std::sqrt(sq);
}

void GradientSync::after_step(float* params) {
  if (!zero1_) return;
  // Every rank's updated shard, bucket by bucket in the order forward reads them.
  std::vector<comm::Range> order = zero1_buckets_;
  std::sort(order.begin(), order.end(), [](const comm::Range& a, const comm::Range& b) { return a.begin < b.begin; });
  for (const comm::Range& bucket : order)
    gathers_.emplace_back(bucket, comm::AllreduceHandle::ring_allgather(comms_.dp, params + bucket.begin, shard_chunks(bucket),
                                                                        kGatherTag + int(gathers_.size())));
}

std::function<void(int64_t, int64_t)> GradientSync::params_gate() {
  if (!zero1_) return nullptr;
  return [this](int64_t begin, int64_t end) {
    if (gathers_.empty()) return;
    const double t0 = comm::wall_time();
    for (auto& [range, h] : gathers_) {
      if (range.begin < end && begin < range.end)
        h.wait();
      else if (!h.done())
        h.test();
    }
    gather_wait_s_ += comm::wall_time() - t0;
    if (std::all_of(gathers_.begin(), gathers_.end(), [](const auto& g) { return g.second.done(); })) gathers_.clear();
  };
}

void GradientSync::complete_params() {
  for (auto& [range, h] : gathers_) h.wait();
  gathers_.clear();
  // A checkpoint follows, whose Adam-state gather takes the place of the reduce-scatter's
  // buffers (plan::MemoryAccount::peak): free them; the next step allocates them again.
  scatter_scratch_.clear();
}

std::vector<float> GradientSync::gather_shards(const std::vector<float>& shard_state) const {
  if (zero1_) return comms_.dp.gather_even(shard_state, n_params_, 0);
  return {};
}

GradientSync::Timed GradientSync::measure_blocking_allreduce() {
  if (comms_.dp.size() == 1) return {};
  model_.zero_grads();
  comms_.dp.barrier();
  const double t0 = comm::wall_time();
  const comm::AllreduceAlgorithm algo =
      comm::resolve_allreduce(algorithm_, 4 * n_params_, comms_.dp.size(), comms_.dp_layout());
  float* g = model_.grads().data();
  if (algo == comm::AllreduceAlgorithm::torus)
    comm::allreduce_torus(*comms_.dp_torus, g, n_params_, comm::ReduceOp::sum);
  else if (algo == comm::AllreduceAlgorithm::hierarchical)
    comm::allreduce_hierarchical(*comms_.dp_nodes, g, n_params_, comm::ReduceOp::sum);
  else
    comm::allreduce(comms_.dp, g, n_params_, comm::ReduceOp::sum, algo);
  return {comm::wall_time() - t0, std::string(name_of(algo))};
}

std::vector<std::string> GradientSync::describe() const {
  std::vector<std::string> lines;
  if (tied_wte_.size() > 0)
    lines.push_back(fmt::format("comm: tied-embedding gradient sum over the first and last stage ({:.1f} MB): ring",
                                4e-6 * double(tied_wte_.size())));
  const int dp = comms_.dp.size();
  if (dp > 1 && zero1_)
    lines.push_back(fmt::format("comm: dp gradient reduce-scatter and parameter allgather over {} ranks: ring, in "
                                "per-layer buckets (reduce-scatter overlapped with backward, allgather with the "
                                "next forward)",
                                dp));
  if (dp > 1 && !zero1_) {
    std::string where;
    if (comms_.dp_torus) where = " on torus " + comms_.dp_torus->torus().to_string();
    if (comms_.dp_nodes)
      where = fmt::format(" on {} nodes of {} ranks{}", comms_.dp_nodes->across().size(),
                          comms_.dp_nodes->node().size(),
                          comms_.dp_nodes->across_torus()
                              ? " (torus " + comms_.dp_nodes->across_torus()->torus().to_string() + ")"
                              : std::string());
    lines.push_back(fmt::format(
        "comm: dp gradient allreduce over {} ranks{} ({:.1f} MB arena in per-layer buckets): {} (comm.dp_allreduce: {})",
        dp, where, 4e-6 * double(n_params_),
        algorithm_ == comm::AllreduceAlgorithm::automatic
            ? comm::describe_policy(0, 4 * n_params_, dp, comms_.dp_layout())
            : std::string(name_of(algorithm_)),
        dp_algorithm_setting_));
  }
  return lines;
}

}  // namespace hokusai::parallel
