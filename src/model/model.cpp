// Model assembly: embedding -> L blocks -> final norm -> output projection -> cross-entropy, and
// the exact reverse for backward. Legend as in include/hokusai/model.hpp.
#include <algorithm>
#include <climits>
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <type_traits>

#include "hokusai/model.hpp"
#include "hokusai/memory.hpp"
#include "kernels/ops.hpp"
#include "activations.hpp"
#include "layers.hpp"
#include "vocab_parallel.hpp"

namespace hokusai {

namespace k = kernels;
using model::linear_backward;
using model::linear_forward;

namespace {

template <typename T>
void zero(std::span<T> v, int64_t n) {
  kernels::fill_zero(v.data(), n);
}

// HeadPass loss and gradient take the logits this many rows at a time. Each block's products
// read the whole output projection (packed once per product): blocks of 256 rows made gpt2-124m's
// step at 1 x 2048 16% slower (its 155 MB projection packed 8 times per product instead of once);
// at 1024 that is twice and ~1%. A multiple of the native GEMM's k block (256), so for N a
// multiple of 256 the weight gradient sums over rows in the same passes as one product over all
// N rows would: the same bits. 1024 x 50,304 fp32 logits are 196 MiB, against N x 50,304 at once
// (393 MiB at gpt2-124m's 1 x 2048, 3.1 GiB at 8 x 2048).
constexpr int64_t kHeadRows = 1024;

// The tensor-parallel group when the model is split (float only: the double model is serial).
template <typename T>
const TensorParallelOps* split_over(const ComputeContext& ctx) {
  if constexpr (std::is_same_v<T, float>)
    return ctx.tp && ctx.tp->size > 1 ? ctx.tp : nullptr;
  else
    return nullptr;
}

// In a 16-bit run (products in bf16 or fp16), the norms' normalized rows, the MLP pre-activation
// and the attention output are rounded to that precision where they are made, so a block may
// keep them in 16 bits and its backward sees exactly what its forward used: a norm makes its
// output from the rounded rows (norm_rows_forward rounds each row; backward rebuilds the output
// from them), the activation function reads the rounded pre-activation (its gradient is taken at
// that point; the rounding itself passes gradients straight through), and flash backward's
// rowsum(dO * O) reads the rounded output (the output projection rounds it anyway). fp32 runs
// and the double model round nothing.
template <typename T>
kernels::Precision made_in(const ComputeContext& ctx) {
  return std::is_same_v<T, float> ? ctx.gemm.precision : kernels::Precision::fp32;
}
template <typename T>
void round_made(const ComputeContext& ctx, T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    if (made_in<T>(ctx) != kernels::Precision::fp32) kernels::round_to(made_in<T>(ctx), x, n);
}

template <typename T>
void activation_forward(const ModelDims& d, T* act, const T* fch, int64_t N) {
  if (d.family == Family::gpt2)
    k::gelu_forward(act, fch, N * d.F);
  else
    k::swiglu_forward(act, fch, N, d.F);
}

// The MLP activation rebuilt, and the gradient through it, from the pre-activation a block kept:
// fp32 (or double) in fch, or the 16-bit patterns of `made` in fch_h (then read as patterns: no
// fp32 copy of it exists in backward). GELU's gradient replaces the activation's in place (dfch
// is dact); SwiGLU's input is twice as wide.
template <typename T>
void activation_rebuild(const ModelDims& d, kernels::Precision made, const BlockActs<T>& a, T* act, int64_t N) {
  if constexpr (std::is_same_v<T, float>)
    if (!a.fch_h.empty())
      return d.family == Family::gpt2 ? k::gelu_forward_bits(act, a.fch_h.data(), made, N * d.F)
                                      : k::swiglu_forward_bits(act, a.fch_h.data(), made, N, d.F);
  activation_forward(d, act, a.fch.data(), N);
}
template <typename T>
void activation_backward(const ModelDims& d, kernels::Precision made, const BlockActs<T>& a, T* dfch, const T* dact,
                         int64_t N) {
  const bool gpt2 = d.family == Family::gpt2;
  if constexpr (std::is_same_v<T, float>)
    if (!a.fch_h.empty())
      return gpt2 ? k::gelu_backward_in_place_bits(dfch, a.fch_h.data(), made, N * d.F)
                  : k::swiglu_backward_bits(dfch, dact, a.fch_h.data(), made, N, d.F);
  if (gpt2)
    k::gelu_backward_in_place(dfch, a.fch.data(), N * d.F);
  else
    k::swiglu_backward(dfch, dact, a.fch.data(), N, d.F);
}

// A block that keeps qkv, fch and atty as 16-bit patterns lends the scratch's fp32 working copies
// for as long as it runs (vector swaps: no copy): `narrow` after its forward stores qkv and atty,
// `widen` before its backward restores them and rebuilds fch_act from fch's patterns. Where flash
// attention reads qkv as its patterns (flash_reads_patterns) qkv is neither: block_forward narrows
// it before the attention, whose products read the patterns as they are, in forward and backward
// (and in selective recomputation). fch itself is narrowed where it is made and read as patterns
// in backward, so only SwiGLU (whose output cannot overwrite its input) has an fp32 working copy
// of it, in forward; GELU's pre-activation is made in fch_act and overwritten there by the
// activation. (The norms' rows need none.)
template <typename T>
class Halves {
 public:
  Halves(kernels::Precision p, bool qkv_as_patterns, BlockActs<T>& a, BlockActs<T>& work)
      : p_(p), qkv_as_patterns_(qkv_as_patterns), a_(a), work_(work) {
    if (on()) swap();
  }
  ~Halves() {
    if (on()) swap();
  }
  Halves(const Halves&) = delete;
  Halves& operator=(const Halves&) = delete;
  // The block's N token rows.
  void narrow(int64_t N, const ModelDims& d) {
    if (!on()) return;
    if constexpr (std::is_same_v<T, float>)
      for (auto [x, h, n] : parts(N, d)) kernels::narrow(p_, x->data(), h->data(), n);
  }
  void widen(int64_t N, const ModelDims& d) {
    if (!on()) return;
    if constexpr (std::is_same_v<T, float>)
      for (auto [x, h, n] : parts(N, d)) kernels::widen(p_, h->data(), x->data(), n);
    activation_rebuild(d, p_, a_, a_.fch_act.data(), N);  // the forward's bits: fch was rounded there
  }

 private:
  bool on() const { return !a_.qkv_h.empty(); }
  bool attention() const { return !a_.atty_h.empty(); }  // kept here, not recomputed (selective)
  void swap() {
    std::swap(a_.qkv, work_.qkv), std::swap(a_.fch, work_.fch), std::swap(a_.fch_act, work_.fch_act);
    if (attention()) std::swap(a_.atty, work_.atty);
  }
  struct Part {
    std::span<T>* x;
    std::span<uint16_t>* h;
    int64_t n;
  };
  std::vector<Part> parts(int64_t N, const ModelDims& d) {
    std::vector<Part> p;
    if (!qkv_as_patterns_) p.push_back(Part{&a_.qkv, &a_.qkv_h, N * d.qkv_rows()});
    if (attention()) p.push_back(Part{&a_.atty, &a_.atty_h, N * d.NH * d.HS});
    return p;
  }
  kernels::Precision p_;
  bool qkv_as_patterns_;
  BlockActs<T>& a_;
  BlockActs<T>& work_;
};

// A norm over the rows a block keeps: in xn (fp32, or double), or as the 16-bit patterns of the
// run's precision in xn_h (Halves) — forward, the rebuild of its output, backward.
template <typename T>
void norm_forward(kernels::Precision made, std::span<T> xn, std::span<uint16_t> xn_h, T* out, T* rstd,
                  const T* x, const T* w, const T* b, int64_t Nr, int64_t C, double eps, bool centered) {
  if constexpr (std::is_same_v<T, float>)
    if (!xn_h.empty()) return k::norm_rows_forward_bits(xn_h.data(), out, rstd, x, w, b, Nr, C, eps, centered, made);
  k::norm_rows_forward(xn.data(), out, rstd, x, w, b, Nr, C, eps, centered, made);
}
template <typename T>
void norm_rebuild(kernels::Precision made, std::span<T> xn, std::span<uint16_t> xn_h, T* out,
                  const T* w, const T* b, int64_t Nr, int64_t C) {
  if constexpr (std::is_same_v<T, float>)
    if (!xn_h.empty()) return k::norm_scale_forward_bits(out, xn_h.data(), made, w, b, Nr, C);
  k::norm_scale_forward(out, xn.data(), w, b, Nr, C);
}
template <typename T>
void norm_backward(kernels::Precision made, T* din, T* dw, T* db, const T* dout, std::span<T> xn,
                   std::span<uint16_t> xn_h, const T* w, const T* rstd, int64_t Nr, int64_t C, bool centered) {
  if constexpr (std::is_same_v<T, float>)
    if (!xn_h.empty()) return k::norm_rows_backward_bits(din, dw, db, dout, xn_h.data(), made, w, rstd, Nr, C, centered);
  k::norm_rows_backward(din, dw, db, dout, xn.data(), w, rstd, Nr, C, centered);
}

// Whether flash attention reads a block's kept qkv as its 16-bit patterns (Halves): wherever it
// keeps them. A bf16 kernel packs the patterns itself (Zen 5, bench_attention --batch 4 --seq 256
// --precision bf16 --qkv values,patterns: 1.11x); the emulated paths (fp16 on every CPU, bf16
// without a bf16 kernel) widen them while packing fp32 panels (SgemmKernel::pack_from_fp16: fp16
// there 1.10x). Either way qkv is never widened into the fp32 working copy.
template <typename T>
bool flash_reads_patterns(Attention kind, const BlockActs<T>& a) {
  return std::is_same_v<T, float> && kind == Attention::flash && !a.qkv_h.empty();
}
template <typename T>
const uint16_t* flash_qkv_bits(Attention kind, const BlockActs<T>& a) {
  return flash_reads_patterns(kind, a) ? a.qkv_h.data() : nullptr;
}

// `at` holds the attention probabilities and weighted sum: `a` itself, or the scratch under
// selective recomputation.
// The attention of one block: atty (and probs or lse) in `at` from a.qkv (or, flash, its patterns).
template <typename T>
void attention_forward(const ComputeContext& ctx, Attention kind, const BlockActs<T>& a, BlockActs<T>& at,
                       const ModelDims& d, int64_t B, int64_t Tn) {
  if (kind == Attention::flash)
    model::flash_attention_forward(ctx.gemm, at.atty.data(), at.lse.data(), a.qkv.data(), B, Tn, d.NH, d.KV, d.HS, {},
                                   flash_qkv_bits(kind, a));
  else
    model::attention_forward(ctx.gemm, at.atty.data(), at.probs.data(), a.qkv.data(), B, Tn, d.NH, d.KV, d.HS);
  round_made(ctx, at.atty.data(), B * Tn * d.NH * d.HS);
}

// This rank's rows of the residual stream of N tokens: its sequence-parallel block, or all.
template <typename T>
comm::Range token_rows(const ComputeContext& ctx, const ModelDims& d, int64_t N) {
  const TensorParallelOps* tp = split_over<T>(ctx);
  return tp && d.sequence_parallel ? tp->rows(N) : comm::Range{0, N};
}

// A Megatron pair's communication, with or without sequence parallelism: the input rows of a
// column-parallel linear (gathered), the output of a row-parallel one (summed, or reduce-scattered
// to this rank's rows), the input gradient of a column-parallel one (likewise).
template <typename T>
struct PairComm {
  const ComputeContext& ctx;
  const TensorParallelOps* tp;
  bool sp;
  Scratch<T>& s;
  int64_t N;

  const T* column_input(const T* mine, int64_t C) const {
    return sp ? model::sequence_gather(tp, mine, N, C, s.sp_in.data()) : mine;
  }
  void row_forward(T* out, const T* in, const T* w, const T* b, int64_t IC, int64_t OC) const {
    if (sp)
      model::sequence_row_parallel_linear_forward(ctx.gemm, tp, out, s.sp_out.data(), in, w, b, N, IC, OC);
    else
      model::row_parallel_linear_forward(ctx.gemm, tp, out, in, w, b, N, IC, OC);
  }
  void column_backward(T* din, T* dw, T* db, const T* dout, const T* in, const T* w, int64_t IC, int64_t OC) const {
    if (sp)
      model::sequence_column_parallel_linear_backward(ctx.gemm, tp, din, s.sp_out.data(), dw, db, dout, in, w, N, IC,
                                                      OC);
    else
      model::column_parallel_linear_backward(ctx.gemm, tp, din, dw, db, dout, in, w, N, IC, OC);
  }
};

// x, out and the block's residual stream: this rank's token rows (token_rows); the linears and
// the attention see all N rows. out must not alias x.
template <typename T>
void block_forward(const ComputeContext& ctx, Attention kind, Scratch<T>& s, BlockActs<T>& a, BlockActs<T>& at,
                   const T* x, T* out, const LayerViews<T>& p, const ModelDims& d, int64_t B, int64_t Tn) {
  const int64_t N = B * Tn, C = d.C, A = d.NH * d.HS, F = d.F, QKV = d.qkv_rows();
  const int64_t Nr = token_rows<T>(ctx, d, N).size();
  const bool gpt2 = d.family == Family::gpt2;
  const TensorParallelOps* tp = split_over<T>(ctx);
  const PairComm<T> pair{ctx, tp, tp && d.sequence_parallel, s, N};
  const kernels::Precision made = made_in<T>(ctx);
  norm_forward(made, a.xn1, a.xn1_h, s.ln.data(), a.rstd1.data(), x, p.ln1_w, p.ln1_b, Nr, C, d.eps, gpt2);
  linear_forward(ctx.gemm, a.qkv.data(), pair.column_input(s.ln.data(), C), p.qkv_w, p.qkv_b, N, C, QKV);
  if (!gpt2) k::rope_forward(a.qkv.data(), B, Tn, d.NH, d.KV, d.HS, d.rope_theta);
  if constexpr (std::is_same_v<T, float>)  // flash reads a kept qkv as its patterns (Halves)
    if (flash_reads_patterns(kind, a)) kernels::narrow(made, a.qkv.data(), a.qkv_h.data(), N * QKV);
  attention_forward(ctx, kind, a, at, d, B, Tn);
  pair.row_forward(s.resid2.data(), at.atty.data(), p.proj_w, p.proj_b, A, C);
  k::residual_forward(s.resid2.data(), s.resid2.data(), x, Nr * C);
  norm_forward(made, a.xn2, a.xn2_h, s.ln.data(), a.rstd2.data(), s.resid2.data(), p.ln2_w, p.ln2_b, Nr, C, d.eps,
               gpt2);
  // The MLP pre-activation: in fch, or (GELU in a 16-bit run, no fp32 fch) in fch_act, where the
  // activation then overwrites it once its 16-bit patterns are kept.
  T* const pre = a.fch.empty() ? a.fch_act.data() : a.fch.data();
  linear_forward(ctx.gemm, pre, pair.column_input(s.ln.data(), C), p.fc_w, p.fc_b, N, C, d.fc_rows());
  // Kept as patterns: narrowed (which rounds it) and the activation made from them, as backward
  // rebuilds it — no rounding pass over the fp32 rows. Otherwise rounded in place.
  if (!a.fch_h.empty()) {
    if constexpr (std::is_same_v<T, float>) kernels::narrow(made, pre, a.fch_h.data(), N * d.fc_rows());
    activation_rebuild(d, made, a, a.fch_act.data(), N);
  } else {
    round_made(ctx, pre, N * d.fc_rows());
    activation_forward(d, a.fch_act.data(), pre, N);
  }
  pair.row_forward(out, a.fch_act.data(), p.fcproj_w, p.fcproj_b, F, C);
  k::residual_forward(out, out, s.resid2.data(), Nr * C);
}

// grad: in, the gradient of the block's output (this rank's Nr token rows); out, of its input x —
// in place (it is d(resid2) in between). The block's parameter gradients are added into g.
template <typename T>
void block_backward(const ComputeContext& ctx, Attention kind, Scratch<T>& s, T* grad, const BlockActs<T>& a,
                    const BlockActs<T>& at, const LayerViews<T>& p, const LayerViews<T>& g, const ModelDims& d,
                    int64_t B, int64_t Tn) {
  const int64_t N = B * Tn, C = d.C, A = d.NH * d.HS, F = d.F, QKV = d.qkv_rows();
  const int64_t Nr = token_rows<T>(ctx, d, N).size();
  const bool gpt2 = d.family == Family::gpt2;
  const int64_t FC = d.fc_rows();
  const TensorParallelOps* tp = split_over<T>(ctx);
  const PairComm<T> pair{ctx, tp, tp && d.sequence_parallel, s, N};
  // out = resid2 + mlp(resid2): the MLP's output gradient is d(out) itself, and d(resid2) = d(out) +
  // the norm's part, added in place. Row-parallel backward needs no communication (d(out) is
  // replicated, or gathered under sequence parallelism, so the bias gradient is the whole sum);
  // the column-parallel ones leave partial input gradients, summed (or reduce-scattered) over tp.
  // (The gradient used to be copied into zeroed buffers for d(resid2), each branch and dx: 14
  // passes over Nr x C per block, none now.)
  T* const dresid2 = grad;
  linear_backward(ctx.gemm, s.dfch_act.data(), g.fcproj_w, g.fcproj_b, pair.column_input(grad, C),
                  a.fch_act.data(), p.fcproj_w, N, F, C);
  // GELU's gradient replaces its output's in place (dfch is dfch_act); SwiGLU's input is twice as wide.
  const kernels::Precision made = made_in<T>(ctx);
  T* const dfch = gpt2 ? s.dfch_act.data() : s.dfch.data();
  if (!gpt2) zero(s.dfch, N * FC);
  activation_backward(d, made, a, dfch, s.dfch_act.data(), N);
  norm_rebuild(made, a.xn2, a.xn2_h, s.ln.data(), p.ln2_w, p.ln2_b, Nr, C);  // ln2 again, as forward made it
  pair.column_backward(s.dln.data(), g.fc_w, g.fc_b, dfch, pair.column_input(s.ln.data(), C), p.fc_w, C, FC);
  norm_backward(made, dresid2, g.ln2_w, g.ln2_b, s.dln.data(), a.xn2, a.xn2_h, p.ln2_w, a.rstd2.data(), Nr, C, gpt2);
  // resid2 = x + attn(x): d(x) = d(resid2) + the first norm's part (added in place below), and
  // d(resid2) is the attention's output gradient.
  linear_backward(ctx.gemm, s.datty.data(), g.proj_w, g.proj_b, pair.column_input(dresid2, C), at.atty.data(),
                  p.proj_w, N, A, C);
  zero(s.dqkv, N * QKV);
  if (kind == Attention::flash)
    model::flash_attention_backward(ctx.gemm, s.dqkv.data(), s.datty.data(), at.atty.data(), at.lse.data(),
                                    a.qkv.data(), B, Tn, d.NH, d.KV, d.HS, {}, std::span<T>(s.flash_dq),
                                    flash_qkv_bits(kind, a));
  else
    model::attention_backward(ctx.gemm, s.dqkv.data(), s.datty.data(), at.probs.data(), a.qkv.data(), B, Tn, d.NH,
                              d.KV, d.HS);
  if (!gpt2) k::rope_backward(s.dqkv.data(), B, Tn, d.NH, d.KV, d.HS, d.rope_theta);
  norm_rebuild(made, a.xn1, a.xn1_h, s.ln.data(), p.ln1_w, p.ln1_b, Nr, C);  // ln1 again
  pair.column_backward(s.dln.data(), g.qkv_w, g.qkv_b, s.dqkv.data(), pair.column_input(s.ln.data(), C), p.qkv_w,
                       C, QKV);
  T* const dx = grad;
  norm_backward(made, dx, g.ln1_w, g.ln1_b, s.dln.data(), a.xn1, a.xn1_h, p.ln1_w, a.rstd1.data(), Nr, C, gpt2);
}

// Sequence parallelism: a block's norm weights see only this rank's rows, so their gradients are
// partial over tp. Backward adds them into the layer's `partial` (4C) instead of g; the step's
// last backward of the chunk sums `partial` over tp once, adds it into g and clears it — one tp
// sum per layer per step (Megatron sums them once per step too), not one per micro-batch.
template <typename T>
LayerViews<T> norms_into(LayerViews<T> g, T* partial, int64_t C) {
  g.ln1_w = partial, g.ln2_w = partial + C;
  if (g.ln1_b) g.ln1_b = partial + 2 * C, g.ln2_b = partial + 3 * C;
  return g;
}

template <typename T>
void add_summed_norms(const TensorParallelOps* tp, const LayerViews<T>& g, T* partial, int64_t C) {
  const int64_t n = g.ln1_b ? 4 * C : 2 * C;
  if constexpr (std::is_same_v<T, float>) tp->sum(partial, n);
  T* const dst[4] = {g.ln1_w, g.ln2_w, g.ln1_b, g.ln2_b};
  for (int64_t t = 0; t < n / C; ++t)
    for (int64_t i = 0; i < C; ++i) dst[t][i] += partial[t * C + i];
  std::fill_n(partial, n, T(0));
}

}  // namespace

int64_t head_block_rows(int64_t N) { return std::min(N, kHeadRows); }

template <typename T>
int64_t Model<T>::activation_bytes(const ModelDims& dims, int64_t max_B, int64_t max_T, int slots,
                                   Recompute recompute, Attention attention, kernels::Precision saved) {
  std::vector<Activations<T>> counted;
  Scratch<T> scratch;
  return lay_out_activations(dims, max_B, max_T, slots, recompute, attention, saved, nullptr, counted, scratch).bytes();
}

template <typename T>
Model<T>::Model(const ModelDims& dims, int64_t max_B, int64_t max_T, int slots, Recompute recompute, Attention attention,
                kernels::Precision saved, bool huge_pages)
    : dims_(dims),
      table_(param_table(dims)),
      recompute_(recompute),
      attention_(attention),
      saved_(saved),
      scratch_(std::make_unique<Scratch<T>>()) {
  if (slots < 1) throw std::invalid_argument("Model: slots must be >= 1, got " + std::to_string(slots));
  if (dims.sequence_parallel && (dims.tp < 2 || !std::is_same_v<T, float>))
    throw std::invalid_argument("Model: sequence parallelism needs a float model split over tp >= 2 ranks");
  huge_page_bytes_ += int64_t(assign_zeroed(params_, size_t(arena_size(table_)), huge_pages));
  huge_page_bytes_ += int64_t(assign_zeroed(grads_, params_.size(), huge_pages));
  p_ = point_views(params_.data(), table_, dims_);
  // Arena ranges backward reports as final (the table is embeddings, layers 0..L-1, head), once.
  const auto range_of = [&](auto pred) {
    comm::Range r{INT64_MAX, 0};
    for (const auto& t : table_)
      if (pred(t)) r.begin = std::min(r.begin, t.offset), r.end = std::max(r.end, t.offset + t.numel);
    return r.begin < r.end ? r : comm::Range{0, 0};
  };
  head_range_ = range_of([](const TensorSpec& t) { return t.layer < 0 && !t.is_embedding; });
  embedding_range_ = range_of([](const TensorSpec& t) { return t.is_embedding; });
  for (int64_t l = 0; l < dims.L; ++l)
    layer_ranges_.push_back(range_of([l](const TensorSpec& t) { return t.layer == int(l); }));
  g_ = point_views(grads_.data(), table_, dims_);
  {  // counted, then placed: the arena zeroed once (as each vector was)
    std::vector<Activations<T>> counted;
    Scratch<T> sizes;
    const Carver c =
        lay_out_activations(dims, max_B, max_T, slots, recompute, attention, saved, nullptr, counted, sizes);
    huge_page_bytes_ += int64_t(assign_zeroed(scratch_->arena, size_t(c.arena_bytes()), huge_pages));
    activation_bytes_ = lay_out_activations(dims, max_B, max_T, slots, recompute, attention, saved,
                                            scratch_->arena.data(), slots_, *scratch_).bytes();
  }
  n_slots_ = slots;
  max_N_ = max_B * max_T;
  max_T_ = max_T;
}

template <typename T>
Model<T>::~Model() = default;

template <typename T>
void Model<T>::load_params(std::span<const T> saved) {
  if (saved.size() != params_.size())
    throw std::invalid_argument("Model::load_params: " + std::to_string(saved.size()) + " values for an arena of " +
                                std::to_string(params_.size()));
  std::copy(saved.begin(), saved.end(), params_.begin());
}

template <typename T>
void Model<T>::zero_grads() {
  kernels::fill_zero(grads_.data(), int64_t(grads_.size()));
  // Sequence parallelism: parts a backward with last = false left (a step given up half-way).
  if (auto& part = scratch_->sp_norm_grads; !part.empty()) kernels::fill_zero(part.data(), int64_t(part.size()));
}

template <typename T>
const T* Model<T>::logits() const {
  if (slots_[0].head != HeadPass::logits || slots_[0].logits.empty())
    throw std::logic_error("Model::logits: the last forward in slot 0 kept no logits (HeadPass::loss or gradient)");
  return slots_[0].logits.data();
}

template <typename T>
T* Model<T>::input_buffer(int slot) {
  return input_of(slots_.at(size_t(slot)));
}

template <typename T>
T* Model<T>::input_of(Activations<T>& s) const {
  return s.encoded.empty() ? scratch_->input.data() : s.encoded.data();
}

template <typename T>
comm::Range Model<T>::boundary_rows(int64_t N) const {
  return dims_.sequence_parallel ? comm::split_evenly(N, dims_.tp, dims_.tp_rank) : comm::Range{0, N};
}

template <typename T>
const T* Model<T>::stage_output(int slot) const {
  const Activations<T>& s = slots_.at(size_t(slot));
  if (!s.blocks.empty()) return s.blocks.back().out.data();  // the blocks' rows: boundary_rows
  return s.encoded.data() + boundary_rows(s.B * s.T_).begin * dims_.C;
}

template <typename T>
double Model<T>::forward(const ComputeContext& ctx, const int32_t* tokens, const int32_t* targets,
                         int64_t B, int64_t Tn, int slot, int chunk, HeadPass head, T dloss) {
  const ModelDims& d = dims_;
  if (B * Tn > max_N_ || Tn > max_T_ || Tn > d.max_T)
    throw std::invalid_argument("Model::forward: batch " + std::to_string(B) + "x" + std::to_string(Tn) +
                                " exceeds the allocated activations");
  if (slot < 0 || slot >= slots() || chunk < 0 || chunk >= d.chunks)
    throw std::invalid_argument("Model::forward: slot " + std::to_string(slot) + " of " + std::to_string(slots()) +
                                ", chunk " + std::to_string(chunk) + " of " + std::to_string(d.chunks));
  const TensorParallelOps* tp = split_over<T>(ctx);
  if (d.tp > 1 && (!tp || tp->size != d.tp))
    throw std::invalid_argument("Model::forward: the model is split over " + std::to_string(d.tp) +
                                " tensor-parallel ranks but the context has no such group (float model, ctx.tp)");
  if (saved_ != kernels::Precision::fp32 && ctx.gemm.precision != saved_)
    throw std::invalid_argument("Model::forward: activations are kept in " + std::string(name_of(saved_)) +
                                " but the context multiplies in " + std::string(name_of(ctx.gemm.precision)));
  auto& s = slots_[size_t(slot)];
  s.B = B;
  s.T_ = Tn;
  const int64_t N = B * Tn, C = d.C;
  const int64_t Lc = d.chunk_layers(), l0 = chunk * Lc;  // this chunk's local layers [l0, l0 + Lc)
  const auto need = [&](const comm::Range& r) {
    if (ctx.params_needed && r.size() > 0) ctx.params_needed(r.begin, r.end);
  };
  // Sequence parallelism: the blocks keep this rank's token rows [rows.begin, rows.end) of the
  // residual stream, and so do the pipeline's boundaries (boundary_rows): the first block takes
  // them from the embedding (reduce-scattered to them) or from the rows the previous stage sent;
  // only the head gathers every row.
  const bool sp = d.sequence_parallel;
  const comm::Range rows = boundary_rows(N);
  if (d.has_embedding && chunk == 0) {
    need(embedding_range_);
    if constexpr (std::is_same_v<T, float>) {
      if (tp)  // under sequence parallelism only this rank's rows of the input are written
        model::vocab_parallel_embedding_forward(*tp, input_of(s), tokens, p_.wte, p_.wpe, B, Tn, C,
                                                d.vocab_start, d.Vl, rows, sp ? scratch_->dres_a.data() : nullptr);
    }
    if (!tp) k::embedding_forward(input_of(s), tokens, p_.wte, p_.wpe, B, Tn, C, d.vocab_start, d.Vl);
  }
  const T* x = input_of(s) + rows.begin * C;
  for (int64_t j = 0; j < Lc; ++j) {
    BlockActs<T>& a = recompute_ == Recompute::full ? scratch_->re : s.blocks[size_t(j)];
    need(layer_ranges_[size_t(l0 + j)]);
    Halves<T> halves(saved_, flash_reads_patterns(attention_, a), a, scratch_->work);
    const std::span<T> kept = s.blocks[size_t(j)].out;
    T* const out = kept.empty() ? scratch_->stream[size_t(j % 2)].data() : kept.data();
    block_forward(ctx, attention_, *scratch_, a, recompute_ == Recompute::none ? a : scratch_->re, x, out,
                  p_.layers[size_t(l0 + j)], d, B, Tn);
    halves.narrow(N, d);
    x = out;
  }
  if (!d.has_head || chunk != d.chunks - 1) return 0.0;
  if (sp) x = model::sequence_gather(tp, x, N, C, s.output.data());  // the final norm's input: every rank's rows
  need(head_range_);
  if (d.tied) need(embedding_range_);  // the output projection is wte (or this stage's copy of it)
  if (d.family == Family::gpt2)
    k::layernorm_forward(s.lnf.data(), s.lnf_mean.data(), s.lnf_rstd.data(), x, p_.lnf_w, p_.lnf_b, N, C, d.eps);
  else
    k::rmsnorm_forward(s.lnf.data(), s.lnf_rstd.data(), x, p_.lnf_w, N, C, d.eps);
  s.head = head, s.head_dloss = head == HeadPass::gradient ? dloss : T(0);
  // The logits of rows [r0, r0 + n) into z (this rank's vocabulary slice), their losses and lse.
  const auto logits_and_loss = [&](T* z, int64_t r0, int64_t n) {
    linear_forward<T>(ctx.gemm, z, s.lnf.data() + r0 * C, p_.lm_head, nullptr, n, C, d.Vl);
    if constexpr (std::is_same_v<T, float>) {
      if (tp)
        model::vocab_parallel_xent_forward(*tp, s.losses.data() + r0, s.lse.data() + r0, z, targets + r0, n, d.Vl,
                                           d.vocab_start, d.V);
    }
    if (!tp) k::softmax_xent_forward(s.losses.data() + r0, s.lse.data() + r0, z, targets + r0, n, d.Vl, d.V);
  };
  if (head == HeadPass::logits) {
    if (s.logits.size() < size_t(N * d.Vl)) s.logits.assign(size_t(max_N_ * d.Vl), T(0));
    logits_and_loss(s.logits.data(), 0, N);
  } else {
    // A block of rows at a time; for training, each block's logits become their gradient in place
    // and leave their part of lnf's gradient (kept for backward) and of the weight gradient.
    const int64_t rows = head_block_rows(N);
    T* z = scratch_->head_logits.data();
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t n = std::min(rows, N - r0);
      logits_and_loss(z, r0, n);
      if (head != HeadPass::gradient) continue;
      std::fill_n(scratch_->dlosses.data(), n, dloss);
      k::softmax_xent_backward(z, scratch_->dlosses.data(), z, s.lse.data() + r0, targets + r0, n, d.Vl,
                               std::clamp<int64_t>(d.V - d.vocab_start, 0, d.Vl), d.vocab_start);
      model::column_parallel_linear_backward<T>(ctx.gemm, tp, s.dlnf.data() + r0 * C, g_.lm_head, nullptr, z,
                                                s.lnf.data() + r0 * C, p_.lm_head, n, C, d.Vl);
    }
  }
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) total += s.losses[i];
  return total;
}

template <typename T>
void Model<T>::backward(const ComputeContext& ctx, const int32_t* tokens, const int32_t* targets,
                        T dloss, const GradsReady& ready, int slot, const T* dy, int chunk, bool last) {
  const ModelDims& d = dims_;
  if (ready && !last)
    throw std::invalid_argument("Model::backward: `ready` reports final gradients, which only the step's last backward "
                                "of a chunk has (last = false)");
  if (slot < 0 || slot >= slots() || chunk < 0 || chunk >= d.chunks)
    throw std::invalid_argument("Model::backward: slot " + std::to_string(slot) + " of " + std::to_string(slots()) +
                                ", chunk " + std::to_string(chunk) + " of " + std::to_string(d.chunks));
  const bool head = d.has_head && chunk == d.chunks - 1;
  if (!head && !dy)
    throw std::invalid_argument("Model::backward: a chunk without the head needs the gradient of its output (dy)");
  auto& s = slots_[size_t(slot)];
  auto& sc = *scratch_;
  const int64_t B = s.B, Tn = s.T_, N = B * Tn, C = d.C;
  const TensorParallelOps* tp = split_over<T>(ctx);
  if (saved_ != kernels::Precision::fp32 && ctx.gemm.precision != saved_)
    throw std::invalid_argument("Model::backward: activations are kept in " + std::string(name_of(saved_)) +
                                " but the context multiplies in " + std::string(name_of(ctx.gemm.precision)));
  T* dout = sc.dres_a.data();
  T* dx = sc.dres_b.data();
  const int64_t Lc = d.chunk_layers(), l0 = chunk * Lc;
  // Sequence parallelism: the blocks' gradients are this rank's token rows (as in forward), and
  // so are dy and the input gradient at the pipeline's boundaries.
  const bool sp = d.sequence_parallel;
  const comm::Range rows = boundary_rows(N);
  const T* top = sp ? s.output.data() : stage_output(slot);  // the final norm's input (head)
  if (head) {
    const T* dlnf = s.dlnf.data();  // HeadPass::gradient: the forward left it
    if (s.head == HeadPass::gradient && dloss != s.head_dloss) {
      throw std::invalid_argument("Model::backward: dloss " + std::to_string(double(dloss)) + " differs from the " +
                                  std::to_string(double(s.head_dloss)) + " slot " + std::to_string(slot) +
                                  "'s forward computed the head's gradient with");
    } else if (s.head == HeadPass::loss) {
      throw std::invalid_argument("Model::backward: slot " + std::to_string(slot) +
                                  "'s forward computed the loss only (HeadPass::loss)");
    } else if (s.head == HeadPass::logits) {
      std::fill_n(sc.dlosses.data(), N, dloss);
      // This rank's vocabulary slice (all of it when unsplit), with the whole vocabulary's lse.
      // The logits become their gradient in place (the slot's forward is done with them).
      T* dlogits = s.logits.data();
      k::softmax_xent_backward(dlogits, sc.dlosses.data(), s.logits.data(), s.lse.data(), targets, N, d.Vl,
                               std::clamp<int64_t>(d.V - d.vocab_start, 0, d.Vl), d.vocab_start);
      // The output projection is column-parallel over the vocabulary.
      model::column_parallel_linear_backward<T>(ctx.gemm, tp, sc.dln.data(), g_.lm_head, nullptr, dlogits,
                                                s.lnf.data(), p_.lm_head, N, C, d.Vl);
      dlnf = sc.dln.data();
    }
    std::fill_n(dout, N * C, T(0));
    if (d.family == Family::gpt2)
      k::layernorm_backward(dout, g_.lnf_w, g_.lnf_b, dlnf, top, p_.lnf_w, s.lnf_mean.data(), s.lnf_rstd.data(), N,
                            C);
    else
      k::rmsnorm_backward(dout, g_.lnf_w, dlnf, top, p_.lnf_w, s.lnf_rstd.data(), N, C);
    // Head tensors whose gradient is now final: the final norm and an untied lm_head (a tied
    // output projection is wte, final only after the embedding backward).
    if (ready && head_range_.size() > 0) ready(head_range_.begin, head_range_.end);
    // Sequence parallelism: the blocks take this rank's rows of the (replicated) gradient.
    if (sp && rows.begin > 0) std::copy(dout + rows.begin * C, dout + rows.end * C, dout);
  } else {
    std::copy(dy + rows.begin * C, dy + rows.end * C, dout);
  }
  for (int64_t j = Lc - 1; j >= 0; --j) {
    const int64_t l = l0 + j;
    const BlockActs<T>* a = &s.blocks[size_t(j)];
    Halves<T> halves(saved_, flash_reads_patterns(attention_, s.blocks[size_t(j)]), s.blocks[size_t(j)], sc.work);
    halves.widen(N, d);
    if (recompute_ == Recompute::full) {  // re-run the block from its input: every tensor lands in the scratch
      const T* x = j > 0 ? s.blocks[size_t(j - 1)].out.data() : s.encoded.data() + rows.begin * C;
      block_forward(ctx, attention_, sc, sc.re, sc.re, x, sc.re.out.data(), p_.layers[l], d, B, Tn);
      a = &sc.re;
    } else if (recompute_ == Recompute::selective) {
      attention_forward(ctx, attention_, *a, sc.re, d, B, Tn);
    }
    T* const norm_part = sp ? sc.sp_norm_grads.data() + l * 4 * C : nullptr;
    const LayerViews<T> g = sp ? norms_into(g_.layers[l], norm_part, C) : g_.layers[l];
    block_backward(ctx, attention_, sc, dout, *a, recompute_ == Recompute::none ? *a : sc.re, p_.layers[l], g, d, B,
                   Tn);  // dout becomes the block input's gradient
    if (sp && last) add_summed_norms(tp, g_.layers[l], norm_part, C);
    if (ready) ready(layer_ranges_[size_t(l)].begin, layer_ranges_[size_t(l)].end);
  }
  if (sp && chunk == 0 && d.has_embedding) {  // the embedding's gradient reads every rank's rows
    model::sequence_gather(tp, static_cast<const T*>(dout), N, C, dx);
    std::swap(dx, dout);
  }
  input_grad_ = dout;
  if (chunk != 0) return;
  if (d.has_embedding) k::embedding_backward(g_.wte, g_.wpe, dout, tokens, B, Tn, C, d.vocab_start, d.Vl);
  if (ready && embedding_range_.size() > 0) ready(embedding_range_.begin, embedding_range_.end);
}

template class Model<float>;
template class Model<double>;

}  // namespace hokusai
