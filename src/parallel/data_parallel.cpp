#include "parallel/data_parallel.hpp"

#include <mpi.h>

namespace hokusai::parallel {

DataParallel::DataParallel(const comm::Communicator& dp, std::span<float> grads, comm::AllreduceAlgorithm algorithm)
    : dp_(dp), grads_(grads), algorithm_(algorithm) {}

void DataParallel::progress() {
  for (size_t i = 0; i < inflight_.size(); ++i)
    if (!inflight_[i].done() && inflight_[i].test()) comm_seconds_ += MPI_Wtime() - started_[i];
}

void DataParallel::ready(int64_t begin, int64_t end) {
  if (dp_.size() == 1 || end <= begin) return;
  progress();
  // Tags are the bucket's position in this step: every rank reports the same ranges in the same
  // (backward) order.
  started_.push_back(MPI_Wtime());
  inflight_.emplace_back(dp_, grads_.data() + begin, end - begin, comm::ReduceOp::sum, algorithm_,
                         int(inflight_.size()) + 1);
}

DataParallel::StepTimes DataParallel::finish() {
  const double t0 = MPI_Wtime();
  for (size_t i = 0; i < inflight_.size(); ++i)
    if (!inflight_[i].done()) {
      inflight_[i].wait();
      comm_seconds_ += MPI_Wtime() - started_[i];
    }
  const StepTimes times{MPI_Wtime() - t0, comm_seconds_};
  inflight_.clear();
  started_.clear();
  comm_seconds_ = 0.0;
  return times;
}

}  // namespace hokusai::parallel
