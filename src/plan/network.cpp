#include "plan/network.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

namespace hokusai::plan {

TorusNetwork::TorusNetwork(comm::Torus torus, LinkTier link, LinkTier node)
    : torus_(std::move(torus)), link_(link), node_(node) {}

Price TorusNetwork::price(const std::vector<Step>& steps) const {
  const int D = int(torus_.dims.size());
  std::vector<double> load(size_t(torus_.nodes()) * size_t(D) * 2);
  Price p;
  const Step* previous = nullptr;
  double last_per_byte = 0, last_fixed = 0;
  for (const Step& step : steps) {
    if (previous && step == *previous) {  // the ring's 2(p-1) steps are one step repeated
      p.per_byte += last_per_byte, p.fixed += last_fixed;
      continue;
    }
    previous = &step;
    std::fill(load.begin(), load.end(), 0.0);
    double busiest = 0, within_node = 0;
    int longest = 0;
    for (const Message& m : step) {
      if (m.from == m.to) {
        within_node = std::max(within_node, m.share);
        continue;
      }
      std::vector<int> at = torus_.coords(m.from);
      const std::vector<int> to = torus_.coords(m.to);
      int hops = 0;
      // SimGrid's order: its first dimension is the last here; a dimension is finished before the
      // next. Direction as SimGrid's TorusZone decides it (right: + 1).
      for (int d = D - 1; d >= 0; --d) {
        const int e = torus_.dims[size_t(d)];
        while (at[size_t(d)] != to[size_t(d)]) {
          const int my = at[size_t(d)], target = to[size_t(d)];
          const bool right = torus_.wrap ? (target > my && target <= my + e / 2) || (my > e / 2 && (my + e / 2) % e >= target)
                                         : target > my;
          double& l = load[(size_t(torus_.node(at)) * size_t(D) + size_t(d)) * 2 + (right ? 0 : 1)];
          l += m.share;
          busiest = std::max(busiest, l);
          at[size_t(d)] = (my + (right ? 1 : e - 1)) % e;
          ++hops;
        }
      }
      longest = std::max(longest, hops);
    }
    last_per_byte = std::max(busiest / (link_.bandwidth_gbs * 1e9), within_node / (node_.bandwidth_gbs * 1e9));
    last_fixed = longest > 0 ? longest * link_.alpha_us * 1e-6 : within_node > 0 ? node_.alpha_us * 1e-6 : 0.0;
    p.per_byte += last_per_byte, p.fixed += last_fixed;
  }
  return p;
}

std::vector<std::vector<Message>> allreduce_steps(comm::AllreduceAlgorithm a, int p) {
  std::vector<std::vector<Message>> steps;
  if (p <= 1) return steps;
  if (a == comm::AllreduceAlgorithm::ring) {  // reduce-scatter then allgather: p-1 steps each, 1/p to the right
    for (int s = 0; s < 2 * (p - 1); ++s) {
      std::vector<Message> step;
      for (int r = 0; r < p; ++r) step.push_back({r, (r + 1) % p, 1.0 / p});
      steps.push_back(std::move(step));
    }
    return steps;
  }
  // Rabenseifner (recursive halving, then doubling) and MPI's recursive doubling (every step the
  // whole vector) over the largest power of two; the first 2·rem ranks fold pairwise first and
  // unfold last (allreduce_rabenseifner).
  int pow2 = 1;
  while (pow2 * 2 <= p) pow2 *= 2;
  const int rem = p - pow2;
  const auto real = [&](int v) { return v < rem ? 2 * v + 1 : v + rem; };
  const auto fold = [&](bool unfold) {
    std::vector<Message> step;
    for (int i = 0; i < rem; ++i) step.push_back(unfold ? Message{2 * i + 1, 2 * i, 1.0} : Message{2 * i, 2 * i + 1, 1.0});
    if (!step.empty()) steps.push_back(std::move(step));
  };
  const auto exchange = [&](int mask, double share) {
    std::vector<Message> step;
    for (int v = 0; v < pow2; ++v) step.push_back({real(v), real(v ^ mask), share});
    steps.push_back(std::move(step));
  };
  const bool halving = a != comm::AllreduceAlgorithm::mpi;
  fold(false);
  double share = 1.0;
  for (int mask = pow2 / 2; mask >= 1; mask /= 2) exchange(mask, halving ? share /= 2 : 1.0);
  if (halving)
    for (int mask = 1; mask < pow2; mask *= 2, share *= 2) exchange(mask, share);
  fold(true);
  return steps;
}

std::vector<Step> on_nodes(const std::vector<std::vector<Message>>& steps, const std::vector<std::vector<int>>& groups) {
  std::vector<Step> out;
  for (const std::vector<Message>& s : steps) {
    Step step;
    for (const std::vector<int>& g : groups)
      for (const Message& m : s) step.push_back({g[size_t(m.from)], g[size_t(m.to)], m.share});
    out.push_back(std::move(step));
  }
  return out;
}

double torus_allreduce_seconds(const comm::Torus& torus, double bytes, const LinkTier& link, double injection_gbs) {
  const std::vector<comm::TorusRoute> routes = comm::torus_routes(torus);
  if (routes.empty() || bytes <= 0) return 0.0;
  // Each part's ring steps: (link = dimension and direction, bytes), reduce-scatter along its
  // dimensions in turn (a ring of e leaves 1/e), then the allgather back.
  struct Xfer {
    int link;
    double bytes;
  };
  std::vector<std::vector<Xfer>> parts;
  int most_steps = 0;
  for (const comm::TorusRoute& r : routes) {
    std::vector<Xfer> s;
    double cur = bytes / double(routes.size());
    for (size_t i = 0; i < r.dims.size(); ++i) {
      const int e = torus.dims[size_t(r.dims[i])];
      for (int k = 0; k < e - 1; ++k) s.push_back({2 * r.dims[i] + (r.dirs[i] > 0 || e == 2 ? 0 : 1), cur / e});
      cur /= e;
    }
    for (size_t i = r.dims.size(); i-- > 0;) {
      const int e = torus.dims[size_t(r.dims[i])];
      for (int k = 0; k < e - 1; ++k) s.push_back({2 * r.dims[i] + (r.dirs[i] > 0 || e == 2 ? 0 : 1), cur});
      cur *= e;
    }
    most_steps = std::max(most_steps, int(s.size()));
    parts.push_back(std::move(s));
  }
  // The fluid: every node is alike, so a link is a dimension and a direction; the parts on one
  // link share it equally until the next step of any part completes.
  const double bw = link.bandwidth_gbs * 1e9;
  std::vector<size_t> at(parts.size(), 0);
  std::vector<double> left(parts.size());
  for (size_t q = 0; q < parts.size(); ++q) left[q] = parts[q].empty() ? 0 : parts[q][0].bytes;
  double t = 0;
  for (;;) {
    std::map<int, int> users;
    for (size_t q = 0; q < parts.size(); ++q)
      if (at[q] < parts[q].size()) ++users[parts[q][at[q]].link];
    if (users.empty()) break;
    std::vector<double> rate(parts.size(), 0.0);
    double total = 0;
    for (size_t q = 0; q < parts.size(); ++q)
      if (at[q] < parts[q].size()) total += rate[q] = bw / users[parts[q][at[q]].link];
    if (injection_gbs > 0 && total > injection_gbs * 1e9)
      for (double& r : rate) r *= injection_gbs * 1e9 / total;
    double dt = std::numeric_limits<double>::infinity();
    for (size_t q = 0; q < parts.size(); ++q)
      if (rate[q] > 0) dt = std::min(dt, left[q] / rate[q]);
    t += dt;
    for (size_t q = 0; q < parts.size(); ++q) {
      if (rate[q] <= 0) continue;
      left[q] -= rate[q] * dt;
      if (left[q] <= 1e-9 * bytes && ++at[q] < parts[q].size()) left[q] = parts[q][at[q]].bytes;
    }
  }
  const int p = torus.nodes();
  return t + most_steps * link.alpha_us * 1e-6 + bytes * double(p - 1) / double(p) / (link.reduce_gbs * 1e9);
}

}  // namespace hokusai::plan
