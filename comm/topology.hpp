// Network topology: nodes on a d-dimensional torus or mesh (Tofu-D is a 6-D torus X,Y,Z,a,b,c),
// and the allreduce that keeps every dimension's links busy at once.
//
// Torus: node n <-> coordinates, row-major (the last dimension varies fastest), as Fugaku's
// virtual-coordinate files list them; rank r of a communicator laid on the torus is node r.
//
// allreduce_torus (one rank per node, comm.size() == nodes()): the buffer is cut into one part per
// outgoing link of a node (two per dimension of extent > 2, to coordinate + 1 and − 1; one per
// dimension of extent 2, whose two neighbours are the same node), each in two halves that cross
// the other dimensions in opposite orders (j, j+1, ... and j, j−1, ...). A part reduce-scatters
// along its dimensions in turn, each time on the chunk it kept (a ring of n_k ranks leaves
// 1/n_k of the range), then all-gathers back in the reverse order. The parts advance
// independently, so every link carries traffic at once instead of the ring's one. Bytes sent
// per node: 2·(P−1)/P · n as for the ring, spread over all links; steps: 2·Σ(n_k − 1) instead of
// 2·(P − 1).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/mpi.hpp"

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
};

// The ring communicators of a communicator laid on a torus: ring(k) holds the ranks that differ
// only in coordinate k (in coordinate order). Collective over comm.
class TorusComms {
 public:
  TorusComms(const Communicator& comm, const Torus& torus);
  const Torus& torus() const { return torus_; }
  const Communicator& ring(int dim) const { return rings_[size_t(dim)]; }
  int coord(int dim) const { return coords_[size_t(dim)]; }
  int size() const { return size_; }

 private:
  Torus torus_;
  std::vector<Communicator> rings_;
  std::vector<int> coords_;
  int size_ = 1;
};

// data[0..count) := op over every rank, all dimensions at once (see above). In place.
void allreduce_torus(const TorusComms& tc, float* data, int64_t count, ReduceOp op);

}  // namespace hokusai::comm
