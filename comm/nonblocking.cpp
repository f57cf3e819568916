#include "comm/nonblocking.hpp"

#include <climits>
#include <stdexcept>
#include <string>

namespace hokusai::comm {

namespace {
int mod(int a, int p) { return ((a % p) + p) % p; }
int count_arg(int64_t n) {
  if (n > INT_MAX) throw std::invalid_argument("non-blocking transfer of " + std::to_string(n) +
                                               " floats exceeds MPI's int count: split it into buckets");
  return int(n);
}
}  // namespace

Request& Request::operator=(Request&& o) noexcept {
  if (this != &o) {
    if (r_ != MPI_REQUEST_NULL) MPI_Wait(&r_, MPI_STATUS_IGNORE);
    r_ = std::exchange(o.r_, MPI_REQUEST_NULL);
  }
  return *this;
}

Request::~Request() {
  if (r_ != MPI_REQUEST_NULL) MPI_Wait(&r_, MPI_STATUS_IGNORE);
}

bool Request::test() {
  if (r_ == MPI_REQUEST_NULL) return true;
  int flag = 0;
  HOKUSAI_MPI(MPI_Test(&r_, &flag, MPI_STATUS_IGNORE));
  return flag != 0;
}

void Request::wait() {
  if (r_ != MPI_REQUEST_NULL) HOKUSAI_MPI(MPI_Wait(&r_, MPI_STATUS_IGNORE));
}

int pipeline_tag(int micro_batch, bool gradient) { return 2 * micro_batch + (gradient ? 1 : 0); }

Request isend(const Communicator& comm, const float* data, int64_t count, int dst, int tag) {
  MPI_Request r;
  HOKUSAI_MPI(MPI_Isend(data, count_arg(count), MPI_FLOAT, dst, tag, comm.raw(), &r));
  return Request(r);
}

Request irecv(const Communicator& comm, float* data, int64_t count, int src, int tag) {
  MPI_Request r;
  HOKUSAI_MPI(MPI_Irecv(data, count_arg(count), MPI_FLOAT, src, tag, comm.raw(), &r));
  return Request(r);
}

AllreduceHandle::AllreduceHandle(const Communicator& comm, float* data, int64_t count, ReduceOp op,
                                 AllreduceAlgorithm algorithm, int tag, const TorusComms* torus,
                                 std::vector<float>* scratch)
    : comm_(&comm), data_(data), count_(count), op_(op), tag_(tag), p_(comm.size()), rank_(comm.rank()),
      scratch_(scratch) {
  if (algorithm == AllreduceAlgorithm::torus && !torus)
    throw std::invalid_argument("non-blocking allreduce: the torus algorithm needs the communicator's TorusComms");
  if (algorithm == AllreduceAlgorithm::hierarchical)
    throw std::invalid_argument("non-blocking allreduce: the hierarchical algorithm needs the communicator's "
                                "Hierarchy (the other constructor)");
  if (torus && torus->size() != p_)
    throw std::invalid_argument("non-blocking allreduce: the torus has " + std::to_string(torus->size()) +
                                " nodes, the communicator " + std::to_string(p_) + " ranks");
  if (p_ == 1 || count == 0) {
    done_ = true;
    return;
  }
  algorithm = resolve_allreduce(algorithm, count * 4, p_, torus ? Layout::torus : Layout::flat);
  if (algorithm == AllreduceAlgorithm::torus) {
    mode_ = Mode::torus;
    torus_ = std::make_unique<TorusAllreduce<float>>(*torus, data, count, op, tag);
    return;
  }
  if (algorithm == AllreduceAlgorithm::mpi) {  // Rabenseifner's exchange pattern is not pipelined here: ring
    mode_ = Mode::mpi;
    reqs_.resize(1);
    HOKUSAI_MPI(MPI_Iallreduce(MPI_IN_PLACE, data_, count_arg(count), MPI_FLOAT, MPI_SUM, comm.raw(), &reqs_[0]));
    return;
  }
  receive_into(scratch, count / p_ + 1);
  last_step_ = 2 * (p_ - 1);
  post_step();
}

void AllreduceHandle::receive_into(std::vector<float>* scratch, int64_t count) {
  std::vector<float>& buf = scratch ? *scratch : tmp_;
  if (int64_t(buf.size()) < count) buf.resize(size_t(count));
  recv_ = buf.data();
}

AllreduceHandle::AllreduceHandle(const Communicator& comm, float* data, std::vector<Range> chunks, int first_step,
                                 int tag, std::vector<float>* scratch)
    : comm_(&comm), data_(data), op_(ReduceOp::sum), tag_(tag), step_(first_step), p_(comm.size()),
      rank_(comm.rank()), chunks_(std::move(chunks)), scratch_(scratch) {
  if (int(chunks_.size()) != p_)
    throw std::invalid_argument("ring reduce-scatter/allgather: " + std::to_string(chunks_.size()) + " chunks for " +
                                std::to_string(p_) + " ranks");
  int64_t at = 0, widest = 0;
  for (const Range& c : chunks_) {
    if (c.begin != at || c.end < c.begin)
      throw std::invalid_argument("ring reduce-scatter/allgather: the chunks must be contiguous, in rank order");
    at = c.end;
    widest = std::max(widest, c.size());
  }
  count_ = at;
  last_step_ = first_step + p_ - 1;
  if (p_ == 1 || count_ == 0) {
    done_ = true;
    return;
  }
  if (first_step == 0) receive_into(scratch, widest);
  post_step();
}

AllreduceHandle AllreduceHandle::ring_reduce_scatter(const Communicator& comm, float* data, std::vector<Range> chunks,
                                                     int tag, std::vector<float>* scratch) {
  return AllreduceHandle(comm, data, std::move(chunks), 0, tag, scratch);
}

AllreduceHandle AllreduceHandle::ring_allgather(const Communicator& comm, float* data, std::vector<Range> chunks,
                                                int tag) {
  const int steps = comm.size() - 1;
  return AllreduceHandle(comm, data, std::move(chunks), steps, tag, nullptr);
}

Range AllreduceHandle::chunk(int q) const {
  return chunks_.empty() ? split_evenly(count_, p_, q) : chunks_[size_t(q)];
}

AllreduceHandle::AllreduceHandle(const Hierarchy& h, float* data, int64_t count, ReduceOp op, int tag,
                                 std::vector<float>* scratch)
    : comm_(&h.node()), data_(data), count_(count), op_(op), mode_(Mode::hierarchical), tag_(tag),
      p_(h.node().size()), rank_(h.node().rank()), scratch_(scratch), hierarchy_(&h) {
  if (h.size() == 1 || count == 0) {
    done_ = true;
    return;
  }
  receive_into(scratch, count / p_ + 1);
  last_step_ = 2 * (p_ - 1);
  if (p_ > 1)
    post_step();
  else
    finish_step();  // one rank per node: straight to the allreduce across nodes
}

AllreduceHandle::AllreduceHandle(AllreduceHandle&& o) noexcept
    : comm_(std::exchange(o.comm_, nullptr)),
      data_(o.data_),
      count_(o.count_),
      op_(o.op_),
      mode_(o.mode_),
      done_(std::exchange(o.done_, true)),
      tag_(o.tag_),
      step_(o.step_),
      p_(o.p_),
      rank_(o.rank_),
      last_step_(o.last_step_),
      chunks_(std::move(o.chunks_)),
      tmp_(std::move(o.tmp_)),
      scratch_(o.scratch_),
      recv_(o.recv_),
      reqs_(std::move(o.reqs_)),
      torus_(std::move(o.torus_)),
      hierarchy_(o.hierarchy_),
      across_(std::move(o.across_)) {}

AllreduceHandle::~AllreduceHandle() {
  if (!done_ && comm_) {
    try {
      wait();
    } catch (...) {
      // A destructor must not throw; the MPI error was already reported by whoever failed.
    }
  }
}

// Ring steps 0 .. p-2 reduce-scatter, p-1 .. 2p-3 allgather (ring schedule of
// reduce_scatter_ring / allgather_ring).
void AllreduceHandle::post_step() {
  const int right = mod(rank_ + 1, p_), left = mod(rank_ - 1, p_);
  const bool rs = step_ < p_ - 1;
  const int s = rs ? step_ : step_ - (p_ - 1);
  const Range out = chunk(rs ? mod(rank_ - s - 1, p_) : mod(rank_ - s, p_));
  const Range in = chunk(rs ? mod(rank_ - s - 2, p_) : mod(rank_ - s - 1, p_));
  reqs_.assign(2, MPI_REQUEST_NULL);
  HOKUSAI_MPI(MPI_Irecv(rs ? recv_ : data_ + in.begin, count_arg(in.size()), MPI_FLOAT, left, tag_,
                        comm_->raw(), &reqs_[0]));
  HOKUSAI_MPI(MPI_Isend(data_ + out.begin, count_arg(out.size()), MPI_FLOAT, right, tag_, comm_->raw(), &reqs_[1]));
}

bool AllreduceHandle::finish_step() {
  if (step_ < p_ - 1) {
    const Range in = chunk(mod(rank_ - step_ - 2, p_));
    Elem<float>::add(data_ + in.begin, recv_, in.size());
    if (step_ == p_ - 2 && op_ == ReduceOp::average && mode_ == Mode::ring) {
      const Range mine = chunk(rank_);
      Elem<float>::scale(data_ + mine.begin, mine.size(), 1.0f / float(p_));
    }
    ++step_;
  } else if (p_ > 1) {
    ++step_;
  }
  // Hierarchical: once my chunk holds the node's sum, it crosses the nodes before the allgather.
  if (mode_ == Mode::hierarchical && step_ == p_ - 1 && !across_) {
    const Range mine = split_evenly(count_, p_, rank_);
    // Point-to-point only (torus or ring, told apart by tag): nodes reach this point for the
    // handles in flight in different orders, and MPI_Iallreduce would need the same order on all.
    across_ = std::make_unique<AllreduceHandle>(
        hierarchy_->across(), data_ + mine.begin, mine.size(), ReduceOp::sum,
        hierarchy_->across_torus() ? AllreduceAlgorithm::torus : AllreduceAlgorithm::ring, tag_,
        hierarchy_->across_torus(), scratch_ ? scratch_ : &tmp_);
    return false;
  }
  if (step_ >= last_step_) return true;
  post_step();
  return false;
}

// Advances as far as completed transfers allow (blocking: until done).
bool AllreduceHandle::progress(bool block) {
  while (!done_) {
    if (mode_ == Mode::torus) {
      if (block)
        torus_->wait();
      else if (!torus_->test())
        return false;
      done_ = true;
      break;
    }
    if (across_) {  // hierarchical, between the node's reduce-scatter and allgather
      if (block)
        across_->wait();
      else if (!across_->test())
        return false;
      if (op_ == ReduceOp::average) {
        const Range mine = split_evenly(count_, p_, rank_);
        Elem<float>::scale(data_ + mine.begin, mine.size(), 1.0f / float(hierarchy_->size()));
      }
      across_.reset();
      // Past the allreduce across nodes: the allgather's steps (none with one rank per node).
      if (step_ >= 2 * (p_ - 1)) {
        done_ = true;
        break;
      }
      post_step();
      continue;
    }
    int flag = 0;
    if (block) {
      HOKUSAI_MPI(MPI_Waitall(int(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE));
      flag = 1;
    } else {
      HOKUSAI_MPI(MPI_Testall(int(reqs_.size()), reqs_.data(), &flag, MPI_STATUSES_IGNORE));
    }
    if (!flag) return false;
    if (mode_ == Mode::mpi) {
      if (op_ == ReduceOp::average)
        Elem<float>::scale(data_, count_, 1.0f / float(p_));
      done_ = true;
    } else {
      done_ = finish_step();
    }
  }
  return true;
}

bool AllreduceHandle::test() { return progress(false); }

void AllreduceHandle::wait() { progress(true); }

}  // namespace hokusai::comm
