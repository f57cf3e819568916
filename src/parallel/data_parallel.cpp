#include "parallel/data_parallel.hpp"

#include <mpi.h>

namespace hokusai::parallel {

DataParallel::DataParallel(const comm::Communicator& dp, std::span<float> grads, comm::AllreduceAlgorithm algorithm,
                           const comm::TorusComms* torus)
    : dp_(dp), grads_(grads), algorithm_(algorithm), torus_(torus) {}

void DataParallel::progress() {
  for (auto& h : inflight_)
    if (!h.done()) h.test();
}

void DataParallel::ready(int64_t begin, int64_t end) {
  if (dp_.size() == 1 || end <= begin) return;
  progress();
  // Tags are the bucket's position in this step: every rank reports the same ranges in the same
  // (backward) order.
  inflight_.emplace_back(dp_, grads_.data() + begin, end - begin, comm::ReduceOp::sum, algorithm_,
                         int(inflight_.size()) + 1, torus_);
}

double DataParallel::finish() {
  const double t0 = MPI_Wtime();
  for (auto& h : inflight_) h.wait();
  inflight_.clear();
  return MPI_Wtime() - t0;
}

}  // namespace hokusai::parallel
