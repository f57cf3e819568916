// The communicators of a ParallelGrid, each derived from the grid's own group formulas (the
// rank formula of comm/grid.hpp), never from separate arithmetic, on the MPI ranks the
// Placement (comm/placement.hpp) assigns to each grid rank.
#pragma once

#include <memory>
#include <string>

#include "comm/grid.hpp"
#include "comm/mpi.hpp"
#include "comm/placement.hpp"
#include "comm/topology.hpp"

namespace hokusai::comm {

struct GridComms {
  ParallelGrid grid;
  Placement placement;
  Communicator world;  // every rank, ordered by grid rank
  Communicator tp, dp, pp;
  Communicator embed;  // first and last pipeline stage (tied embeddings); size 1 elsewhere
  // The dp group laid on the torus (one dp rank per node, when the placement put it there): its
  // rings are torus lines.
  std::unique_ptr<TorusComms> dp_torus;
  // The dp group grouped by node (several dp ranks per node and more than one node), its
  // across-node communicators on the torus when the placement put them there.
  std::unique_ptr<Hierarchy> dp_nodes;
  Layout dp_layout() const { return dp_torus ? Layout::torus : dp_nodes ? Layout::nodes : Layout::flat; }

  // Collective over `world`: every rank must call it with the same shape and placement.
  static GridComms build(GridShape shape, const Communicator& world, const Placement& placement);
  // Grid rank = MPI rank.
  static GridComms build(GridShape shape, const Communicator& world);
};

// What the job runs on: ranks per node (0 = from MPI's shared-memory split, which must put
// consecutive ranks on a node), the torus of nodes ("" or "flat": none; "4x4x4x2x3x2",
// "mesh:4x4"), node coordinates from a file ("" = row-major). Collective over `world`. Throws
// std::invalid_argument naming the setting (comm.*) and the numbers.
Machine describe_machine(const Communicator& world, const std::string& topology, const std::string& coordinates,
                         int ranks_per_node);

}  // namespace hokusai::comm
