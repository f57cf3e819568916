#include "plan/machine.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <limits>
#include <stdexcept>
#include <tuple>

#include "kernels/gemm.hpp"

namespace hokusai::plan {

namespace {

template <typename T>
T field(const YAML::Node& n, const char* key, const std::string& where, T fallback) {
  const YAML::Node v = n[key];
  if (!v) return fallback;
  try {
    return v.as<T>();
  } catch (const YAML::Exception&) {
    throw std::runtime_error(fmt::format("{}: field '{}' (line {}) is not a {}", where, key, v.Mark().line + 1,
                                         std::is_same_v<T, std::string> ? "string" : "number"));
  }
}

LinkTier tier(const YAML::Node& n, const std::string& where) {
  LinkTier t;
  if (!n) return t;
  t.alpha_us = field(n, "alpha_us", where, t.alpha_us);
  t.bandwidth_gbs = field(n, "bandwidth_gbs", where, t.bandwidth_gbs);
  t.reduce_gbs = field(n, "reduce_gbs", where, t.reduce_gbs);
  if (t.alpha_us < 0 || t.bandwidth_gbs <= 0 || t.reduce_gbs <= 0)
    throw std::runtime_error(where + ": alpha_us must be >= 0 and bandwidth_gbs, reduce_gbs > 0");
  return t;
}

// A list of {threads, <unit>: value}; at least one entry.
std::vector<RatePoint> rates(const YAML::Node& y, const char* key, const char* unit, const std::string& path) {
  std::vector<RatePoint> out;
  for (const YAML::Node& b : y[key]) {
    RatePoint p{field(b, "threads", path, 1), field(b, unit, path, 0.0)};
    if (p.threads < 1 || p.value <= 0)
      throw std::runtime_error(fmt::format("{}: {} entry (line {}) needs threads >= 1 and {} > 0", path, key,
                                           b.Mark().line + 1, unit));
    out.push_back(p);
  }
  if (out.empty()) throw std::runtime_error(fmt::format("{}: {} needs at least one {{threads, {}}} entry", path, key, unit));
  return out;
}

// log-space distance of two sizes
bool is_precision_name(const std::string& s) { return value_named<kernels::Precision>(s).has_value(); }

double dist(double a, double b) { return std::abs(std::log(std::max(a, 1.0) / std::max(b, 1.0))); }

}  // namespace

MachineSpec load_machine(const std::string& path) {
  YAML::Node y;
  try {
    y = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw std::runtime_error(path + ": cannot read the machine file (see configs/machines/, or run hokusai calibrate)");
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(fmt::format("{}:{}: {}", path, e.mark.line + 1, e.msg));
  }
  if (!y.IsMap()) throw std::runtime_error(path + ": a machine file is a YAML map (see configs/machines/)");
  MachineSpec m;
  const std::string& w = path;
  m.name = field<std::string>(y, "name", w, "");
  m.cpu = field<std::string>(y, "cpu", w, "");
  m.source = field<std::string>(y, "source", w, "");
  m.cores_per_node = field(y, "cores_per_node", w, 0);
  m.ranks_per_node = field(y, "ranks_per_node", w, 1);
  m.max_nodes = field(y, "max_nodes", w, 1);
  if (const YAML::Node p = y["peak_gflops_per_core"]) {
    m.peak_gflops_fp32 = field(p, "fp32", w, 0.0);
    m.peak_gflops_bf16 = field(p, "bf16", w, 0.0);
    m.peak_gflops_fp16 = field(p, "fp16", w, 0.0);
  }
  m.memory_gib = field(y, "memory_gib", w, 0.0);
  m.process_mib = field(y, "process_mib", w, 0.0);
  m.gemm_efficiency = field(y, "gemm_efficiency", w, m.gemm_efficiency);
  m.attention_efficiency = field(y, "attention_efficiency", w, m.attention_efficiency);
  m.dp_overlap = field(y, "dp_overlap", w, m.dp_overlap);
  if (m.cores_per_node < 1) throw std::runtime_error(path + ": cores_per_node must be given and >= 1");
  if (m.ranks_per_node < 1 || m.max_nodes < 1)
    throw std::runtime_error(path + ": ranks_per_node and max_nodes must be >= 1");
  if (m.peak_gflops_fp32 <= 0) throw std::runtime_error(path + ": peak_gflops_per_core.fp32 must be given and > 0");
  if (m.memory_gib <= 0) throw std::runtime_error(path + ": memory_gib must be given and > 0");
  if (m.gemm_efficiency <= 0 || m.gemm_efficiency > 1 || m.attention_efficiency <= 0 || m.attention_efficiency > 1 ||
      m.dp_overlap < 0 || m.dp_overlap > 1)
    throw std::runtime_error(path + ": gemm_efficiency and attention_efficiency must be in (0, 1], dp_overlap in [0, 1]");
  for (const YAML::Node& g : y["gemm"]) {
    GemmPoint p{field<std::string>(g, "ops", w, "NT"), field<int64_t>(g, "m", w, 0), field<int64_t>(g, "n", w, 0),
                field<int64_t>(g, "k", w, 0), field(g, "threads", w, 1), field(g, "gflops", w, 0.0),
                field(g, "busy_gflops", w, 0.0), field<std::string>(g, "precision", w, "fp32")};
    if (p.m < 1 || p.n < 1 || p.k < 1 || p.threads < 1 || p.gflops <= 0 ||
        (p.ops != "NT" && p.ops != "NN" && p.ops != "TN"))
      throw std::runtime_error(fmt::format("{}: gemm entry (line {}) needs ops NT|NN|TN, m, n, k, threads >= 1 and "
                                           "gflops > 0", path, g.Mark().line + 1));
    if (!is_precision_name(p.precision))
      throw std::runtime_error(fmt::format("{}: gemm entry (line {}): precision '{}' is not fp32, bf16 or fp16", path,
                                           g.Mark().line + 1, p.precision));
    m.gemm.push_back(p);
  }
  for (const YAML::Node& a : y["attention"]) {
    AttentionPoint p{field<std::string>(a, "kind", w, "flash"), field<int64_t>(a, "T", w, 0),
                     field<int64_t>(a, "HS", w, 0), field(a, "threads", w, 1), field(a, "forward_us", w, 0.0),
                     field(a, "backward_us", w, 0.0), field<std::string>(a, "precision", w, "fp32")};
    if (!is_precision_name(p.precision))
      throw std::runtime_error(fmt::format("{}: attention entry (line {}): precision '{}' is not fp32, bf16 or fp16",
                                           path, a.Mark().line + 1, p.precision));
    if (p.T < 1 || p.HS < 1 || p.threads < 1 || p.forward_us <= 0 || p.backward_us <= 0 ||
        (p.kind != "flash" && p.kind != "gemm"))
      throw std::runtime_error(fmt::format("{}: attention entry (line {}) needs kind flash|gemm, T, HS, threads, "
                                           "forward_us and backward_us > 0", path, a.Mark().line + 1));
    m.attention.push_back(p);
  }
  m.op_bandwidth = rates(y, "op_bandwidth", "gbs", path);
  m.xent_ns = rates(y, "xent", "ns", path);
  m.optimizer_ns = rates(y, "optimizer", "ns", path);
  if (y["compute_factor"]) m.compute_factor = rates(y, "compute_factor", "value", path);
  if (y["contention"]) m.contention = rates(y, "contention", "value", path);
  if (const YAML::Node n = y["network"]) {
    m.topology = field<std::string>(n, "topology", w, m.topology);
    m.intra_node = tier(n["intra_node"], path + ": network.intra_node");
    m.inter_node = tier(n["inter_node"], path + ": network.inter_node");
    m.links_per_node = field(n, "links_per_node", w, m.links_per_node);
    m.injection_gbs = field(n, "injection_gbs", w, m.injection_gbs);
  }
  return m;
}

std::string machine_yaml(const MachineSpec& m, const std::string& header_comment) {
  std::string o = header_comment;
  o += fmt::format("name: {}\ncpu: \"{}\"\nsource: \"{}\"\ncores_per_node: {}\nranks_per_node: {}\nmax_nodes: {}\n",
                   m.name, m.cpu, m.source, m.cores_per_node, m.ranks_per_node, m.max_nodes);
  o += fmt::format("peak_gflops_per_core: {{fp32: {:.1f}, bf16: {:.1f}, fp16: {:.1f}}}\n", m.peak_gflops_fp32,
                   m.peak_gflops_bf16, m.peak_gflops_fp16);
  o += fmt::format("memory_gib: {:.2f}\nprocess_mib: {:.1f}\ngemm_efficiency: {:.3f}\nattention_efficiency: {:.3f}\n"
                   "dp_overlap: {:.2f}\n",
                   m.memory_gib, m.process_mib, m.gemm_efficiency, m.attention_efficiency, m.dp_overlap);
  for (const auto& [key, unit, points] : {std::tuple{"op_bandwidth", "gbs", &m.op_bandwidth},
                                          std::tuple{"xent", "ns", &m.xent_ns},
                                          std::tuple{"optimizer", "ns", &m.optimizer_ns},
                                          std::tuple{"compute_factor", "value", &m.compute_factor},
                                          std::tuple{"contention", "value", &m.contention}}) {
    if (points->empty()) continue;
    o += fmt::format("{}:\n", key);
    for (const RatePoint& r : *points) o += fmt::format("  - {{threads: {}, {}: {:.4g}}}\n", r.threads, unit, r.value);
  }
  o += "network:\n";
  o += fmt::format("  topology: \"{}\"\n  links_per_node: {}\n  injection_gbs: {}\n", m.topology, m.links_per_node,
                   m.injection_gbs);
  for (const auto& [name, t] : {std::pair{"intra_node", m.intra_node}, std::pair{"inter_node", m.inter_node}})
    o += fmt::format("  {}: {{alpha_us: {:.3f}, bandwidth_gbs: {:.3f}, reduce_gbs: {:.3f}}}\n", name, t.alpha_us,
                     t.bandwidth_gbs, t.reduce_gbs);
  o += m.gemm.empty() ? "gemm: []\n" : "gemm:\n";
  for (const GemmPoint& g : m.gemm)
    o += fmt::format("  - {{ops: {}, m: {}, n: {}, k: {}, threads: {}, gflops: {:.1f}{}{}}}\n", g.ops, g.m, g.n, g.k,
                     g.threads, g.gflops,
                     g.busy_gflops > 0 ? fmt::format(", busy_gflops: {:.1f}", g.busy_gflops) : std::string(),
                     g.precision != "fp32" ? ", precision: " + g.precision : std::string());
  o += m.attention.empty() ? "attention: []\n" : "attention:\n";
  for (const AttentionPoint& a : m.attention)
    o += fmt::format("  - {{kind: {}, T: {}, HS: {}, threads: {}, forward_us: {:.2f}, backward_us: {:.2f}{}}}\n",
                     a.kind, a.T, a.HS, a.threads, a.forward_us, a.backward_us,
                     a.precision != "fp32" ? ", precision: " + a.precision : std::string());
  return o;
}

namespace {

// The nearest measured shape with the same operand order (any order if none) among the points
// `use` accepts; null when none.
template <typename Pred>
const GemmPoint* nearest_gemm(const MachineSpec& m, const std::string& ops, int64_t M, int64_t N, int64_t K,
                              int threads, Pred use) {
  const GemmPoint* best = nullptr;
  double best_d = std::numeric_limits<double>::infinity();
  for (const GemmPoint& g : m.gemm) {
    if (!use(g)) continue;
    const double d = dist(double(M), double(g.m)) + dist(double(N), double(g.n)) + dist(double(K), double(g.k)) +
                     2.0 * dist(threads, g.threads) + (g.ops == ops ? 0.0 : 10.0);
    if (d < best_d) best_d = d, best = &g;
  }
  return best;
}

}  // namespace

bool has_gemm_table(const MachineSpec& m, const std::string& precision) {
  return std::any_of(m.gemm.begin(), m.gemm.end(), [&](const GemmPoint& g) { return g.precision == precision; });
}

bool has_attention_table(const MachineSpec& m, const std::string& kind, const std::string& precision) {
  return std::any_of(m.attention.begin(), m.attention.end(),
                     [&](const AttentionPoint& a) { return a.kind == kind && a.precision == precision; });
}

// The nearest point's GFLOP/s, scaled by the thread ratio when the thread count differs; without
// a table, gemm_efficiency of peak. Other cores computing slow it by the median over the table's
// one-thread points of their measured ratio (time with every core at work over alone): one
// shape's ratio alone is noise on a shared machine — a calibration measured 1.82x for one
// product and ~1.0x for the rest, and the planner put a 2-rank pipeline 22% above its run.
double gemm_seconds(const MachineSpec& m, const std::string& ops, int64_t M, int64_t N, int64_t K, int threads,
                    int busy, const std::string& precision) {
  if (M <= 0 || N <= 0 || K <= 0) return 0.0;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const auto mine = [&](const GemmPoint& g) { return g.precision == precision; };
  const GemmPoint* best = nearest_gemm(m, ops, M, N, K, threads, mine);
  const double gflops = best ? best->gflops * double(threads) / double(best->threads)
                             : m.gemm_efficiency * m.peak_gflops_fp32 * threads;
  double slowdown = 1.0;
  if (busy > threads) {
    std::vector<double> ratios;
    for (const GemmPoint& g : m.gemm)
      if (mine(g) && g.threads == 1 && g.busy_gflops > 0) ratios.push_back(std::max(1.0, g.gflops / g.busy_gflops));
    if (!ratios.empty()) {
      std::nth_element(ratios.begin(), ratios.begin() + ptrdiff_t(ratios.size() / 2), ratios.end());
      slowdown = ratios[ratios.size() / 2];
    }
  }
  return slowdown * flops / (gflops * 1e9);
}

// Causal attention grows as T² per (sequence, head): the nearest measured length of the same
// kind, precision (or fp32, without points of that precision) and head size, scaled by
// (T / T_i)² and the thread ratio; without one, its flops (forward 2·T²·HS over the causal half
// of two products, backward 2.5×) at attention_efficiency of the fp32 peak.
double attention_seconds(const MachineSpec& m, const std::string& kind, bool backward, int64_t sequences_heads,
                         int64_t T, int64_t HS, int threads, const std::string& precision) {
  const std::string table = has_attention_table(m, kind, precision) ? precision : "fp32";
  const AttentionPoint* best = nullptr;
  double best_d = std::numeric_limits<double>::infinity();
  for (const AttentionPoint& a : m.attention) {
    if (a.kind != kind || a.precision != table) continue;
    const double d = dist(double(T), double(a.T)) + 4.0 * dist(double(HS), double(a.HS)) + 2.0 * dist(threads, a.threads);
    if (d < best_d) best_d = d, best = &a;
  }
  if (best) {
    const double us = (backward ? best->backward_us : best->forward_us) * double(T) * double(T) /
                      (double(best->T) * double(best->T)) * double(HS) / double(best->HS) *
                      double(best->threads) / double(threads);
    return 1e-6 * us * double(sequences_heads);
  }
  const double flops = 2.0 * double(T) * double(T) * double(HS) * (backward ? 2.5 : 1.0) * double(sequences_heads);
  return flops / (m.attention_efficiency * m.peak_gflops_fp32 * threads * 1e9);
}

// The nearest measured thread count's value: fewer threads than measured scale the rate down
// linearly, more do not add (memory bandwidth saturates).
static double rate(const std::vector<RatePoint>& points, int threads, bool per_item_time) {
  const RatePoint* best = &points.front();
  for (const RatePoint& r : points)
    if (dist(threads, r.threads) < dist(threads, best->threads)) best = &r;
  const double speedup = std::min(1.0, double(threads) / double(best->threads));  // <= 1
  return per_item_time ? best->value / speedup : best->value * speedup;
}

double op_seconds(const MachineSpec& m, double bytes, int threads) {
  return bytes / (rate(m.op_bandwidth, threads, false) * 1e9);
}

double xent_seconds(const MachineSpec& m, double logits, int threads) {
  return 1e-9 * logits * rate(m.xent_ns, threads, true);
}

// The nearest thread count's value; 1 without any.
static double nearest(const std::vector<RatePoint>& points, int threads) {
  if (points.empty()) return 1.0;
  const RatePoint* best = &points.front();
  for (const RatePoint& r : points)
    if (dist(threads, r.threads) < dist(threads, best->threads)) best = &r;
  return best->value;
}

double compute_factor(const MachineSpec& m, int threads) { return nearest(m.compute_factor, threads); }

double contention(const MachineSpec& m, int busy_cores) { return nearest(m.contention, busy_cores); }

double optimizer_seconds(const MachineSpec& m, double params, int threads) {
  return 1e-9 * params * rate(m.optimizer_ns, threads, true);
}

}  // namespace hokusai::plan
