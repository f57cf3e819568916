// A d-dimensional torus or mesh of nodes (Tofu-D is a 6-D torus X,Y,Z,a,b,c) and the files that
// say where each node sits on it. Pure arithmetic: no MPI (comm/topology.hpp runs collectives on it).
//
// Node n <-> coordinates, row-major (the last dimension varies fastest).
//
// Coordinate files (comm.coordinates) list one node per line, in node order (node i holds MPI
// ranks i·ranks_per_node ... (i+1)·ranks_per_node − 1), the way Fugaku's virtual-coordinate files
// (mpiexec --vcoordfile) list "(x,y,z)": "(0,1,2)", "0,1,2" and "0 1 2" are all accepted; blank
// lines and text after '#' are ignored.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hokusai::comm {

struct Torus {
  std::vector<int> dims;  // extent per dimension
  bool wrap = true;       // torus (wrap-around links); false: mesh

  // "4x4x4x2x3x2" (torus) or "mesh:4x4". Throws std::invalid_argument naming the text.
  static Torus parse(std::string_view text);
  int nodes() const;
  std::vector<int> coords(int node) const;
  int node(const std::vector<int>& coords) const;
  std::string to_string() const;
  // "X".."c" for 6 dimensions (Tofu's names), "d0", "d1", ... otherwise.
  std::string dim_name(int dim) const;
};

// The node shape PJM is asked for (and the torus the planner assumes) for n nodes: (x, tp, z) with
// x·z as square as possible when tp divides n (Fugaku-LLM: 13,824 nodes, tp 6 -> 48x6x48), else
// the most cubic x·y·z = n.
std::vector<int> pjm_shape(int nodes, int tp);

// The routes of the torus allreduce's parts (comm/topology.hpp), a pure function of the torus so
// every rank computes the same ones. One part per outgoing link of a node (two per dimension of
// extent > 2 on a torus, one for extent 2 or a mesh line), each in two halves; part i starts on its
// link and then visits every other dimension of extent > 1 once (route.dims), each in a ring
// direction (route.dirs: +1 sends to coordinate + 1). A part moving n_i bytes sends
// 2·n_i·(e−1)/e over its link in a phase on a dimension of extent e, then continues with 1/e of
// them. Two schedules are built and the one whose busiest link carries the least is kept:
// (a) the halves cross the other dimensions in opposite orders (j, j+1, ... and j, j−1, ...),
// each phase in the less loaded direction; (b) each part's next dimension and direction are the
// least loaded link. Equal part sizes.
struct TorusRoute {
  std::vector<int> dims, dirs;
};
std::vector<TorusRoute> torus_routes(const Torus& torus);
// The routes' busiest link load over the mean link load (1 = every link carries the same bytes).
double torus_route_imbalance(const Torus& torus, const std::vector<TorusRoute>& routes);

// Reads a coordinate file for `torus` holding `nodes` nodes: result[i] = coordinates of node i.
// The file lists one line per node, or one per rank (nodes x ranks_per_node lines, the ranks of a
// node repeating its coordinates, as Fugaku's --vcoordfile does with several ranks per node).
// Throws std::invalid_argument "<path>:<line>: ..." for a missing file, a wrong count of
// coordinates or lines, a coordinate outside the torus, or two nodes at the same place.
std::vector<std::vector<int>> read_coordinates(const std::string& path, const Torus& torus, int nodes,
                                               int ranks_per_node = 1);

}  // namespace hokusai::comm
