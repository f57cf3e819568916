// Data parallelism: the gradient arena is summed over the dp communicator in buckets, each
// started as soon as backward reports its range final (Model::GradsReady) and progressed while
// backward continues; finish() completes them. Every rank then holds the gradient of the whole
// global batch and takes the same optimizer step.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "comm/nonblocking.hpp"

namespace hokusai::parallel {

class DataParallel {
 public:
  // grads: the gradient arena of this rank; algorithm: the allreduce used per bucket (automatic:
  // choose_allreduce by the bucket's size and the dp group's layout); torus: the dp communicator
  // laid on the torus (GridComms::dp_torus), nodes: the dp communicator grouped by node
  // (GridComms::dp_nodes), each or both nullptr.
  DataParallel(const comm::Communicator& dp, std::span<float> grads,
               comm::AllreduceAlgorithm algorithm = comm::AllreduceAlgorithm::automatic,
               const comm::TorusComms* torus = nullptr, const comm::Hierarchy* nodes = nullptr);
  // The algorithm a bucket of `bytes` gets.
  comm::AllreduceAlgorithm algorithm_for(int64_t bytes) const;
  comm::Layout layout() const;
  // Starts reducing grads[begin, end) and progresses the buckets already in flight.
  void ready(int64_t begin, int64_t end);
  // Completes every bucket of this step. Returns the seconds it waited: the communication that
  // backward did not hide.
  double finish();

 private:
  const comm::Communicator& dp_;
  std::span<float> grads_;
  comm::AllreduceAlgorithm algorithm_;
  const comm::TorusComms* torus_;
  const comm::Hierarchy* nodes_;
  std::vector<comm::AllreduceHandle> inflight_;
  // One receive buffer per bucket position, kept from step to step (the buckets recur with the
  // same sizes): a deque, so adding one leaves the others where the handles point.
  std::deque<std::vector<float>> scratch_;
  void progress();
};

}  // namespace hokusai::parallel
