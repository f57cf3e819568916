// Non-blocking communication: requests, pipeline point-to-point, and an allreduce handle that
// makes progress whenever it is tested, so a data-parallel gradient reduction can run while
// backward computes (the caller tests its handles between layers; no progress thread, so
// MPI_THREAD_FUNNELED suffices).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/mpi.hpp"
#include "comm/topology.hpp"

namespace hokusai::comm {

// One outstanding MPI request; the destructor waits, so no request outlives its buffer.
class Request {
 public:
  Request() = default;
  explicit Request(MPI_Request r) : r_(r) {}
  Request(Request&& o) noexcept : r_(std::exchange(o.r_, MPI_REQUEST_NULL)) {}
  Request& operator=(Request&& o) noexcept;
  ~Request();
  bool test();  // true when complete
  void wait();

 private:
  MPI_Request r_ = MPI_REQUEST_NULL;
};

// Pipeline-stage transfers of activations and gradients. The tag says which micro-batch and
// which direction, so transfers of different micro-batches may complete in any order.
int pipeline_tag(int micro_batch, bool gradient);
Request isend(const Communicator& comm, const float* data, int64_t count, int dst, int tag);
Request irecv(const Communicator& comm, float* data, int64_t count, int src, int tag);

// Non-blocking allreduce, in place. Algorithms: mpi (MPI_Iallreduce), ring (a state machine
// of Isend/Irecv steps advanced by test()), torus (TorusAllreduce, on the communicator's
// TorusComms) and hierarchical (ring reduce-scatter in the node, then the chunk's allreduce
// across nodes as a nested handle, then ring allgather in the node); automatic picks by
// choose_allreduce, with Rabenseifner mapped to ring. Handles outstanding at the same time on
// one communicator need distinct tags (e.g. the gradient bucket index); every rank must start
// them in the same order. The buffer must stay untouched until test() returns true or wait()
// returns.
// scratch: where the ring's reduce-scatter steps receive (a chunk, count / p + 1 floats); a
// caller that reduces every step keeps one vector per handle in flight and passes it, so no step
// allocates and first-touches tens of MB again (on one node that cost a dp rank ~10% of its
// step); it is grown when too small and must not be touched while the handle lives. nullptr:
// the handle allocates its own.
class AllreduceHandle {
 public:
  // torus: the communicator laid on a torus (TorusComms of `comm`), or nullptr. Throws
  // std::invalid_argument for the torus or hierarchical algorithm without their structure.
  AllreduceHandle(const Communicator& comm, float* data, int64_t count, ReduceOp op, AllreduceAlgorithm algorithm,
                  int tag, const TorusComms* torus = nullptr, std::vector<float>* scratch = nullptr);
  // The hierarchical allreduce over the communicator h was built from (its allreduce across
  // nodes receives into the same scratch: it starts after the node's reduce-scatter is done).
  AllreduceHandle(const Hierarchy& h, float* data, int64_t count, ReduceOp op, int tag,
                  std::vector<float>* scratch = nullptr);
  // The two halves of the ring allreduce on their own, with the chunk of each rank given
  // (chunks[q]: offsets into data, in rank order, contiguous and covering [0, count); empty ones
  // allowed). After ring_reduce_scatter, data[chunks[rank]] holds the sum over the ranks (the
  // rest is scratch); element for element the additions happen in the order of
  // reduce_scatter_ring, so a reduce-scatter split into ranges gives the same bits as one over
  // the whole. ring_allgather fills every rank's chunk from its owner.
  static AllreduceHandle ring_reduce_scatter(const Communicator& comm, float* data, std::vector<Range> chunks, int tag,
                                             std::vector<float>* scratch = nullptr);
  static AllreduceHandle ring_allgather(const Communicator& comm, float* data, std::vector<Range> chunks, int tag);
  // A moved-from handle is empty (done, no communicator): only the new owner completes it.
  AllreduceHandle(AllreduceHandle&& o) noexcept;
  AllreduceHandle& operator=(AllreduceHandle&&) = delete;
  ~AllreduceHandle();  // waits: an abandoned handle must not leave transfers in flight
  bool test();
  void wait();
  bool done() const { return done_; }

 private:
  enum class Mode { mpi, ring, torus, hierarchical };
  AllreduceHandle(const Communicator& comm, float* data, std::vector<Range> chunks, int first_step, int tag,
                  std::vector<float>* scratch);
  void receive_into(std::vector<float>* scratch, int64_t count);  // sets recv_
  Range chunk(int q) const;  // rank q's part of data: chunks_[q], or split_evenly
  void post_step();
  bool finish_step();  // after the step's transfers completed: reduce, advance; true when all done
  bool progress(bool block);
  const Communicator* comm_;  // the ring's communicator: the node's in hierarchical mode
  float* data_;
  int64_t count_;
  ReduceOp op_;
  Mode mode_ = Mode::ring;
  bool done_ = false;
  int tag_, step_ = 0, p_ = 1, rank_ = 0;
  int last_step_ = 0;          // the ring runs steps [step_, last_step_): 2(p-1) for an allreduce
  std::vector<Range> chunks_;  // empty: split_evenly
  std::vector<float> tmp_;           // the receive chunk when the caller gave no scratch
  std::vector<float>* scratch_ = nullptr;  // the caller's, else nullptr
  float* recv_ = nullptr;            // where reduce-scatter steps receive: tmp_ or *scratch_
  std::vector<MPI_Request> reqs_;
  std::unique_ptr<TorusAllreduce<float>> torus_;
  const Hierarchy* hierarchy_ = nullptr;
  std::unique_ptr<AllreduceHandle> across_;  // hierarchical: my chunk's allreduce across nodes
};

}  // namespace hokusai::comm
