#include "parallel/pipeline.hpp"

#include <mpi.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace hokusai::parallel {

int Pipeline::slots(int stages, int stage, int micro_batches) {
  return std::max(1, std::min(stages - stage, micro_batches));
}

Pipeline::Pipeline(const comm::Communicator& pp, Model<float>& model, int64_t B, int64_t T)
    : pp_(pp), model_(model), B_(B), T_(T), NC_(B * T * model.dims().C), stage_(pp.rank()), stages_(pp.size()) {
  const size_t slots = size_t(model.slots());
  tokens_.assign(slots, std::vector<int32_t>(size_t(B * T)));
  targets_.assign(slots, std::vector<int32_t>(size_t(B * T)));
  sent_output_.resize(slots);
  if (stage_ < stages_ - 1) dy_.resize(size_t(NC_));
  if (stage_ > 0) dx_.resize(size_t(NC_));
}

void Pipeline::receive(float* data, int from, int tag) {
  const double t0 = MPI_Wtime();
  comm::irecv(pp_, data, NC_, from, tag).wait();
  wait_s_ += MPI_Wtime() - t0;
}

double Pipeline::train(const ComputeContext& ctx, int m, const Batch& batch, float dloss,
                       const Model<float>::GradsReady& ready_last) {
  const int slots = model_.slots();
  if (slots < Pipeline::slots(stages_, stage_, m))
    throw std::invalid_argument("Pipeline: stage " + std::to_string(stage_) + " has " + std::to_string(slots) +
                                " activation slots but 1F1B over " + std::to_string(m) + " micro-batches needs " +
                                std::to_string(Pipeline::slots(stages_, stage_, m)));
  const bool first = stage_ == 0, last = stage_ == stages_ - 1;
  double loss = 0.0;
  const auto forward = [&](int i) {
    const size_t slot = size_t(i % slots);
    sent_output_[slot].wait();  // the slot's previous output has left before it is overwritten
    batch(i, tokens_[slot].data(), targets_[slot].data());
    if (!first) receive(model_.input_buffer(int(slot)), stage_ - 1, comm::pipeline_tag(i, false));
    loss += model_.forward(ctx, tokens_[slot].data(), targets_[slot].data(), B_, T_, int(slot));
    if (!last)
      sent_output_[slot] = comm::isend(pp_, model_.stage_output(int(slot)), NC_, stage_ + 1, comm::pipeline_tag(i, false));
  };
  const auto backward = [&](int i) {
    const size_t slot = size_t(i % slots);
    if (!last) receive(dy_.data(), stage_ + 1, comm::pipeline_tag(i, true));
    model_.backward(ctx, tokens_[slot].data(), targets_[slot].data(), dloss, i == m - 1 ? ready_last : nullptr,
                    int(slot), last ? nullptr : dy_.data());
    if (!first) {
      sent_grad_.wait();
      std::copy_n(model_.input_grad(), NC_, dx_.data());
      sent_grad_ = comm::isend(pp_, dx_.data(), NC_, stage_ - 1, comm::pipeline_tag(i, true));
    }
  };
  const int warmup = std::min(stages_ - stage_ - 1, m);
  for (int i = 0; i < warmup; ++i) forward(i);
  for (int i = warmup; i < m; ++i) {
    forward(i);
    backward(i - warmup);
  }
  for (int i = m - warmup; i < m; ++i) backward(i);
  for (auto& r : sent_output_) r.wait();
  sent_grad_.wait();
  return loss;
}

double Pipeline::forward_only(const ComputeContext& ctx, int m, const Batch& batch) {
  const bool first = stage_ == 0, last = stage_ == stages_ - 1;
  double loss = 0.0;
  for (int i = 0; i < m; ++i) {
    sent_output_[0].wait();
    batch(i, tokens_[0].data(), targets_[0].data());
    if (!first) receive(model_.input_buffer(0), stage_ - 1, comm::pipeline_tag(i, false));
    loss += model_.forward(ctx, tokens_[0].data(), targets_[0].data(), B_, T_, 0);
    if (!last) sent_output_[0] = comm::isend(pp_, model_.stage_output(0), NC_, stage_ + 1, comm::pipeline_tag(i, false));
  }
  sent_output_[0].wait();
  return loss;
}

double Pipeline::take_wait_seconds() {
  const double w = wait_s_;
  wait_s_ = 0.0;
  return w;
}

int64_t Pipeline::buffer_bytes() const {
  return int64_t(sizeof(float)) * int64_t(dy_.size() + dx_.size()) +
         int64_t(sizeof(int32_t)) * 2 * int64_t(tokens_.size()) * B_ * T_;
}

}  // namespace hokusai::parallel
