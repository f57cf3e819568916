#include "parallel/data_parallel.hpp"

#include <stdexcept>

namespace hokusai::parallel {

DataParallel::DataParallel(const comm::Communicator& dp, std::span<float> grads, comm::AllreduceAlgorithm algorithm,
                           const comm::TorusComms* torus, const comm::Hierarchy* nodes)
    : dp_(dp), grads_(grads), algorithm_(algorithm), torus_(torus), nodes_(nodes) {
  if (algorithm == comm::AllreduceAlgorithm::torus && !torus)
    throw std::invalid_argument("data parallel: the torus allreduce needs the dp group laid on a torus");
  if (algorithm == comm::AllreduceAlgorithm::hierarchical && !nodes)
    throw std::invalid_argument("data parallel: the hierarchical allreduce needs dp ranks on more than one node, "
                                "several per node");
}

comm::Layout DataParallel::layout() const {
  return torus_ ? comm::Layout::torus : nodes_ ? comm::Layout::nodes : comm::Layout::flat;
}

comm::AllreduceAlgorithm DataParallel::algorithm_for(int64_t bytes) const {
  return comm::resolve_allreduce(algorithm_, bytes, dp_.size(), layout());
}

void DataParallel::progress() {
  for (auto& h : inflight_)
    if (!h.done()) h.test();
}

void DataParallel::ready(int64_t begin, int64_t end) {
  if (dp_.size() == 1 || end <= begin) return;
  progress();
  // Tags are the bucket's position in this step: every rank reports the same ranges in the same
  // (backward) order.
  const int tag = int(inflight_.size()) + 1;
  const comm::AllreduceAlgorithm algo = algorithm_for(4 * (end - begin));
  if (scratch_.size() < inflight_.size() + 1) scratch_.emplace_back();
  std::vector<float>* scratch = &scratch_[inflight_.size()];
  if (algo == comm::AllreduceAlgorithm::hierarchical)
    inflight_.emplace_back(*nodes_, grads_.data() + begin, end - begin, comm::ReduceOp::sum, tag, scratch);
  else
    inflight_.emplace_back(dp_, grads_.data() + begin, end - begin, comm::ReduceOp::sum, algo, tag, torus_, scratch);
}

double DataParallel::finish() {
  const double t0 = comm::wall_time();
  for (auto& h : inflight_) h.wait();
  inflight_.clear();
  return comm::wall_time() - t0;
}

}  // namespace hokusai::parallel
