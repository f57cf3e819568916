// Pipeline parallelism: the 1F1B schedule over one pipeline (the pp communicator), with
// non-blocking point-to-point transfers of activations (forward) and their gradients (backward)
// between neighbouring stages, tagged by micro-batch (comm::pipeline_tag).
//
// 1F1B on stage s of P with m micro-batches (Narayanan et al., PipeDream-Flush; Megatron's
// default): w = min(P - s - 1, m) warm-up forwards, then alternately one forward and one
// backward, then the w remaining backwards. Stage s keeps at most min(P - s, m) micro-batches
// between forward and backward (the model's slots; micro-batch i uses slot i % slots), against
// m for GPipe's all-forwards-then-all-backwards. Example, P = 4, m = 6 (F3 = forward of micro-batch 3):
//     stage 0: F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5
//     stage 1:    F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5
//     stage 2:       F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5
//     stage 3:          F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5
// The bubble (stage idle while the pipeline fills and drains) is (P - 1) / (m + P - 1) of the step.
//
// Interleaved 1F1B (Narayanan et al. 2021; Megatron's virtual pipeline): each stage holds v model
// chunks, chunk c of stage s being virtual stage c*P + s, so a micro-batch goes round the ring of
// stages v times. Forwards run in groups of P micro-batches per chunk (chunk 0 of micro-batches
// 0..P-1, chunk 1 of the same, ..., then micro-batches P..2P-1), backwards in the mirrored chunk
// order; (P - s - 1)*2 + (v - 1)*P warm-up forwards (all of them when m = P). The bubble shrinks
// to (P - 1) / (v*m + P - 1) for v times the point-to-point messages; m must be a multiple of P.
//
// Both orders are lists of operations (schedule()) run by one executor: a forward takes a free
// activation slot and a backward frees it, so the model needs as many slots as the schedule's
// most micro-batch chunks in flight (slots()).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <vector>

#include "comm/mpi.hpp"
#include "comm/nonblocking.hpp"
#include "hokusai/model.hpp"
#include "parallel/schedule.hpp"

namespace hokusai::parallel {

class Pipeline {
 public:
  using Op = ScheduleOp;  // parallel/schedule.hpp
  static std::vector<Op> schedule(int stages, int stage, int micro_batches, int chunks = 1) {
    return pipeline_schedule(stages, stage, micro_batches, chunks);
  }
  static int slots(int stages, int stage, int micro_batches, int chunks = 1) {
    return pipeline_slots(stages, stage, micro_batches, chunks);
  }

  // pp: this rank's pipeline (rank = stage). model: this stage (its dims().chunks chunks), built
  // with at least slots(pp.size(), pp.rank(), m, chunks) slots for the m it will run. B, T:
  // micro-batch shape.
  Pipeline(const comm::Communicator& pp, Model<float>& model, int64_t B, int64_t T);

  // Fills micro-batch i's tokens and targets (B*T each); called once per micro-batch per run.
  using Batch = std::function<void(int micro, int32_t* tokens, int32_t* targets)>;

  // Forward and backward of m micro-batches in schedule() order. dloss weights each token's
  // loss; `ready_last` goes to each chunk's last backward (data-parallel buckets), which also sums
  // the sequence-parallel norms' gradients over tp (Model::backward's `last`). Returns the
  // sum of the losses on the last stage, 0 elsewhere.
  double train(const ComputeContext& ctx, int m, const Batch& batch, float dloss,
               const Model<float>::GradsReady& ready_last);
  // Forward only (validation), micro-batch after micro-batch, slot 0. Loss sum as train().
  double forward_only(const ComputeContext& ctx, int m, const Batch& batch);

  // Seconds spent waiting for a neighbour's activation or gradient since the last call: the
  // bubble plus transfer time not hidden.
  double take_wait_seconds();
  // Bytes of the transfer and token buffers.
  int64_t buffer_bytes() const;

 private:
  const comm::Communicator& pp_;
  Model<float>& model_;
  int64_t B_, T_;
  // What a boundary carries (Model::boundary_rows): its values, and where its rows start in a
  // B*T*C tensor.
  int64_t count_, offset_;
  int stage_, stages_, chunks_;
  std::vector<std::vector<int32_t>> tokens_, targets_;  // per slot
  std::vector<float> dy_;                                // received output gradient
  std::vector<comm::Request> sent_output_;               // per slot: the forward output in flight
  // Input gradients on their way to the previous stage, each in its own buffer: a send never
  // waits for the receiver, so no order of receives can deadlock against it.
  struct GradSend {
    std::vector<float> data;
    comm::Request request;
  };
  std::list<GradSend> grad_sends_;
  double wait_s_ = 0.0;
  void receive(float* full, int from, int tag);
  int tag(int micro, int chunk, bool gradient) const;
  // Forward of (micro, chunk) in `slot`: receive the input unless this is the first virtual
  // stage, run the chunk, send its output on unless this is the last. Returns its loss sum.
  // head, dloss: what the head does (training: its gradient with dloss; evaluation: the loss).
  double forward(const ComputeContext& ctx, const Batch& batch, int micro, int chunk, int slot, HeadPass head,
                 float dloss = 0.0f);
};

}  // namespace hokusai::parallel
