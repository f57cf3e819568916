// Network topology: nodes on a d-dimensional torus or mesh (Tofu-D is a 6-D torus X,Y,Z,a,b,c),
// and the allreduce that keeps every dimension's links busy at once.
//
// Rank r of a communicator laid on a Torus (comm/torus.hpp) is node r, row-major coordinates.
//
// allreduce_torus (one rank per node, comm.size() == nodes()): the buffer is cut into one part per
// outgoing link of a node (two per dimension of extent > 2, to coordinate + 1 and − 1; one per
// dimension of extent 2, whose two neighbours are the same node), each in two halves, routed
// through the other dimensions so every link carries about the same bytes (torus_routes in
// comm/torus.hpp: orders and ring directions chosen by link load). A part reduce-scatters
// along its dimensions in turn, each time on the chunk it kept (a ring of n_k ranks leaves
// 1/n_k of the range), then all-gathers back in the reverse order. The parts advance
// independently, so every link carries traffic at once instead of the ring's one. Bytes sent
// per node: 2·(P−1)/P · n as for the ring, spread over all links; steps: 2·Σ(n_k − 1) instead of
// 2·(P − 1).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/mpi.hpp"
#include "comm/torus.hpp"

namespace hokusai::comm {

// The ring communicators of a communicator laid on a torus: ring(k) holds the ranks that differ
// only in coordinate k (in coordinate order). Collective over comm.
class TorusComms {
 public:
  TorusComms(const Communicator& comm, const Torus& torus);
  const Torus& torus() const { return torus_; }
  const Communicator& ring(int dim) const { return rings_[size_t(dim)]; }
  int coord(int dim) const { return coords_[size_t(dim)]; }
  int size() const { return size_; }
  // The allreduce parts' routes (torus_routes), computed once.
  const std::vector<TorusRoute>& routes() const { return routes_; }

 private:
  Torus torus_;
  std::vector<TorusRoute> routes_;
  std::vector<Communicator> rings_;
  std::vector<int> coords_;
  int size_ = 1;
};

// The torus allreduce as a state machine, in place: test() advances every part whose transfers
// have completed and returns true when all are done; wait() blocks until then (the destructor
// waits too, so no transfer outlives the buffer). Operations outstanding at the same time on one
// TorusComms need distinct tags (0..440; the blocking call uses -1), started in the same order on
// every rank. The buffer must stay untouched until done.
template <class T>  // float or bf16
class TorusAllreduce {
 public:
  TorusAllreduce(const TorusComms& tc, T* data, int64_t count, ReduceOp op, int tag = -1);
  ~TorusAllreduce();
  TorusAllreduce(const TorusAllreduce&) = delete;
  TorusAllreduce& operator=(const TorusAllreduce&) = delete;
  bool test() { return progress(false); }
  void wait() { progress(true); }
  bool done() const { return remaining_ == 0; }

 private:
  struct Part;
  void post(int q);
  void advance(int q);
  bool progress(bool block);
  const TorusComms* tc_;
  T* data_;
  ReduceOp op_;
  int tag_base_ = 0, remaining_ = 0;
  std::vector<Part> parts_;
  std::vector<MPI_Request> reqs_;
  std::vector<int> finished_;
};

// data[0..count) := op over every rank, all dimensions at once (see above). In place. T = float
// or bf16.
template <class T>
void allreduce_torus(const TorusComms& tc, T* data, int64_t count, ReduceOp op);

// A communicator's ranks grouped by node: `per_node` consecutive ranks share one. node(): my
// node's ranks; across(): the ranks at my position on every node, in node order, laid on
// `nodes` (the torus the nodes form) when it is given. Collective over comm.
class Hierarchy {
 public:
  Hierarchy(const Communicator& comm, int per_node, const Torus* nodes = nullptr);
  const Communicator& node() const { return node_; }
  const Communicator& across() const { return across_; }
  const TorusComms* across_torus() const { return torus_.get(); }
  int size() const { return size_; }

 private:
  Communicator node_, across_;
  std::unique_ptr<TorusComms> torus_;
  int size_ = 1;
};

// Hierarchical allreduce, in place: reduce-scatter inside the node (ring over the node's
// shared-memory transport), each rank's 1/q chunk allreduced across the nodes (torus when the
// nodes form one, else the automatic choice), then allgather inside the node. The network
// carries n·(N−1)/N bytes per node and direction instead of q times that.
template <class T>  // float or bf16
void allreduce_hierarchical(const Hierarchy& h, T* data, int64_t count, ReduceOp op);

}  // namespace hokusai::comm
