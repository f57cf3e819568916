#include "parallel/pipeline.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace hokusai::parallel {

Pipeline::Pipeline(const comm::Communicator& pp, Model<float>& model, int64_t B, int64_t T)
    : pp_(pp),
      model_(model),
      B_(B),
      T_(T),
      count_(model.boundary_rows(B * T).size() * model.dims().C),
      offset_(model.boundary_rows(B * T).begin * model.dims().C),
      stage_(pp.rank()),
      stages_(pp.size()),
      chunks_(model.dims().chunks) {
  const size_t slots = size_t(model.slots());
  tokens_.assign(slots, std::vector<int32_t>(size_t(B * T)));
  targets_.assign(slots, std::vector<int32_t>(size_t(B * T)));
  sent_output_.resize(slots);
  if (stage_ < stages_ - 1 || chunks_ > 1) dy_.resize(size_t(B * T * model.dims().C));
}

// The boundary's rows of a B*T*C tensor (Model::boundary_rows), at their offset in `full`.
void Pipeline::receive(float* full, int from, int tag) {
  const double t0 = comm::wall_time();
  comm::irecv(pp_, full + offset_, count_, from, tag).wait();
  wait_s_ += comm::wall_time() - t0;
}

// Virtual stage c*P + s sends forward to c*P + s + 1: the next stage, or stage 0's next chunk
// (and backward the other way). A message is tagged with its receiver's micro-batch and chunk.
int Pipeline::tag(int micro, int chunk, bool gradient) const {
  return comm::pipeline_tag(micro * chunks_ + chunk, gradient);
}

double Pipeline::forward(const ComputeContext& ctx, const Batch& batch, int micro, int chunk, int slot, HeadPass head,
                         float dloss) {
  const int P = stages_, s = stage_;
  const bool entry = s == 0 && chunk == 0, exit = s == P - 1 && chunk == chunks_ - 1;
  sent_output_[size_t(slot)].wait();  // the slot's previous output has left before it is overwritten
  batch(micro, tokens_[size_t(slot)].data(), targets_[size_t(slot)].data());
  if (!entry) receive(model_.input_buffer(slot), (s + P - 1) % P, tag(micro, chunk, false));
  const double loss =
      model_.forward(ctx, tokens_[size_t(slot)].data(), targets_[size_t(slot)].data(), B_, T_, slot, chunk, head, dloss);
  if (!exit)
    sent_output_[size_t(slot)] = comm::isend(pp_, model_.stage_output(slot), count_, (s + 1) % P,
                                             tag(micro, s == P - 1 ? chunk + 1 : chunk, false));
  return loss;
}

double Pipeline::train(const ComputeContext& ctx, int m, const Batch& batch, float dloss,
                       const Model<float>::GradsReady& ready_last) {
  const int P = stages_, s = stage_, v = chunks_;
  const std::vector<Op> ops = schedule(P, s, m, v);
  const int need = slots(P, s, m, v);
  if (model_.slots() < need)
    throw std::invalid_argument("Pipeline: stage " + std::to_string(s) + " has " + std::to_string(model_.slots()) +
                                " activation slots but its schedule over " + std::to_string(m) +
                                " micro-batches needs " + std::to_string(need));
  const int next = (s + 1) % P, prev = (s + P - 1) % P;
  std::vector<int> free_slots(size_t(model_.slots())), slot_of(size_t(m * v), -1);
  for (int i = 0; i < model_.slots(); ++i) free_slots[size_t(i)] = model_.slots() - 1 - i;
  double loss = 0.0;
  for (const Op& op : ops) {
    const bool entry = s == 0 && op.chunk == 0, exit = s == P - 1 && op.chunk == v - 1;
    if (op.forward) {
      const int slot = free_slots.back();
      free_slots.pop_back();
      slot_of[size_t(op.micro * v + op.chunk)] = slot;
      loss += forward(ctx, batch, op.micro, op.chunk, slot, HeadPass::gradient, dloss);
    } else {
      const int slot = slot_of[size_t(op.micro * v + op.chunk)];
      if (!exit) receive(dy_.data(), next, tag(op.micro, op.chunk, true));
      model_.backward(ctx, tokens_[size_t(slot)].data(), targets_[size_t(slot)].data(), dloss,
                      op.micro == m - 1 ? ready_last : nullptr, slot, exit ? nullptr : dy_.data(), op.chunk,
                      op.micro == m - 1);
      if (!entry) {  // a send buffer no transfer still uses (a new one if all are in flight)
        auto it = std::find_if(grad_sends_.begin(), grad_sends_.end(), [](GradSend& g) { return g.request.test(); });
        if (it == grad_sends_.end())
          it = grad_sends_.insert(grad_sends_.end(), GradSend{std::vector<float>(size_t(count_)), {}});
        std::copy_n(model_.input_grad(), count_, it->data.data());
        it->request = comm::isend(pp_, it->data.data(), count_, prev, tag(op.micro, s == 0 ? op.chunk - 1 : op.chunk, true));
      }
      free_slots.push_back(slot);
    }
  }
  for (auto& r : sent_output_) r.wait();
  for (auto& g : grad_sends_) g.request.wait();
  return loss;
}

double Pipeline::forward_only(const ComputeContext& ctx, int m, const Batch& batch) {
  double loss = 0.0;
  for (int i = 0; i < m; ++i)
    for (int c = 0; c < chunks_; ++c) loss += forward(ctx, batch, i, c, 0, HeadPass::loss);  // round the ring of virtual stages
  sent_output_[0].wait();
  return loss;
}

double Pipeline::take_wait_seconds() {
  const double w = wait_s_;
  wait_s_ = 0.0;
  return w;
}

int64_t Pipeline::buffer_bytes() const {
  int64_t grads = 0;
  for (const auto& g : grad_sends_) grads += int64_t(g.data.size());
  return int64_t(sizeof(float)) * (int64_t(dy_.size()) + grads) +
         int64_t(sizeof(int32_t)) * 2 * int64_t(tokens_.size()) * B_ * T_;
}

}  // namespace hokusai::parallel
