// What a Model keeps between forward and backward, and where: one slot's saved activations
// (BlockActs per block, Activations per slot), the shared gradient scratch (Scratch), all views
// into one arena that lay_out_activations places (and counts, for the planner).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "hokusai/model.hpp"

namespace hokusai {

// Saved-for-backward tensors of one block, sized for (max_B, max_T). What is allocated depends
// on the recomputation mode: everything (none), all but probs/lse and atty (selective), only out
// (full); the rest lives in Scratch and is recomputed in backward. The attention keeps probs
// (gemm) or lse (flash). Nr: the token rows this rank keeps of the residual stream — N, or its
// sequence-parallel block (ModelDims::sequence_parallel).
// A norm keeps its normalized rows xn and 1/std (all its backward reads), not its input: the
// norms' outputs (ln1, ln2) and resid2 = x + attention branch are working tensors in Scratch,
// the outputs rebuilt from xn in backward (norm_scale_forward), so no block keeps a row of the
// fp32 residual stream but its output `out` where that is needed.
template <typename T>
struct BlockActs {
  std::span<T> xn1, rstd1;  // (Nr,C), (Nr): the first norm's normalized rows, 1/std
  std::span<T> qkv;         // (N, (NH+2*KV)*HS), after rotary for llama
  std::span<T> probs;       // (B, NH, T, T)  gemm attention
  std::span<T> lse;         // (B, NH, T)     flash attention: log-sum-exp per row
  std::span<T> atty;        // (N, NH*HS)
  std::span<T> xn2, rstd2;  // (Nr,C), (Nr): the second norm's (its input: resid2)
  std::span<T> fch;         // (N,F) gpt2, (N,2F) llama: MLP pre-activation
  std::span<T> fch_act;     // (N,F)
  // (Nr,C) resid2 + MLP branch: kept by a chunk's last block (the stage's output, the final
  // norm's input) and under full recomputation by every block (where backward re-runs from);
  // the other blocks write it into the scratch's stream, the next block's input.
  std::span<T> out;
  // 16-bit saved activations (Model's `saved` precision): qkv enters only products, which round
  // it to that precision anyway; xn1, xn2, fch and atty are rounded where they are made in a
  // 16-bit run (made_in, round_made: the norms' outputs are made from the rounded rows, so
  // backward rebuilds exactly what forward multiplied); fch_act is rebuilt from fch. So the block keeps
  // xn1, qkv, xn2, fch (and atty when it keeps the attention) as 16-bit patterns here, leaves the
  // fp32 vectors above empty and keeps no fch_act. The norms and the MLP activation read their
  // inputs as patterns (kernels::*_bits); for qkv and atty, fp32 working copies from the scratch
  // stand in while the block runs (Halves).
  std::span<uint16_t> xn1_h, qkv_h, xn2_h, fch_h, atty_h;
};

// One micro-batch's saved activations (one pipeline slot).
template <typename T>
struct Activations {
  int64_t B = 0, T_ = 0;  // shape of the slot's last forward
  // (N,C): the embedding, or the previous stage's output — kept per slot only where something
  // after the forward reads it (full recomputation re-runs from it; a chunk without blocks sends
  // it on as its output); otherwise the slots share the scratch's `input` (the first norm keeps
  // its normalized rows, so no backward reads a block's input).
  std::span<T> encoded;
  std::vector<BlockActs<T>> blocks;         // L
  std::span<T> output;                      // (N,C) sequence parallelism, the head's stage: all rows gathered
  std::span<T> lnf, lnf_mean, lnf_rstd;     // (N,C), (N), (N)   last stage
  std::span<T> lse, losses;                 // (N), (N)          last stage
  std::span<T> dlnf;                        // (N,C)  HeadPass::gradient: the gradient of lnf
  std::vector<T> logits;                    // (N,Vl) HeadPass::logits only, allocated on first use
  HeadPass head = HeadPass::logits;         // what the slot's last forward did at the head
  T head_dloss = T(0);                      // and with which dloss (HeadPass::gradient)
};

// Gradient scratch, one block's worth, reused layer by layer and slot by slot; and the block
// tensors that recomputation rebuilds. Like the slots' activations, every buffer is a view into
// `arena` (lay_out_activations): the head's block of logits and the tensors only a running block
// uses (its gradients, working rows, recomputed and fp32 working tensors) are never live at once,
// so they share bytes there.
template <typename T>
struct Scratch {
  std::span<T> dres_a, dres_b, dln;                    // (N,C)
  std::span<T> datty, dqkv, dfch_act, dfch;            // (N,A), (N,QKV), (N,F), (N,2F) llama only
  std::span<T> dlosses;                                // (N)   last stage (dlogits: over the slot's logits)
  // A block's working rows (Nr,C): a norm's output (ln1, then ln2; rebuilt from xn in backward)
  // and resid2; and the residual stream between blocks that keep no `out` (two, alternating).
  std::span<T> ln, resid2;
  std::array<std::span<T>, 2> stream;
  std::span<T> input;  // (N,C) the running forward's input, where no slot keeps its own (`encoded`)
  std::span<T> head_logits;  // (head_block_rows, Vl) last stage: one block of rows' logits, then their gradient
  // Sequence parallelism: gathered rows (a norm's output, a branch's gradient), a linear's partial
  // sums before the reduce-scatter; the norms' weight gradients of every local layer, this rank's
  // rows' part summed over the step's micro-batches until the last backward sums them over tp.
  std::span<T> sp_in, sp_out, sp_norm_grads;           // (N,C), (N,C), (L, 4C)
  std::span<T> flash_dq;  // flash attention backward: the key chunks' dQ parts (flash_backward_parts_max)
  BlockActs<T> re;  // selective: probs, atty; full: every tensor of one block
  BlockActs<T> work;  // 16-bit saved activations: fp32 qkv, fch_act, atty (and SwiGLU's fch) of the running block
  CacheLineVector<std::byte> arena;  // every activation and scratch buffer of the model (lay_out_activations)
};

// Places lay_out_activations' buffers: views into one byte arena, each at a 64-byte boundary, in
// the order asked (base null: counting only, every view empty). An overlay lays out alternatives
// never live at once over the same bytes and continues after the largest. bytes() sums the views
// (what activation_bytes reports); arena_bytes() adds the alignment padding (under 64 bytes a view).
class Carver {
 public:
  explicit Carver(std::byte* base) : base_(base) {}
  template <typename U>
  std::span<U> take(int64_t n) {
    at_ = (at_ + kAlign - 1) / kAlign * kAlign;
    const std::span<U> v = base_ ? std::span<U>(reinterpret_cast<U*>(base_ + at_), size_t(n)) : std::span<U>();
    at_ += n * int64_t(sizeof(U)), counted_ += n * int64_t(sizeof(U));
    return v;
  }
  template <typename... Lay>
  void overlay(const Lay&... lay) {
    const int64_t at = at_, counted = counted_;
    int64_t end = at, end_counted = counted;
    const auto one = [&](const auto& f) {
      at_ = at, counted_ = counted;
      f();
      end = std::max(end, at_), end_counted = std::max(end_counted, counted_);
    };
    (one(lay), ...);
    at_ = end, counted_ = end_counted;
  }
  int64_t bytes() const { return counted_; }
  int64_t arena_bytes() const { return at_; }
  static constexpr int64_t kAlign = 64;

 private:
  std::byte* base_;
  int64_t at_ = 0, counted_ = 0;
};

// What a Model allocates for activations and gradient scratch at (max_B, max_T) (activations.cpp):
// places them in the arena at `base`, or (base null) only counts them; returns the carver
// (bytes(): the count, arena_bytes(): the arena's size).
template <typename T>
Carver lay_out_activations(const ModelDims& dims, int64_t max_B, int64_t max_T, int slots, Recompute recompute,
                           Attention attention, kernels::Precision saved, std::byte* base,
                           std::vector<Activations<T>>& out, Scratch<T>& s);

}  // namespace hokusai
