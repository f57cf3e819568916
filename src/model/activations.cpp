// lay_out_activations: the one description of what a Model allocates (activations.hpp).
#include "activations.hpp"

#include <algorithm>

#include "comm/range.hpp"
#include "layers.hpp"

namespace hokusai {

// What a Model allocates for activations and gradient scratch at (max_B, max_T): the one
// description, used to place them in the arena at `base` and to count bytes for the planner (base
// null: views left empty). The head's block of logits (last stage, forward only) overlays what
// only a running block touches — its gradients but the two the stage's input gradient lives in
// (dres_a/b, read after backward), its working rows, the stream between blocks, the recomputed
// tensors and the fp32 working copies of 16-bit runs: up to 196 MiB at gpt2-124m's vocabulary,
// no longer beside them.
template <typename T>
Carver lay_out_activations(const ModelDims& dims, int64_t max_B, int64_t max_T, int slots, Recompute recompute,
                           Attention attention, kernels::Precision saved, std::byte* base,
                           std::vector<Activations<T>>& out, Scratch<T>& s) {
  Carver carve(base);
  const int64_t N = max_B * max_T, C = dims.C, A = dims.NH * dims.HS, F = dims.F, QKV = dims.qkv_rows();
  // The residual stream's rows on this rank: all, or the largest sequence-parallel block.
  const bool sp = dims.sequence_parallel && dims.chunk_layers() > 0;
  const int64_t Nr = sp ? comm::split_evenly(N, dims.tp, 0).size() : N;
  const int64_t FC = dims.fc_rows();
  // What the attention keeps for backward: the probabilities (gemm) or one log-sum-exp per row.
  const int64_t P = attention == Attention::gemm ? max_B * dims.NH * max_T * max_T : 0;
  const int64_t LSE = attention == Attention::flash ? max_B * dims.NH * max_T : 0;
  const auto sized = [&](int64_t n) { return carve.take<T>(n); };
  const auto sized16 = [&](int64_t n) { return carve.take<uint16_t>(n); };
  // Kept blocks store their product-only tensors in 16 bits (Halves) when the products are bf16
  // or fp16 (the double model of the gradient checks never is).
  const bool halves = saved != kernels::Precision::fp32 && std::is_same_v<T, float> && recompute != Recompute::full;
  // keep: every tensor (none, or the recomputation scratch); keep_attention: probs or lse, and
  // atty; half: xn1, qkv, xn2, fch (and atty) as 16-bit patterns, no fch_act (Halves); keep_out:
  // the block's output.
  const auto block = [&](bool keep, bool keep_attention, bool half, bool keep_out) {
    BlockActs<T> b;
    if (keep) {
      b.rstd1 = sized(Nr), b.rstd2 = sized(Nr);
      if (half)
        b.xn1_h = sized16(Nr * C), b.qkv_h = sized16(N * QKV), b.xn2_h = sized16(Nr * C), b.fch_h = sized16(N * FC);
      else
        b.xn1 = sized(Nr * C), b.qkv = sized(N * QKV), b.xn2 = sized(Nr * C), b.fch = sized(N * FC),
        b.fch_act = sized(N * F);
    }
    if (keep_attention) {
      b.probs = sized(P), b.lse = sized(LSE);
      if (half)
        b.atty_h = sized16(N * A);
      else
        b.atty = sized(N * A);
    }
    if (keep_out) b.out = sized(Nr * C);
    return b;
  };
  const int64_t Lc = dims.chunk_layers();
  const bool slot_inputs = recompute == Recompute::full || Lc == 0;  // see Activations::encoded
  out.resize(size_t(slots));
  if (!slot_inputs) s.input = sized(N * C);
  for (auto& a : out) {
    if (slot_inputs) a.encoded = sized(N * C);
    for (int64_t l = 0; l < Lc; ++l)  // one chunk's layers per slot
      a.blocks.push_back(block(recompute != Recompute::full, recompute == Recompute::none, halves,
                               recompute == Recompute::full || l == Lc - 1));
    if (dims.sequence_parallel && dims.has_head) a.output = sized(N * C);  // the final norm's input
    if (dims.has_head) {
      a.lnf = sized(N * C), a.lnf_mean = sized(N), a.lnf_rstd = sized(N);
      a.lse = sized(N), a.losses = sized(N), a.dlnf = sized(N * C);  // no logits: HeadPass
    }
  }
  s.dres_a = sized(N * C), s.dres_b = sized(N * C);
  if (sp) s.sp_norm_grads = sized(dims.L * 4 * C);
  if (dims.has_head) s.dlosses = sized(N);
  const auto block_time = [&] {
    if (recompute != Recompute::full)  // blocks before a chunk's last write their output here
      for (int64_t i = 0; i < std::min<int64_t>(2, Lc - 1); ++i) s.stream[size_t(i)] = sized(Nr * C);
    s.dln = sized(N * C);  // also the head's, in backward
    if (sp) s.sp_in = sized(N * C), s.sp_out = sized(N * C);
    s.datty = sized(N * A), s.dqkv = sized(N * QKV), s.dfch_act = sized(N * F);
    if (dims.family != Family::gpt2) s.dfch = sized(N * FC);  // GELU's gradient is made in dfch_act itself
    if (attention == Attention::flash)
      s.flash_dq = sized(model::flash_backward_parts_max(max_B, max_T, dims.NH, dims.KV, dims.HS));
    if (Lc > 0) s.ln = sized(Nr * C), s.resid2 = sized(Nr * C);
    if (recompute == Recompute::full) s.re = block(true, true, false, true);  // out: backward's re-run writes it
    if (halves) {
      s.work.qkv = sized(N * QKV), s.work.fch_act = sized(N * F);
      if (dims.family != Family::gpt2) s.work.fch = sized(N * FC);  // SwiGLU's input, in forward only
      if (recompute == Recompute::none) s.work.atty = sized(N * A);
    }
    if (recompute == Recompute::selective) s.re.probs = sized(P), s.re.lse = sized(LSE), s.re.atty = sized(N * A);
  };
  const auto head = [&] {
    if (dims.has_head) s.head_logits = sized(head_block_rows(N) * dims.Vl);
  };
  carve.overlay(block_time, head);
  return carve;
}

template Carver lay_out_activations<float>(const ModelDims&, int64_t, int64_t, int, Recompute, Attention,
                                           kernels::Precision, std::byte*, std::vector<Activations<float>>&,
                                           Scratch<float>&);
template Carver lay_out_activations<double>(const ModelDims&, int64_t, int64_t, int, Recompute, Attention,
                                            kernels::Precision, std::byte*, std::vector<Activations<double>>&,
                                            Scratch<double>&);

}  // namespace hokusai
