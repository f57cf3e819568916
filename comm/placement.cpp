#include "comm/placement.hpp"

#include <algorithm>
#include <stdexcept>
#include <tuple>

namespace hokusai::comm {

namespace {

std::string join_dims(const Torus& t, const std::vector<int>& dims) {
  std::string names, extents;
  for (size_t i = 0; i < dims.size(); ++i) {
    names += (i ? "," : "") + t.dim_name(dims[i]);
    extents += (i ? "x" : "") + std::to_string(t.dims[size_t(dims[i])]);
  }
  return names.empty() ? "none" : names + " (" + extents + ")";
}

int links(const Torus& t, int dim) {
  const int e = t.dims[size_t(dim)];
  return e == 1 ? 0 : (e == 2 || !t.wrap ? 1 : 2);
}

// Row-major index of coordinates c over dimensions `dims`.
int index_over(const Torus& t, const std::vector<int>& dims, const std::vector<int>& c) {
  int i = 0;
  for (int d : dims) i = i * t.dims[size_t(d)] + c[size_t(d)];
  return i;
}

// dp_per_node of a placement: each dp group's members, in dp order, must come in runs of q on
// distinct nodes.
int dp_per_node_of(const GridShape& shape, const std::vector<int>& world_of_grid, int rpn) {
  int q = 0;
  for (int g = 0; g < shape.world(); ++g) {
    const ParallelGrid grid(shape, shape.world(), g);
    if (grid.dp_rank() != 0) continue;
    const std::vector<int> group = grid.dp_group();
    int run = 1;
    while (run < int(group.size()) &&
           world_of_grid[size_t(group[size_t(run)])] / rpn == world_of_grid[size_t(group[0])] / rpn)
      ++run;
    if (q == 0) q = run;
    if (run != q || group.size() % size_t(q) != 0) return 0;
    std::vector<int> seen;
    for (size_t i = 0; i < group.size(); ++i) {
      const int node = world_of_grid[size_t(group[i])] / rpn;
      if (node != world_of_grid[size_t(group[i - i % size_t(q)])] / rpn) return 0;
      if (i % size_t(q) == 0) {
        if (std::find(seen.begin(), seen.end(), node) != seen.end()) return 0;
        seen.push_back(node);
      }
    }
  }
  return q;
}

}  // namespace

bool Placement::identity() const {
  for (size_t r = 0; r < grid_rank.size(); ++r)
    if (grid_rank[r] != int(r)) return false;
  return true;
}

Placement place(const GridShape& shape, const Machine& m) {
  const int world = shape.world(), rpn = m.ranks_per_node;
  if (world != m.ranks)
    throw std::invalid_argument("placement: tp x pp x dp = " + std::to_string(world) + " but the job has " +
                                std::to_string(m.ranks) + " ranks");
  if (rpn < 1 || world % rpn != 0)
    throw std::invalid_argument("placement: " + std::to_string(world) + " ranks do not fill nodes of " +
                                std::to_string(rpn) + " ranks (comm.ranks_per_node)");
  const int nodes = world / rpn;
  Placement p;
  p.grid_rank.resize(size_t(world));
  for (int r = 0; r < world; ++r) p.grid_rank[size_t(r)] = r;
  const std::string machine_line = "placement: " + std::to_string(world) + " ranks on " + std::to_string(nodes) +
                                   " node(s), " + std::to_string(rpn) + " per node";
  const auto finish = [&](std::string why) {
    std::vector<int> world_of_grid(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) world_of_grid[size_t(p.grid_rank[size_t(r)])] = r;
    p.dp_per_node = dp_per_node_of(shape, world_of_grid, rpn);
    if (!why.empty()) p.description.push_back(std::move(why));
    if (shape.dp > 1)
      p.description.push_back(
          "placement: each dp group (" + std::to_string(shape.dp) + " ranks) " +
          (p.dp_per_node > 0 ? "has " + std::to_string(p.dp_per_node) + " rank(s) on each of " +
                                   std::to_string(shape.dp / p.dp_per_node) + " node(s)"
                             : std::string("is spread unevenly over nodes")) +
          (p.dp_dims.empty() ? "" : ", its nodes form torus " + p.dp_torus.to_string() + " along " +
                                        join_dims(*m.torus, p.dp_dims)));
    return p;
  };
  if (!m.torus) {
    p.description.push_back(machine_line + ", no comm.topology: grid rank = MPI rank");
    return finish("");
  }
  const Torus& t = *m.torus;
  if (t.nodes() != nodes)
    throw std::invalid_argument("placement: comm.topology " + t.to_string() + " has " + std::to_string(t.nodes()) +
                                " nodes, the job has " + std::to_string(nodes) + " (" + std::to_string(world) +
                                " ranks, " + std::to_string(rpn) + " per node): fix comm.topology, "
                                "comm.ranks_per_node or mpirun -np");
  if (!m.node_coords.empty() && int(m.node_coords.size()) != nodes)
    throw std::invalid_argument("placement: " + std::to_string(m.node_coords.size()) + " node coordinates for " +
                                std::to_string(nodes) + " nodes");
  const auto coords_of = [&](int node) { return m.node_coords.empty() ? t.coords(node) : m.node_coords[size_t(node)]; };
  p.description.push_back(machine_line + ", torus " + t.to_string() +
                          (m.node_coords.empty() ? " (nodes in row-major order)" : " (coordinates from file)"));
  // How many dp ranks of a group share a node: a model replica fills whole nodes (q = 1), or a
  // node holds whole replicas (q = rpn / (tp·pp)).
  const int model = shape.tp * shape.pp;
  int q = 0;
  if (model % rpn == 0)
    q = 1;
  else if (rpn % model == 0)
    q = rpn / model;
  if (q == 0)
    return finish("placement: a node's " + std::to_string(rpn) + " ranks neither divide nor are divided by tp x pp = " +
                  std::to_string(model) + ": grid rank = MPI rank, dp groups not laid on the torus");
  const int dp_nodes = shape.dp / q;  // nodes a dp group spans
  // The data-parallel dimensions: extents multiplying to dp_nodes, most links, most dims, earliest.
  const int D = int(t.dims.size());
  int best = -1;
  std::tuple<int, int, int> best_score{-1, -1, 0};
  for (int mask = 0; mask < (1 << D); ++mask) {
    int product = 1, nlinks = 0, ndims = 0;
    for (int d = 0; d < D; ++d)
      if (mask >> d & 1) product *= t.dims[size_t(d)], nlinks += links(t, d), ndims += t.dims[size_t(d)] > 1;
    if (product != dp_nodes) continue;
    const std::tuple<int, int, int> score{nlinks, ndims, -mask};
    if (score > best_score) best_score = score, best = mask;
  }
  if (best < 0)
    return finish("placement: no set of torus dimensions of " + t.to_string() + " has " + std::to_string(dp_nodes) +
                  " nodes for a dp group: grid rank = MPI rank, dp groups not laid on the torus");
  std::vector<int> S, R;
  for (int d = 0; d < D; ++d) (best >> d & 1 ? S : R).push_back(d);
  for (int node = 0; node < nodes; ++node) {
    const std::vector<int> c = coords_of(node);
    const int dp_node = index_over(t, S, c), model_node = index_over(t, R, c);
    for (int l = 0; l < rpn; ++l) {
      // Position within the replica (tp fastest, then pp) and the dp index.
      const int within = (model_node * rpn + l) % model;
      const int dp = dp_node * q + (q > 1 ? l / model : 0);
      p.grid_rank[size_t(node * rpn + l)] = within % shape.tp + shape.tp * (dp + shape.dp * (within / shape.tp));
    }
  }
  std::vector<int> check = p.grid_rank;
  std::sort(check.begin(), check.end());
  for (int r = 0; r < world; ++r)
    if (check[size_t(r)] != r) throw std::logic_error("placement: grid ranks are not a permutation");
  if (dp_nodes > 1) {
    p.dp_dims = S;
    for (int d : S) p.dp_torus.dims.push_back(t.dims[size_t(d)]);
    p.dp_torus.wrap = t.wrap;
  }
  std::string tp_line = "placement: tp groups (" + std::to_string(shape.tp) + " ranks) ";
  tp_line += shape.tp <= rpn && rpn % shape.tp == 0
                 ? "share a node"
                 : "span " + std::to_string((shape.tp + rpn - 1) / rpn) + " neighbouring nodes along " + join_dims(t, R);
  if (shape.tp > 1) p.description.push_back(tp_line);
  return finish("");
}

}  // namespace hokusai::comm
