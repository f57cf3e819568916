#include "comm/topology.hpp"

#include "comm/scratch.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace hokusai::comm {

TorusComms::TorusComms(const Communicator& comm, const Torus& torus) : torus_(torus), size_(comm.size()) {
  if (comm.size() != torus.nodes())
    throw std::invalid_argument("torus " + torus.to_string() + " has " + std::to_string(torus.nodes()) +
                                " nodes but the communicator has " + std::to_string(comm.size()) +
                                " ranks: one rank per node is expected");
  coords_ = torus.coords(comm.rank());
  routes_ = torus_routes(torus);
  for (size_t k = 0; k < torus.dims.size(); ++k) {
    std::vector<int> line = coords_;
    line[k] = 0;  // the ring's color: my coordinates with dimension k left out
    rings_.push_back(comm.split(torus.node(line), coords_[k]));
  }
}

namespace {
int mod(int a, int p) { return ((a % p) + p) % p; }
constexpr int kTagTorus = 4096, kMaxParts = 64;
}  // namespace

// One part of the buffer on its way through the dimensions.
template <class T>
struct TorusAllreduce<T>::Part {
  int64_t begin = 0, end = 0;       // current range
  std::vector<int> order;           // dimensions, in reduce-scatter order
  std::vector<int> dirs;            // ring direction per phase: +1 sends to coordinate + 1
  int phase = 0, step = 0;          // position in the order, ring step within it
  bool gathering = false, done = false, posted = false;
  std::vector<std::pair<int64_t, int64_t>> ranges;  // range before each reduce-scatter phase
  int64_t in_begin = 0, in_size = 0;                // the posted receive's range
  ScratchOf<T> tmp;
};

template <class T>
TorusAllreduce<T>::TorusAllreduce(const TorusComms& tc, T* data, int64_t n, ReduceOp op, int tag)
    : tc_(&tc), data_(data), op_(op) {
  const Torus& t = tc.torus();
  if (tag < -1 || kTagTorus + kMaxParts * (tag + 2) > 32767)
    throw std::invalid_argument("torus allreduce: tag " + std::to_string(tag) + " outside -1.." +
                                std::to_string((32767 - kTagTorus) / kMaxParts - 2));
  tag_base_ = kTagTorus + kMaxParts * (tag + 1);
  if (n == 0) return;
  const std::vector<TorusRoute>& routes = tc.routes();
  if (routes.empty()) return;  // every extent 1: one node
  const int nparts = int(routes.size());
  if (nparts > kMaxParts)
    throw std::invalid_argument("torus allreduce: " + t.to_string() + " has more than " +
                                std::to_string(kMaxParts / 4) + " dimensions");
  if (n / nparts >= INT32_MAX)
    throw std::invalid_argument("allreduce_torus: " + std::to_string(n) + " floats per part exceed MPI's int count");
  // Equal parts (sized for equal bytes per link they were slower in simulation, 1.01 against
  // 0.95 ms on the 768-node 6-D torus; balancing directions and orders instead is torus_routes).
  for (int q = 0; q < nparts; ++q) {
    Part part;
    const Range r = split_evenly(n, nparts, q);
    part.begin = r.begin, part.end = r.end;
    part.order = routes[size_t(q)].dims;
    part.dirs = routes[size_t(q)].dirs;
    part.tmp.resize(r.size() / 2 + 1);
    parts_.push_back(std::move(part));
  }
  reqs_.assign(size_t(2 * nparts), MPI_REQUEST_NULL);
  remaining_ = nparts;
  for (int q = 0; q < nparts; ++q) post(q);
}

template <class T>
TorusAllreduce<T>::~TorusAllreduce() {
  if (remaining_ > 0) {
    try {
      wait();
    } catch (...) {
      // A destructor must not throw; the MPI error was already reported by whoever failed.
    }
  }
}

template <class T>
void TorusAllreduce<T>::post(int q) {
  Part& pt = parts_[size_t(q)];
  const Communicator& ring = tc_->ring(pt.order[size_t(pt.phase)]);
  const int p = ring.size(), r = ring.rank();
  const int dir = pt.dirs[size_t(pt.phase)];
  const int right = mod(r + dir, p), left = mod(r - dir, p);
  if (pt.step == 0 && !pt.gathering) pt.ranges.push_back({pt.begin, pt.end});
  const int64_t len = pt.end - pt.begin;
  // Reduce-scatter step s: send chunk r - dir(s+1), receive chunk r - dir(s+2); allgather
  // step s: send chunk r - dir·s, receive chunk r - dir(s+1) (chunks of the phase's range).
  const int s = pt.step;
  const int out_c = pt.gathering ? mod(r - dir * s, p) : mod(r - dir * (s + 1), p);
  const int in_c = pt.gathering ? mod(r - dir * (s + 1), p) : mod(r - dir * (s + 2), p);
  const Range out = split_evenly(len, p, out_c), in = split_evenly(len, p, in_c);
  if (!pt.gathering) pt.tmp.resize(in.size());
  T* recv_to = pt.gathering ? data_ + pt.begin + in.begin : pt.tmp.data();
  const int tag = tag_base_ + q;
  HOKUSAI_MPI(MPI_Irecv(recv_to, int(in.size()), Elem<T>::mpi(), left, tag, ring.raw(), &reqs_[size_t(2 * q)]));
  HOKUSAI_MPI(MPI_Isend(data_ + pt.begin + out.begin, int(out.size()), Elem<T>::mpi(), right, tag, ring.raw(),
                        &reqs_[size_t(2 * q + 1)]));
  pt.in_begin = pt.begin + in.begin, pt.in_size = in.size();
  pt.posted = true;
}

// After part q's step completed: reduce what arrived, move to the next step, phase or stage.
template <class T>
void TorusAllreduce<T>::advance(int q) {
  Part& pt = parts_[size_t(q)];
  pt.posted = false;
  const Communicator& ring = tc_->ring(pt.order[size_t(pt.phase)]);
  const int p = ring.size(), r = ring.rank();
  if (!pt.gathering) Elem<T>::add(data_ + pt.in_begin, pt.tmp.data(), pt.in_size);
  if (++pt.step < p - 1) return;
  pt.step = 0;
  const int D = int(pt.order.size());
  if (!pt.gathering) {  // keep my chunk of this phase's range, go to the next dimension
    const Range mine = split_evenly(pt.end - pt.begin, p, r);
    pt.end = pt.begin + mine.end;
    pt.begin += mine.begin;
    if (++pt.phase == D) {  // fully reduced: the allgather walks the dimensions back
      if (op_ == ReduceOp::average) Elem<T>::scale(data_ + pt.begin, pt.end - pt.begin, 1.0f / float(tc_->size()));
      pt.gathering = true;
      pt.phase = D - 1;
      pt.begin = pt.ranges.back().first, pt.end = pt.ranges.back().second;
    }
  } else if (pt.phase == 0) {
    pt.done = true;
  } else {
    pt.ranges.pop_back();
    --pt.phase;
    pt.begin = pt.ranges.back().first, pt.end = pt.ranges.back().second;
  }
}

// Each part advances on its own: its next ring step is posted as soon as its previous one has
// completed (no round waits for the slowest part).
template <class T>
bool TorusAllreduce<T>::progress(bool block) {
  while (remaining_ > 0) {
    int count = 0;
    finished_.resize(reqs_.size());
    if (block)
      HOKUSAI_MPI(MPI_Waitsome(int(reqs_.size()), reqs_.data(), &count, finished_.data(), MPI_STATUSES_IGNORE));
    else
      HOKUSAI_MPI(MPI_Testsome(int(reqs_.size()), reqs_.data(), &count, finished_.data(), MPI_STATUSES_IGNORE));
    bool moved = false;
    for (size_t q = 0; q < parts_.size(); ++q) {
      Part& pt = parts_[q];
      if (!pt.posted || reqs_[2 * q] != MPI_REQUEST_NULL || reqs_[2 * q + 1] != MPI_REQUEST_NULL) continue;
      advance(int(q));
      moved = true;
      if (pt.done)
        --remaining_;
      else
        post(int(q));
    }
    if (!block && !moved) return false;
  }
  return true;
}

template <class T>
void allreduce_torus(const TorusComms& tc, T* data, int64_t n, ReduceOp op) {
  TorusAllreduce<T>(tc, data, n, op).wait();
}

Hierarchy::Hierarchy(const Communicator& comm, int per_node, const Torus* nodes) : size_(comm.size()) {
  if (per_node < 1 || comm.size() % per_node != 0)
    throw std::invalid_argument("hierarchy: " + std::to_string(comm.size()) + " ranks do not fill nodes of " +
                                std::to_string(per_node));
  const int r = comm.rank();
  node_ = comm.split(r / per_node, r % per_node);
  across_ = comm.split(r % per_node, r / per_node);
  if (nodes) torus_ = std::make_unique<TorusComms>(across_, *nodes);
}

template <class T>
void allreduce_hierarchical(const Hierarchy& h, T* data, int64_t n, ReduceOp op) {
  if (h.size() == 1 || n == 0) return;
  const Communicator& node = h.node();
  reduce_scatter_ring(node, data, n, ReduceOp::sum);
  const Range mine = split_evenly(n, node.size(), node.rank());
  if (h.across_torus())
    allreduce_torus(*h.across_torus(), data + mine.begin, mine.size(), ReduceOp::sum);
  else
    allreduce(h.across(), data + mine.begin, mine.size(), ReduceOp::sum);
  if (op == ReduceOp::average) Elem<T>::scale(data + mine.begin, mine.size(), 1.0f / float(h.size()));
  allgather_ring(node, data, n);
}

template class TorusAllreduce<float>;
template class TorusAllreduce<bf16>;
template void allreduce_torus<float>(const TorusComms&, float*, int64_t, ReduceOp);
template void allreduce_torus<bf16>(const TorusComms&, bf16*, int64_t, ReduceOp);
template void allreduce_hierarchical<float>(const Hierarchy&, float*, int64_t, ReduceOp);
template void allreduce_hierarchical<bf16>(const Hierarchy&, bf16*, int64_t, ReduceOp);

}  // namespace hokusai::comm
