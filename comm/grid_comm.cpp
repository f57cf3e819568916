#include "comm/grid_comm.hpp"

#include <algorithm>
#include <stdexcept>

#include "comm/shared.hpp"

namespace hokusai::comm {

GridComms GridComms::build(GridShape shape, const Communicator& mpi_world, const Placement& placement) {
  if (int(placement.grid_rank.size()) != mpi_world.size())
    throw std::invalid_argument("GridComms: a placement for " + std::to_string(placement.grid_rank.size()) +
                                " ranks on " + std::to_string(mpi_world.size()));
  // Renumber the ranks by grid rank; every group is then split from that order.
  Communicator world = placement.identity() ? Communicator(mpi_world.raw(), false)
                                            : mpi_world.split(0, placement.grid_rank[size_t(mpi_world.rank())]);
  ParallelGrid grid(shape, world.size(), world.rank());
  // A group's color is its first member's grid rank; the key orders members as the grid does.
  const auto color_of = [](const std::vector<int>& group) { return group.front(); };
  const auto key_of = [&](const std::vector<int>& group) {
    return int(std::find(group.begin(), group.end(), grid.rank()) - group.begin());
  };
  Communicator tp = world.split(color_of(grid.tp_group()), key_of(grid.tp_group()));
  Communicator dp = world.split(color_of(grid.dp_group()), key_of(grid.dp_group()));
  Communicator pp = world.split(color_of(grid.pp_group()), key_of(grid.pp_group()));
  Communicator embed = world.split(color_of(grid.embedding_group()), key_of(grid.embedding_group()));
  GridComms g{grid,           placement,        std::move(world), std::move(tp), std::move(dp),
              std::move(pp),  std::move(embed), nullptr,          nullptr};
  const int q = placement.dp_per_node;
  const Torus* nodes = placement.dp_dims.empty() ? nullptr : &placement.dp_torus;
  if (q == 1 && nodes) g.dp_torus = std::make_unique<TorusComms>(g.dp, *nodes);
  if (q > 1 && g.dp.size() > q) g.dp_nodes = std::make_unique<Hierarchy>(g.dp, q, nodes);
  return g;
}

GridComms GridComms::build(GridShape shape, const Communicator& world) {
  if (shape.world() != world.size())  // ParallelGrid's own message names the numbers
    ParallelGrid(shape, world.size(), world.rank());
  Machine m;
  m.ranks = world.size();
  return build(shape, world, place(shape, m));
}

Machine describe_machine(const Communicator& world, const std::string& topology, const std::string& coordinates,
                         int ranks_per_node) {
  Machine m;
  m.ranks = world.size();
  if (ranks_per_node < 0)
    throw std::invalid_argument("comm.ranks_per_node: " + std::to_string(ranks_per_node) +
                                " is negative: give the ranks per node, or 0 to detect them");
  if (ranks_per_node > 0) {
    m.ranks_per_node = ranks_per_node;
  } else {
    // The shared-memory split: every node the same size, its ranks consecutive.
    const Communicator node = split_node(world);
    const std::vector<int> members = node.world_ranks();
    const int lo = *std::min_element(members.begin(), members.end());
    int mine[3] = {node.size(), -node.size(), (lo % node.size() == 0 && world.rank() - lo < node.size()) ? 1 : 0};
    int all[3];
    HOKUSAI_MPI(MPI_Allreduce(mine, all, 3, MPI_INT, MPI_MIN, world.raw()));
    if (all[0] != -all[1] || all[2] == 0) {
      if (!topology.empty() && topology != "flat")
        throw std::invalid_argument(
            "comm.topology: the nodes' ranks are not consecutive blocks of one size (the launcher placed them "
            "round-robin or unevenly): launch with ranks by slot (mpirun --map-by slot) or set comm.ranks_per_node");
      m.ranks_per_node = 1;  // no usable node structure: every rank its own node
    } else {
      m.ranks_per_node = all[0];
    }
  }
  if (m.ranks % m.ranks_per_node != 0)
    throw std::invalid_argument("comm.ranks_per_node: " + std::to_string(m.ranks) + " ranks do not fill nodes of " +
                                std::to_string(m.ranks_per_node));
  if (topology.empty() || topology == "flat") {
    if (!coordinates.empty())
      throw std::invalid_argument("comm.coordinates: '" + coordinates +
                                  "' given without comm.topology: say the torus extents too (e.g. 4x4x4x2x3x2)");
    return m;
  }
  try {
    m.torus = Torus::parse(topology);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("comm.topology: ") + e.what());
  }
  if (m.torus->nodes() != m.nodes())
    throw std::invalid_argument("comm.topology: torus " + m.torus->to_string() + " has " +
                                std::to_string(m.torus->nodes()) + " nodes, the job has " + std::to_string(m.nodes()) +
                                " (" + std::to_string(m.ranks) + " ranks, " + std::to_string(m.ranks_per_node) +
                                " per node): fix comm.topology, comm.ranks_per_node or mpirun -np");
  if (!coordinates.empty()) m.node_coords = read_coordinates(coordinates, *m.torus, m.nodes(), m.ranks_per_node);
  return m;
}

}  // namespace hokusai::comm
