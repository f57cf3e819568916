// Placement: which grid rank each MPI rank plays, so that the parallel groups fit the machine.
//
// The grid's rank formula (comm/grid.hpp) says which grid ranks form each group; the placement
// chooses the grid rank of every MPI rank. Without a topology it is the identity. On a torus of
// nodes (comm.topology, optionally with a coordinate file) the torus dimensions are split in two
// sets: the data-parallel set S, whose extents multiply to the number of nodes a dp group spans,
// and the rest R, which holds one model replica (tp x pp ranks). A node's dp index is its
// row-major position over S, its model index its position over R (tp varies fastest, so tensor-
// parallel groups share a node or sit on neighbouring nodes along R's last dimensions). Then every
// dp group is exactly the set of nodes that differ only in the S coordinates: a torus of its own,
// whose rings are physical torus lines, and the torus allreduce runs on it link for link.
// Among the sets with the right product, S is the one with the most links (2 per dimension of
// extent > 2, 1 per extent 2), then the most dimensions, then the earliest dimensions.
//
// Worked example: 8 ranks, 2 per node, torus 2x2 (4 nodes), tp = 2, pp = 1, dp = 4:
// a node holds one whole tp group, a dp group spans the 4 nodes, S = {d0, d1}, R = {}.
//   node (coords)   : 0 (0,0)   1 (0,1)   2 (1,0)   3 (1,1)
//   MPI ranks       : 0 1       2 3       4 5       6 7
//   grid ranks      : 0 1       2 3       4 5       6 7     (dp index = 2·c0 + c1 = node)
// With a coordinate file that puts node 1 at (1,1) and node 3 at (0,1), MPI ranks 2,3 play grid
// ranks 6,7 and MPI ranks 6,7 play grid ranks 2,3, so dp index still follows the coordinates.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "comm/grid.hpp"
#include "comm/torus.hpp"

namespace hokusai::comm {

struct Machine {
  int ranks = 1;           // MPI world size
  int ranks_per_node = 1;  // consecutive MPI ranks share a node
  std::optional<Torus> torus;                 // the nodes' network; empty: flat (unknown)
  std::vector<std::vector<int>> node_coords;  // node i's coordinates; empty: row-major on torus
  int nodes() const { return ranks / ranks_per_node; }
};

struct Placement {
  std::vector<int> grid_rank;  // grid_rank[MPI rank]
  // Torus dimensions a dp group spans, and the torus the group's nodes form (their extents, in
  // dimension order); empty when the dp groups are not laid on the torus. With one dp rank per
  // node the dp group itself is that torus; with several, the ranks at one position of every
  // node are (the hierarchical allreduce's across-node step).
  std::vector<int> dp_dims;
  Torus dp_torus;
  // dp ranks of one group on each node, when every group takes the same number of consecutive
  // dp indices on each of its nodes (grid order node-major); 0 when not (then no hierarchy).
  int dp_per_node = 0;
  std::vector<std::string> description;  // what was chosen and why, one line each (printed at start)
  bool identity() const;
};

// Throws std::invalid_argument naming the numbers when the machine does not fit the grid
// (ranks not divisible into nodes, a torus with another node count, node coordinates missing).
Placement place(const GridShape& shape, const Machine& machine);

}  // namespace hokusai::comm
