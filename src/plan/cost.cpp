#include "plan/cost.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <fmt/format.h>
#include <stdexcept>

#include "comm/collectives.hpp"
#include "comm/grid.hpp"
#include "comm/placement.hpp"
#include "kernels/peak.hpp"
#include "comm/torus.hpp"
#include "hokusai/model.hpp"
#include "plan/network.hpp"
#include "parallel/schedule.hpp"

namespace hokusai::plan {

namespace {

constexpr double kMiB = 1.0 / (1 << 20), kGiB = 1.0 / (1 << 30);

}  // namespace

double precision_speedup(const MachineSpec& m, kernels::Precision p) {
  if (!kernels::sixteen_bit_unit_can_exist(p)) return 1.0;  // fp16: the file's peak is fp16-accumulating
  const double peak = m.peak_gflops_bf16;
  if (m.peak_gflops_fp32 <= 0 || peak < kernels::kSixteenBitWorthIt * m.peak_gflops_fp32) return 1.0;
  return peak / m.peak_gflops_fp32;
}

ModelDims stage_dims(const Config& cfg, int stage) {
  const comm::GridShape shape{cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.dp};
  const comm::ParallelGrid grid(shape, shape.world(), shape.tp * shape.dp * stage);
  ModelDims d = ModelDims::from(cfg.model, grid, cfg.parallel.stage_layers,
                                cfg.parallel.pp > 1 ? cfg.parallel.virtual_stages : 1);
  d.sequence_parallel = cfg.parallel.sequence_parallel && d.tp > 1;
  return d;
}

namespace {

int micro_batches(const Config& cfg) {
  return cfg.train.global_batch / (cfg.train.micro_batch * cfg.parallel.dp);
}

// Where a group's ranks sit: inside one node (the intra-node tier) or across nodes.
const LinkTier& tier(const MachineSpec& m, bool within_node) { return within_node ? m.intra_node : m.inter_node; }

// Allreduce of n bytes over p ranks (Thakur, Rabenseifner & Gropp; ../shared/REFERENCE.md) with
// algorithm `a` (already resolved: comm::resolve_allreduce), where the placement on a torus is not
// known. `torus_dims`: extents > 1 of the torus the group forms (the torus algorithm, priced by
// torus_allreduce_seconds).
double allreduce_seconds(const MachineSpec& m, double n, int p, bool within_node, const std::vector<int>& torus_dims,
                         comm::AllreduceAlgorithm algorithm) {
  if (p <= 1 || n <= 0) return 0.0;
  const LinkTier& t = tier(m, within_node);
  const double a = t.alpha_us * 1e-6, b = 1.0 / (t.bandwidth_gbs * 1e9), g = 1.0 / (t.reduce_gbs * 1e9);
  const double part = n * double(p - 1) / double(p), lg = std::ceil(std::log2(double(p)));
  if (algorithm == comm::AllreduceAlgorithm::torus && (within_node || torus_dims.empty()))
    algorithm = comm::AllreduceAlgorithm::rabenseifner;  // the trainer refuses it; priced as what a fix would pick
  switch (algorithm) {
    case comm::AllreduceAlgorithm::mpi: return lg * (a + n * b + n * g);
    case comm::AllreduceAlgorithm::ring: return 2.0 * (p - 1) * a + 2.0 * part * b + part * g;
    case comm::AllreduceAlgorithm::torus:
      return torus_allreduce_seconds(comm::Torus{torus_dims, true}, n, t, m.injection_gbs);
    default:  // Rabenseifner (and hierarchical)
      return 2.0 * lg * a + 2.0 * part * b + part * g;
  }
}

double p2p_seconds(const MachineSpec& m, double n, bool within_node) {
  const LinkTier& t = tier(m, within_node);
  return t.alpha_us * 1e-6 + n / (t.bandwidth_gbs * 1e9);
}

// A rank's `threads` threads while `busy` cores of its node compute (its own and the other
// ranks'). Products run at the rank's own thread count's measured rate, slowed by what each
// shape measured with every core busy (gemm_seconds); attention by the block's contention ratio;
// memory-bound ops share the bandwidth `busy` threads reach.
struct Cores {
  int threads = 1, busy = 1;
  double slowdown = 1.0;  // attention: contention(busy) / contention(threads)
  // The linears' table: train.precision's when the machine file has it measured, else the fp32
  // one with `products` = the speed-up the peaks promise (precision_speedup).
  std::string table = "fp32";
  double products = 1.0;
  // Attention's points: train.precision's where the file has them (attention_seconds falls back
  // to the fp32 ones; no peak ratio applies to attention, its inner products are small).
  std::string attention = "fp32";
  double share() const { return double(busy) / double(threads); }
};

double gemms_seconds(const MachineSpec& m, const std::vector<GemmCall>& calls, const Cores& c) {
  double t = 0;
  for (const GemmCall& g : calls) t += gemm_seconds(m, g.ops, g.m, g.n, g.k, c.threads, c.busy, c.table);
  return t / c.products;
}

struct LayerTimes {
  double forward = 0, backward = 0, attention_forward = 0;
};

LayerTimes layer_seconds(const MachineSpec& m, const ModelDims& d, const Config& cfg, Cores c) {
  const int64_t B = cfg.train.micro_batch, T = cfg.train.seq_len, N = B * T;
  const std::string kind(name_of(cfg.kernels.attention));
  LayerTimes t;
  const ElementwiseBytes eb = elementwise_bytes(d, N);
  t.attention_forward = attention_seconds(m, kind, false, B * d.NH, T, d.HS, c.threads, c.attention) * c.slowdown;
  t.forward = gemms_seconds(m, layer_gemms(d, N, false), c) + t.attention_forward +
              op_seconds(m, eb.forward, c.busy) * c.share();
  t.backward = gemms_seconds(m, layer_gemms(d, N, true), c) +
               attention_seconds(m, kind, true, B * d.NH, T, d.HS, c.threads, c.attention) * c.slowdown +
               op_seconds(m, eb.backward, c.busy) * c.share();
  return t;
}

std::string gib(double bytes) { return fmt::format("{:.2f} GiB", bytes * kGiB); }

}  // namespace

namespace {

// One linear (N tokens, IC in, OC out), as model/layers.cpp calls the GEMM: forward NT; backward
// the input gradient NN and the weight gradient TN.
void linear_gemms(std::vector<GemmCall>& out, int64_t N, int64_t IC, int64_t OC, bool backward) {
  if (!backward) return out.push_back({"NT", N, OC, IC});
  out.push_back({"NN", N, IC, OC});
  out.push_back({"TN", OC, IC, N});
}

}  // namespace

std::vector<GemmCall> layer_gemms(const ModelDims& d, int64_t N, bool backward) {
  const int64_t A = d.NH * d.HS, FC = d.family == Family::gpt2 ? d.F : 2 * d.F;
  std::vector<GemmCall> g;
  linear_gemms(g, N, d.C, d.qkv_rows(), backward);
  linear_gemms(g, N, A, d.C, backward);
  linear_gemms(g, N, d.C, FC, backward);
  linear_gemms(g, N, d.F, d.C, backward);
  return g;
}

std::vector<GemmCall> head_gemms(const ModelDims& d, int64_t N, bool backward) {
  std::vector<GemmCall> g;
  const int64_t rows = head_block_rows(N);
  for (int64_t r0 = 0; r0 < N; r0 += rows) linear_gemms(g, std::min(rows, N - r0), d.C, d.Vl, backward);
  return g;
}

ElementwiseBytes elementwise_bytes(const ModelDims& d, int64_t N) {
  const double n = double(N), C = double(d.C), F = double(d.F), QKV = double(d.qkv_rows()), A = double(d.NH * d.HS);
  ElementwiseBytes e;
  if (d.family == Family::gpt2)  // 2 LayerNorms, 4 biases, 2 residual adds, GELU
    e.forward = 4.0 * n * (14.0 * C + 2.0 * QKV + 4.0 * F);
  else  // 2 RMSNorms, 2 residual adds, rotary on q and k, SwiGLU
    e.forward = 4.0 * n * (10.0 * C + 2.0 * double(d.NH + d.KV) * double(d.HS) + 3.0 * F);
  // Backward: each op reads its saved input and the output gradient and writes the input gradient
  // (about twice the forward's traffic), plus the gradient buffers zeroed before accumulation.
  const double FC = d.family == Family::gpt2 ? F : 2.0 * F;
  e.backward = 2.0 * e.forward + 4.0 * n * (4.0 * C + F + FC + A + QKV);
  return e;
}

namespace {

// The token rows a pipeline boundary carries (Model::boundary_rows), on tp rank 0 (the largest
// block under sequence parallelism).
int64_t boundary_rows(const ModelDims& d, int64_t N) {
  return d.sequence_parallel ? comm::split_evenly(N, d.tp, 0).size() : N;
}

}  // namespace

Recompute stage_recompute(const Config& cfg, int stage) {
  const auto& rs = cfg.parallel.recompute_stages;
  if (rs.empty() || std::find(rs.begin(), rs.end(), stage) != rs.end()) return cfg.parallel.recompute;
  return Recompute::none;
}

MemoryAccount stage_memory(const Config& cfg, int stage, Recompute recompute) {
  const ModelDims d = stage_dims(cfg, stage);
  const int P = cfg.parallel.pp, dp = cfg.parallel.dp, v = d.chunks;
  const int64_t n = arena_size(param_table(d)), B = cfg.train.micro_batch, T = cfg.train.seq_len, N = B * T;
  const int slots = parallel::pipeline_slots(P, stage, micro_batches(cfg), v);
  // The pipeline's buffers (parallel/pipeline.cpp): the received output gradient (N·C) and one
  // pending send of the input gradient (the boundary's rows: N/tp under sequence parallelism)
  // where they exist, the slots' tokens and targets.
  const int64_t boundary = boundary_rows(d, N);
  int64_t pipe = 8 * int64_t(slots) * N;
  if (P > 1 && (stage < P - 1 || v > 1)) pipe += 4 * N * d.C;
  if (P > 1 && (stage > 0 || v > 1)) pipe += 4 * boundary * d.C;
  return account_memory({.params = n,
                         .optimizer_params = cfg.parallel.zero1 ? (n + dp - 1) / dp : n,
                         .activation_bytes = Model<float>::activation_bytes(d, B, T, slots, recompute,
                                                                            cfg.kernels.attention,
                                                                            cfg.train.precision),
                         .pipeline_bytes = pipe,
                         .dp = dp,
                         .zero1 = cfg.parallel.zero1,
                         .dp_rank_zero = true,
                         .async_snapshot = cfg.checkpoint.async});
}

std::string StagePlan::largest_memory_term() const {
  const auto [name, bytes] = mem.largest();
  return fmt::format("{} {}", name, gib(bytes));
}

double Plan::peak_bytes() const {
  double most = 0;
  for (const StagePlan& s : stages) most = std::max(most, s.mem.peak());
  return most;
}

Plan plan_run(const Config& cfg, const MachineSpec& m, int nodes) {
  Plan p;
  p.cfg = cfg;
  const int tp = cfg.parallel.tp, P = cfg.parallel.pp, dp = cfg.parallel.dp, world = tp * P * dp;
  if (nodes <= 0) nodes = m.max_nodes == 1 ? 1 : std::max(1, world / m.ranks_per_node);
  if (nodes > m.max_nodes)
    throw std::invalid_argument(fmt::format("plan: {} nodes but the machine file describes at most {} (max_nodes)",
                                            nodes, m.max_nodes));
  if (world % nodes != 0)
    throw std::invalid_argument(fmt::format("plan: {} ranks (tp {} x pp {} x dp {}) do not divide over {} nodes", world,
                                            tp, P, dp, nodes));
  p.nodes = nodes;
  p.ranks_per_node = world / nodes;
  p.threads = cfg.kernels.threads > 0 ? cfg.kernels.threads : std::max(1, m.cores_per_node / p.ranks_per_node);
  p.micro_batches = micro_batches(cfg);
  p.node_memory_bytes = m.memory_gib / kGiB / p.ranks_per_node;
  const int64_t B = cfg.train.micro_batch, T = cfg.train.seq_len, N = B * T;
  const int m_ = p.micro_batches, threads = p.threads;
  const int busy = std::min(m.cores_per_node, p.ranks_per_node * threads);
  const std::string precision(name_of(cfg.train.precision));
  const bool measured = has_gemm_table(m, precision);
  const Cores cores_{threads, busy, contention(m, busy) / contention(m, threads), measured ? precision : "fp32",
                     measured ? 1.0 : precision_speedup(m, cfg.train.precision), precision};
  const double share = cores_.share(), factor = compute_factor(m, threads);
  // Groups inside a node: tp ranks are consecutive; a stage's neighbour is tp·dp ranks away; a
  // dp group spans the nodes unless the whole job fits one node.
  const bool tp_local = tp <= p.ranks_per_node, pp_local = nodes == 1 || tp * dp < p.ranks_per_node,
             dp_local = nodes == 1;
  std::vector<int> dp_torus;
  std::optional<TorusNetwork> net;      // the nodes' torus, when the run's placement on it is known
  std::vector<int> node_of;             // grid rank -> node
  bool dp_hierarchical = false;         // several dp ranks per node: GradientSync's hierarchical allreduce
  // The run's torus: the config's, else the machine's ("pjm": the shape a PJM job of this many
  // nodes is given, as `hokusai jobscript` asks for it).
  std::string topology = cfg.comm.topology != "flat" ? cfg.comm.topology : m.topology;
  if (topology == "pjm") {
    topology.clear();
    for (int k : comm::pjm_shape(nodes, tp)) topology += (topology.empty() ? "" : "x") + std::to_string(k);
  }
  if (!dp_local && topology != "flat") {
    comm::Machine mach{world, p.ranks_per_node, comm::Torus::parse(topology), {}};
    if (mach.torus->nodes() == nodes) {
      const comm::Placement pl = comm::place({tp, P, dp}, mach);
      for (int k : pl.dp_torus.dims)
        if (k > 1) dp_torus.push_back(k);
      if (!dp_torus.empty()) p.torus = pl.dp_torus.to_string();
      net.emplace(*mach.torus, m.inter_node, m.intra_node);
      dp_hierarchical = pl.dp_per_node > 1 && dp > pl.dp_per_node;
      node_of.assign(size_t(world), 0);
      for (int r = 0; r < world; ++r) node_of[size_t(pl.grid_rank[size_t(r)])] = r / p.ranks_per_node;
    }
  }
  // Every group of one kind (tp, dp, or one pipeline) as the nodes of its ranks in group order.
  const auto groups = [&](std::vector<int> (comm::ParallelGrid::*members)() const) {
    std::vector<std::vector<int>> out;
    std::vector<bool> seen(size_t(world), false);
    for (int r = 0; r < world; ++r) {
      if (seen[size_t(r)]) continue;
      std::vector<int> nodes_of;
      for (int g : (comm::ParallelGrid({tp, P, dp}, world, r).*members)()) seen[size_t(g)] = true, nodes_of.push_back(node_of[size_t(g)]);
      out.push_back(std::move(nodes_of));
    }
    return out;
  };
  // Collectives on the torus, priced from their messages (plan/network.hpp), all groups at once.
  // The algorithms are the config's comm.tp_allreduce and comm.dp_allreduce, resolved per size
  // as the trainer resolves them.
  std::map<comm::AllreduceAlgorithm, Price> tp_prices;
  const auto tp_algorithm = [&](double bytes) {
    return comm::resolve_allreduce(cfg.comm.tp_allreduce, int64_t(bytes), tp, comm::Layout::flat);
  };
  const auto tp_seconds = [&](double bytes) {
    const comm::AllreduceAlgorithm a = tp_algorithm(bytes);
    const bool patterned = a == comm::AllreduceAlgorithm::ring || a == comm::AllreduceAlgorithm::rabenseifner ||
                           a == comm::AllreduceAlgorithm::mpi;
    if (!net || tp_local || !patterned) return allreduce_seconds(m, bytes, tp, tp_local, {}, a);
    auto it = tp_prices.find(a);
    if (it == tp_prices.end())
      it = tp_prices.emplace(a, net->price(on_nodes(allreduce_steps(a, tp), groups(&comm::ParallelGrid::tp_group)))).first;
    const double sums = a == comm::AllreduceAlgorithm::mpi ? std::ceil(std::log2(double(tp))) : double(tp - 1) / tp;
    return it->second.seconds(bytes) + bytes * sums / (m.inter_node.reduce_gbs * 1e9);
  };
  // The dp ring (ZeRO-1's reduce-scatter and allgather, or the handle's allreduce on a dp group
  // not laid as a torus): 2(p-1) steps of 1/p to the next dp rank.
  std::optional<Price> dp_ring;
  const auto dp_ring_seconds = [&](double bytes) {
    if (!dp_ring)
      dp_ring = net->price(on_nodes(allreduce_steps(comm::AllreduceAlgorithm::ring, dp), groups(&comm::ParallelGrid::dp_group)));
    return dp_ring->seconds(bytes) + bytes * double(dp - 1) / dp / (m.inter_node.reduce_gbs * 1e9);
  };
  const comm::Layout dp_layout =
      !dp_torus.empty() ? comm::Layout::torus : dp_hierarchical ? comm::Layout::nodes : comm::Layout::flat;
  // One pipeline transfer: every stage sends to the next at once, in every pipeline.
  std::optional<Price> pp_price;
  if (net && P > 1) {
    Step step;
    for (const std::vector<int>& pipe : groups(&comm::ParallelGrid::pp_group))
      for (int s = 0; s < P; ++s)
        if (s + 1 < P || stage_dims(cfg, 0).chunks > 1) step.push_back({pipe[size_t(s)], pipe[size_t((s + 1) % P)], 1.0});
    pp_price = net->price({step});
  }
  double core_seconds = 0;  // the node's work, for the time-sharing bound (one node's ranks)
  for (int s = 0; s < P; ++s) {
    StagePlan sp;
    sp.stage = s;
    sp.recompute = stage_recompute(cfg, s);
    sp.mem = stage_memory(cfg, s, sp.recompute);
    sp.mem.process = m.process_mib / kMiB;
    const ModelDims d = stage_dims(cfg, s);
    sp.layers = d.L;
    const LayerTimes lt = layer_seconds(m, d, cfg, cores_);
    sp.forward_s = double(d.L) * lt.forward;
    sp.backward_s = double(d.L) * lt.backward;
    if (sp.recompute == Recompute::selective) sp.recompute_s = double(d.L) * lt.attention_forward;
    if (sp.recompute == Recompute::full) sp.recompute_s = double(d.L) * lt.forward;
    const double act = 4.0 * double(N * d.C);
    const auto tp_allreduces = [&](double bytes, double count) {
      if (tp > 1)
        sp.transfers.push_back({"tp", std::string(name_of(tp_algorithm(bytes))), bytes, count, tp_seconds(bytes)});
    };
    if (d.sequence_parallel) {
      // An all-gather and a reduce-scatter move an allreduce's bytes on a ring, so each pair counts
      // as one allreduce: per layer, forward 2 gathers + 2 reduce-scatters, backward 4 gathers (the
      // branch gradients, the norms' outputs again) + 2 reduce-scatters = 5; per layer the norms'
      // weight gradients. Per stage: the head gathers the final norm's input,
      // the embedding its output's gradient — an all-gather moves half an allreduce's bytes, so
      // each counts as an allreduce of half the activation (pipeline boundaries carry the rows).
      // The norms' weight gradients (4C floats a layer) are summed once per step, in the last
      // micro-batch's backward: L / m per micro-batch.
      tp_allreduces(act, double(5 * d.L));
      tp_allreduces(4.0 * 4.0 * double(d.C), double(d.L) / double(m_));
      if (const int gathers = int(d.has_head) + int(d.has_embedding); gathers > 0) tp_allreduces(act / 2, gathers);
    } else {
      tp_allreduces(act, int(4 * d.L));  // attention and MLP outputs, forward; their inputs' gradients, backward
    }
    if (d.has_embedding) {
      sp.forward_s += op_seconds(m, 3.0 * act, cores_.busy) * share;
      sp.backward_s += op_seconds(m, 3.0 * act, cores_.busy) * share;
      // The vocabulary-parallel embedding: an all-reduce, or under sequence parallelism a
      // reduce-scatter to this rank's rows (half its bytes).
      tp_allreduces(d.sequence_parallel ? act / 2 : act, 1);
    }
    if (d.has_head) {
      // The final norm; the output projection and the cross-entropy over this rank's vocabulary
      // with their gradients, all in forward, a block of rows at a time (HeadPass::gradient);
      // backward runs the final norm's only.
      const int64_t rows = head_block_rows(N);
      const int blocks = int((N + rows - 1) / rows);
      sp.forward_s += gemms_seconds(m, head_gemms(d, N, false), cores_) + gemms_seconds(m, head_gemms(d, N, true), cores_) +
                      (op_seconds(m, 2.0 * act, cores_.busy) + xent_seconds(m, double(N * d.Vl), cores_.busy)) * share;
      sp.backward_s += op_seconds(m, 4.0 * act, cores_.busy) * share;
      const double block_rows = double(rows);
      tp_allreduces(act * block_rows / double(N), blocks);  // the input gradient of the vocabulary-parallel projection
      tp_allreduces(4.0 * block_rows, blocks);              // the cross-entropy's row maxima
      tp_allreduces(16.0 * block_rows, blocks);             // its sums (fp64) and target logits
    }
    sp.forward_s *= factor, sp.backward_s *= factor, sp.recompute_s *= factor;
    // Receive the input (forward) and the output's gradient (backward) per chunk: all but the
    // first virtual stage's input (stage 0) and the last one's gradient (stage P - 1).
    // Under sequence parallelism each tp rank sends only its rows (Model::boundary_rows).
    const double boundary = 4.0 * double(boundary_rows(d, N) * d.C);
    if (P > 1)
      sp.transfers.push_back({"pp", "p2p", boundary, double(2 * int(d.chunks) - (s == 0) - (s == P - 1)),
                              pp_price ? pp_price->seconds(boundary) : p2p_seconds(m, boundary, pp_local)});
    // Data parallelism: the gradient arena reduced (or reduce-scattered and the parameters
    // all-gathered under ZeRO-1: rings on the flat dp group) while the last backward runs.
    const double grads = 4.0 * double(arena_size(param_table(d)));
    if (dp > 1 && cfg.parallel.zero1) {
      // The ring's reduce-scatter and allgather halves: a ring allreduce's messages.
      sp.transfers.push_back({"dp_zero1", "ring", grads, 1,
                              net ? dp_ring_seconds(grads)
                                  : allreduce_seconds(m, grads, dp, dp_local, {}, comm::AllreduceAlgorithm::ring)});
    } else if (dp > 1) {
      comm::AllreduceAlgorithm a = comm::resolve_allreduce(cfg.comm.dp_allreduce, int64_t(grads), dp, dp_layout);
      if (a == comm::AllreduceAlgorithm::rabenseifner) a = comm::AllreduceAlgorithm::ring;  // the handle's
      sp.transfers.push_back({"dp", std::string(name_of(a)), grads, 1,
                              net && a == comm::AllreduceAlgorithm::ring
                                  ? dp_ring_seconds(grads)
                                  : allreduce_seconds(m, grads, dp, dp_local, dp_torus, a)});
    }
    for (const Transfer& t : sp.transfers)
      (t.group == "tp" ? sp.tp_comm_s : t.group == "pp" ? sp.pp_transfer_s : sp.dp_s) += t.count * t.seconds;
    // Tied embeddings over a pipeline: after backward the first and the last stage sum their wte
    // gradients (this rank's vocabulary slice), a blocking ring of two before the dp reduction.
    if (P > 1 && d.tied && (d.has_embedding || d.has_head)) {
      const double wte = 4.0 * double(d.Vl * d.C);
      const bool ends_local = nodes == 1 || int64_t(P - 1) * tp * dp < p.ranks_per_node;
      sp.tied_s = allreduce_seconds(m, wte, 2, ends_local, {}, comm::AllreduceAlgorithm::ring);
      sp.transfers.push_back({"tied", "ring", wte, 1, sp.tied_s});
    }
    // Across nodes the network moves the reduction during the last backward (dp_overlap of it).
    // On one node the ranks' own cores copy and sum its bytes inside their MPI calls: what the
    // overlap saves in waiting it costs in compute, so all of it counts (a Zen 5, 2026-12-03:
    // dp 2 and dp 2 + ZeRO-1 within +3.3% of the plan; docs/planning.md).
    const double last_bucket = sp.dp_s / double(d.L + 1);
    const double hidden = dp_local ? 0.0 : m.dp_overlap * sp.backward_s;
    sp.dp_exposed_s = std::max(last_bucket, sp.dp_s - hidden);
    if (dp == 1) sp.dp_exposed_s = 0;
    const double opt_params = cfg.parallel.zero1 ? sp.mem.optimizer / 8.0 : sp.mem.params / 4.0;
    sp.optimizer_s = optimizer_seconds(m, opt_params, cores_.busy) * share;
    core_seconds += double(tp * dp) * threads *
                    (m_ * (sp.forward_s + sp.backward_s + sp.recompute_s) + sp.optimizer_s) / nodes;
    p.stages.push_back(sp);
  }
  double sum = 0, most = 0, tail = 0;
  for (const StagePlan& s : p.stages) {
    sum += s.per_micro_batch();
    most = std::max(most, s.per_micro_batch());
    tail = std::max(tail, s.tied_s + s.dp_exposed_s + s.optimizer_s);
  }
  const int v = stage_dims(cfg, 0).chunks;
  p.pipeline_s = m_ * most + (sum - most) / v;
  p.bubble_s = p.pipeline_s - m_ * most;
  p.tail_s = tail;
  p.step_s = p.pipeline_s + p.tail_s;
  p.oversubscription = core_seconds / (double(m.cores_per_node) * p.step_s);
  const double time_shared = core_seconds / m.cores_per_node;
  if (time_shared > p.step_s) p.step_s = time_shared;
  const double tokens = double(cfg.train.global_batch) * double(T);
  p.tokens_per_s = tokens / p.step_s;
  const double cores = std::min(double(world) * threads, double(nodes) * m.cores_per_node);
  p.mfu = train_flops_per_token(cfg.model, T) * p.tokens_per_s / (m.peak_gflops_fp32 * 1e9 * cores);
  p.days = double(cfg.train.steps) * p.step_s / 86400.0;
  // What bounds the step: the slowest stage's terms over the step.
  const StagePlan& slow = *std::max_element(p.stages.begin(), p.stages.end(), [](const auto& a, const auto& b) {
    return a.per_micro_batch() < b.per_micro_batch();
  });
  const std::pair<const char*, double> terms[] = {
      {"compute", m_ * (slow.forward_s + slow.backward_s)}, {"recomputation", m_ * slow.recompute_s},
      {"tensor-parallel allreduces", m_ * slow.tp_comm_s}, {"pipeline transfers", m_ * slow.pp_transfer_s},
      {"pipeline bubble", p.bubble_s}, {"data-parallel reduction not hidden", slow.dp_exposed_s},
      {"optimizer", slow.optimizer_s}};
  p.limit = std::max_element(std::begin(terms), std::end(terms), [](const auto& a, const auto& b) {
              return a.second < b.second;
            })->first;
  if (time_shared > p.pipeline_s + p.tail_s) p.limit = "cores (the node's ranks time-share them)";
  return p;
}

namespace {

bool divides(int a, int b) { return a > 0 && b % a == 0; }

// Per stage the least recomputation that fits the rank's memory: none, then selective, then full.
// False when even full recomputation does not fit on some stage.
bool fit_recompute(Config& c, const MachineSpec& m, double per_rank) {
  c.parallel.recompute_stages.clear();
  std::vector<Recompute> modes;
  for (int s = 0; s < c.parallel.pp; ++s) {
    Recompute chosen = Recompute::full;
    for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full}) {
      MemoryAccount a = stage_memory(c, s, r);
      a.process = m.process_mib / kMiB;
      if (a.peak() <= per_rank) {
        chosen = r;
        break;
      }
    }
    modes.push_back(chosen);
  }
  // parallel.recompute is one mode with the stages that use it: the strongest mode chosen, on the
  // stages that chose anything (a stage that fits with selective but shares the list with full
  // ones gets full: the config cannot express a third set).
  const Recompute strongest = *std::max_element(modes.begin(), modes.end());
  c.parallel.recompute = strongest;
  if (strongest != Recompute::none && std::count(modes.begin(), modes.end(), Recompute::none) > 0)
    for (int s = 0; s < c.parallel.pp; ++s)
      if (modes[size_t(s)] != Recompute::none) c.parallel.recompute_stages.push_back(s);
  for (int s = 0; s < c.parallel.pp; ++s) {
    MemoryAccount a = stage_memory(c, s, stage_recompute(c, s));
    a.process = m.process_mib / kMiB;
    if (a.peak() > per_rank) return false;
  }
  return true;
}

}  // namespace

std::vector<Plan> search_layouts(const Config& cfg, const MachineSpec& m, int nodes) {
  if (nodes < 1 || nodes > m.max_nodes)
    throw std::invalid_argument(fmt::format("plan --search: {} nodes; the machine file describes 1 to {} (max_nodes)",
                                            nodes, m.max_nodes));
  const int ranks = nodes * (m.max_nodes == 1 ? std::max(1, cfg.parallel.tp * cfg.parallel.pp * cfg.parallel.dp)
                                              : m.ranks_per_node);
  const int heads = cfg.model.heads, kv = cfg.model.kv_heads ? cfg.model.kv_heads : heads;
  const int L = cfg.model.layers, G = cfg.train.global_batch;
  std::vector<Plan> out;
  for (int tp = 1; tp <= ranks; ++tp) {
    if (!divides(tp, ranks) || !divides(tp, heads) || !divides(tp, kv)) continue;
    for (int pp = 1; pp * tp <= ranks && pp <= L; ++pp) {
      if (!divides(pp, L) || !divides(tp * pp, ranks)) continue;
      const int dp = ranks / (tp * pp);
      for (int mb : {1, 2, 4, 8, 16}) {
        if (G % (mb * dp) != 0) continue;
        const int micro = G / (mb * dp);
        for (int v : {1, 2, 4}) {
          if (v > 1 && (pp == 1 || (L / pp) % v != 0 || micro % pp != 0)) continue;
          for (bool zero1 : {false, true})
            for (bool sequence : {false, true}) {  // sequence parallelism: less memory, more tp messages
              if ((zero1 && dp == 1) || (sequence && tp == 1)) continue;
              Config c = cfg;
              c.parallel.tp = tp, c.parallel.pp = pp, c.parallel.dp = dp, c.parallel.virtual_stages = v;
              c.parallel.zero1 = zero1, c.parallel.sequence_parallel = sequence, c.parallel.stage_layers.clear();
              c.train.micro_batch = mb;
              c.parallel.recompute = Recompute::none;
              try {
                const double per_rank = m.memory_gib / kGiB / (double(ranks) / nodes);
                fit_recompute(c, m, per_rank);
                out.push_back(plan_run(c, m, nodes));
              } catch (const std::invalid_argument&) {
                // a layout the model cannot take (e.g. vocabulary padding): not a candidate
              }
            }
        }
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Plan& a, const Plan& b) {
    if (a.fits() != b.fits()) return a.fits();
    return a.fits() ? a.step_s < b.step_s : a.peak_bytes() < b.peak_bytes();
  });
  return out;
}

namespace {

std::string layout_name(const Config& c) {
  std::string s = fmt::format("tp{} pp{} dp{}", c.parallel.tp, c.parallel.pp, c.parallel.dp);
  if (c.parallel.virtual_stages > 1 && c.parallel.pp > 1) s += fmt::format(" v{}", c.parallel.virtual_stages);
  if (c.parallel.zero1) s += " zero1";
  if (c.parallel.sequence_parallel && c.parallel.tp > 1) s += " sp";
  s += fmt::format(" mb{}", c.train.micro_batch);
  return s;
}

std::string recompute_name(const Config& c) {
  if (c.parallel.recompute == Recompute::none) return "none";
  std::string s(name_of(c.parallel.recompute));
  if (c.parallel.recompute_stages.empty()) return s + " (all stages)";
  s += " (stages ";
  for (size_t i = 0; i < c.parallel.recompute_stages.size(); ++i)
    s += fmt::format("{}{}", i ? "," : "", c.parallel.recompute_stages[i]);
  return s + ")";
}

}  // namespace

std::string format_plan(const Plan& p, const MachineSpec& m) {
  const Config& c = p.cfg;
  std::string o;
  o += fmt::format("plan: {} on {} node(s) of {} ({}; {})\n", c.source.empty() ? "config" : c.source, p.nodes,
                   m.name, m.cpu, m.source);
  o += fmt::format("layout: {}, {} rank(s) per node x {} thread(s), {} micro-batch(es) of {} x {} per step, recompute "
                   "{}, attention {}\n",
                   layout_name(c), p.ranks_per_node, p.threads, p.micro_batches, c.train.micro_batch,
                   c.train.seq_len, recompute_name(c), name_of(c.kernels.attention));
  if (c.train.precision != kernels::Precision::fp32) {
    const std::string p(name_of(c.train.precision));
    const std::string attention = has_attention_table(m, std::string(name_of(c.kernels.attention)), p)
                                      ? "attention from its measured " + p + " points"
                                      : "attention at its fp32 rate";
    const double x = precision_speedup(m, c.train.precision);
    if (has_gemm_table(m, p)) {
      o += fmt::format("precision: {} products from the machine file's measured {} table; {}\n", p, p, attention);
    } else if (x > 1.0) {
      o += fmt::format("precision: {} products at {:.2f}x the fp32 table (MODELLED from the peaks, {:.1f} / {:.1f} "
                       "GFLOP/s per core); {}\n",
                       p, x, m.peak_gflops_bf16, m.peak_gflops_fp32, attention);
    } else if (!kernels::sixteen_bit_unit_can_exist(c.train.precision)) {
      const std::string units =
          m.peak_gflops_fp16 > 0
              ? fmt::format("the machine file's fp16 peak, {:.1f} GFLOP/s per core, is of ", m.peak_gflops_fp16)
              : std::string("fp16 units have ");
      o += fmt::format("precision: {} products at the fp32 rate (fp16 inputs, fp32 accumulation: rounded panels on "
                       "the fp32 FMAs; {}FMAs that accumulate in fp16, which hokusai does not use); {}\n",
                       p, units, attention);
    } else {
      o += fmt::format("precision: {} products at the fp32 rate (no {} unit at >= {:.1f}x the fp32 peak in the machine "
                       "file: rounded panels on the fp32 kernel); {}\n",
                       p, p, kernels::kSixteenBitWorthIt, attention);
    }
  }
  o += fmt::format("memory per rank (GiB; the node has {:.2f} per rank):\n", p.node_memory_bytes * kGiB);
  o += fmt::format("  {:>5} {:>6} {:>9} {:>8} {:>8} {:>9} {:>11} {:>6} {:>8} {:>8} {:>8}  {}\n", "stage", "layers",
                   "recompute", "params", "grads", "optimizer", "activations", "comm", "process", "ckpt", "peak",
                   "verdict");
  for (const StagePlan& s : p.stages) {
    const double extra = s.mem.peak() - s.mem.steady();
    o += fmt::format("  {:>5} {:>6} {:>9} {:>8.2f} {:>8.2f} {:>9.2f} {:>11.2f} {:>6.2f} {:>8.2f} {:>8.2f} {:>8.2f}  {}\n",
                     s.stage, s.layers, name_of(s.recompute), s.mem.params * kGiB, s.mem.grads * kGiB,
                     s.mem.optimizer * kGiB, s.mem.activations * kGiB, s.mem.comm * kGiB, s.mem.process * kGiB,
                     extra * kGiB, s.mem.peak() * kGiB,
                     s.mem.peak() <= p.node_memory_bytes ? "fits"
                                                          : "DOES NOT FIT (largest: " + s.largest_memory_term() + ")");
  }
  o += "time per micro-batch (ms) and per step:\n";
  o += fmt::format("  {:>5} {:>9} {:>9} {:>9} {:>8} {:>8} | {:>8} {:>10} {:>9}\n", "stage", "forward", "backward",
                   "recompute", "tp_comm", "pp_xfer", "dp_comm", "dp_exposed", "optimizer");
  for (const StagePlan& s : p.stages)
    o += fmt::format("  {:>5} {:>9.2f} {:>9.2f} {:>9.2f} {:>8.2f} {:>8.2f} | {:>8.2f} {:>10.2f} {:>9.2f}\n", s.stage,
                     1e3 * s.forward_s, 1e3 * s.backward_s, 1e3 * s.recompute_s, 1e3 * s.tp_comm_s,
                     1e3 * s.pp_transfer_s, 1e3 * s.dp_s, 1e3 * s.dp_exposed_s, 1e3 * s.optimizer_s);
  o += fmt::format("step: {:.1f} ms = pipeline {:.1f} (bubble {:.1f}) + reduction and optimizer {:.1f}{}\n",
                   1e3 * p.step_s, 1e3 * p.pipeline_s, 1e3 * p.bubble_s, 1e3 * p.tail_s,
                   p.oversubscription > 1.0 ? fmt::format("; the ranks need {:.2f}x the node's cores (time-shared)",
                                                          p.oversubscription)
                                            : std::string());
  o += fmt::format("throughput: {:.1f} tokens/s, MFU {:.1f}% of {:.0f} GFLOP/s per core; {} steps: {:.2f} days; "
                   "limited by {}\n",
                   p.tokens_per_s, 100.0 * p.mfu, m.peak_gflops_fp32, c.train.steps, p.days, p.limit);
  o += p.fits() ? "memory: fits\n"
                : fmt::format("memory: DOES NOT FIT: peak {:.2f} GiB per rank against {:.2f} GiB\n",
                              p.peak_bytes() * kGiB, p.node_memory_bytes * kGiB);
  return o;
}

std::string format_search(const std::vector<Plan>& plans, const MachineSpec& m, size_t top) {
  size_t fitting = 0;
  for (const Plan& p : plans) fitting += p.fits();
  std::string o = fmt::format("search: {} layouts, {} fit in {} GiB per node; the best {} by predicted step time:\n",
                              plans.size(), fitting, m.memory_gib, std::min(top, fitting));
  o += fmt::format("  {:>4} {:<28} {:<22} {:>10} {:>12} {:>6} {:>9} {:>8}  {}\n", "rank", "layout", "recompute",
                   "step (s)", "tokens/s", "MFU", "peak GiB", "days", "limited by");
  size_t i = 0;
  for (const Plan& p : plans) {
    if (!p.fits() || i == top) break;
    o += fmt::format("  {:>4} {:<28} {:<22} {:>10.3f} {:>12.0f} {:>5.1f}% {:>9.2f} {:>8.2f}  {}\n", ++i,
                     layout_name(p.cfg), recompute_name(p.cfg), p.step_s, p.tokens_per_s, 100.0 * p.mfu,
                     p.peak_bytes() * kGiB, p.days, p.limit);
  }
  if (fitting == 0 && !plans.empty())
    o += fmt::format("  none fits: the smallest peak is {:.2f} GiB per rank ({}, {})\n", plans.front().peak_bytes() * kGiB,
                     layout_name(plans.front().cfg), recompute_name(plans.front().cfg));
  return o;
}

std::string plan_json(const Plan& p) {
  const Config& c = p.cfg;
  std::string o = fmt::format(
      "{{\"tp\": {}, \"pp\": {}, \"dp\": {}, \"virtual_stages\": {}, \"zero1\": {}, "
      "\"sequence_parallel\": {}, \"micro_batch\": {}, "
      "\"recompute\": \"{}\", \"nodes\": {}, \"ranks_per_node\": {}, \"threads\": {}, \"micro_batches\": {}, "
      "\"step_s\": {:.6g}, \"pipeline_s\": {:.6g}, \"bubble_s\": {:.6g}, \"tail_s\": {:.6g}, "
      "\"tokens_per_s\": {:.6g}, \"mfu\": {:.4f}, \"days\": {:.4g}, \"limit\": \"{}\", \"fits\": {}, "
      "\"node_memory_bytes\": {:.0f}, \"peak_bytes\": {:.0f}, \"torus\": \"{}\", \"stages\": [",
      c.parallel.tp, c.parallel.pp, c.parallel.dp, c.parallel.virtual_stages, c.parallel.zero1,
      c.parallel.sequence_parallel && c.parallel.tp > 1, c.train.micro_batch, recompute_name(c), p.nodes, p.ranks_per_node, p.threads, p.micro_batches, p.step_s, p.pipeline_s, p.bubble_s,
      p.tail_s, p.tokens_per_s, p.mfu, p.days, p.limit, p.fits(), p.node_memory_bytes, p.peak_bytes(), p.torus);
  for (size_t i = 0; i < p.stages.size(); ++i) {
    const StagePlan& s = p.stages[i];
    o += fmt::format(
        "{}{{\"stage\": {}, \"layers\": {}, \"recompute\": \"{}\", \"memory\": {{\"params\": {:.0f}, "
        "\"grads\": {:.0f}, \"optimizer\": {:.0f}, \"activations\": {:.0f}, \"comm\": {:.0f}, \"process\": {:.0f}, "
        "\"checkpoint_gather\": {:.0f}, \"snapshot\": {:.0f}, \"steady\": {:.0f}, \"peak\": {:.0f}}}, "
        "\"time_s\": {{\"forward\": {:.6g}, \"backward\": {:.6g}, \"recompute\": {:.6g}, \"tp_comm\": {:.6g}, "
        "\"pp_transfer\": {:.6g}, \"tied\": {:.6g}, \"dp\": {:.6g}, \"dp_exposed\": {:.6g}, \"optimizer\": {:.6g}}}, "
        "\"transfers\": [",
        i ? ", " : "", s.stage, s.layers, name_of(s.recompute), s.mem.params, s.mem.grads, s.mem.optimizer,
        s.mem.activations, s.mem.comm, s.mem.process, s.mem.checkpoint_gather, s.mem.snapshot, s.mem.steady(),
        s.mem.peak(), s.forward_s, s.backward_s, s.recompute_s, s.tp_comm_s, s.pp_transfer_s, s.tied_s, s.dp_s,
        s.dp_exposed_s, s.optimizer_s);
    for (size_t k = 0; k < s.transfers.size(); ++k) {
      const Transfer& t = s.transfers[k];
      o += fmt::format("{}{{\"group\": \"{}\", \"algorithm\": \"{}\", \"bytes\": {:.0f}, \"count\": {}, "
                       "\"seconds\": {:.6g}}}",
                       k ? ", " : "", t.group, t.algorithm, t.bytes, t.count, t.seconds);
    }
    o += "]}";
  }
  return o + "]}";
}

}  // namespace hokusai::plan
