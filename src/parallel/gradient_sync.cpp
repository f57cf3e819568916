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

Model<float>::GradsReady GradientSync::on_ready() {
  deferred_.reset();
  if (buckets_)
    return [this](int64_t b, int64_t e) {
      // A tied wte shared by two stages is final only once the stages have summed it (finish).
      if (tied_wte_.size() > 0 && b <= tied_wte_.begin && tied_wte_.end <= e)
        deferred_ = comm::Range{b, e};
      else
        buckets_->ready(b, e);
    };
  return nullptr;
}

double GradientSync::finish() {
  double exposed = 0.0;
  // Tied embeddings over a pipeline: the first stage's wte (input embedding) and the last
  // stage's copy (output projection) each hold part of the gradient; both take the sum, so both
  // apply the same update and stay equal.
  if (tied_wte_.size() > 0 && comms_.embed.size() > 1)
    comm::allreduce(comms_.embed, model_.grads().data() + tied_wte_.begin, tied_wte_.size(), comm::ReduceOp::sum);
  if (buckets_) {
    if (deferred_) buckets_->ready(deferred_->begin, deferred_->end);
    exposed = buckets_->finish();
  }
  if (zero1_) {  // each rank needs only its shard of the summed gradient
    const double t0 = comm::wall_time();
    comm::reduce_scatter_ring(comms_.dp, model_.grads().data(), n_params_, comm::ReduceOp::sum);
    exposed = comm::wall_time() - t0;
  }
  return exposed;
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
  if (zero1_) comm::allgather_ring(comms_.dp, params, n_params_);  // every rank's updated shard
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
    lines.push_back(fmt::format("comm: tied-embedding gradient sum over the first and last stage ({:.1f} MB): {}",
                                4e-6 * double(tied_wte_.size()),
                                comm::describe_policy(4 * tied_wte_.size(), 4 * tied_wte_.size(), 2, comm::Layout::flat)));
  const int dp = comms_.dp.size();
  if (dp > 1 && zero1_)
    lines.push_back(fmt::format("comm: dp gradient reduce-scatter and parameter allgather over {} ranks: ring", dp));
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
