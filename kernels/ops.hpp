// Elementwise and fused operations of a Transformer training step, outside GEMM.
//
// Legend: N rows (= B*T tokens), C channels, B batch, T sequence, NH heads (local to this tensor-
// parallel rank), HS head size, F feed-forward width, V vocabulary rows held by this rank.
// All tensors are row-major and contiguous.
//
// Conventions shared by every pair:
// - `*_forward(outputs, saved..., inputs, weights..., dims)` overwrites its outputs.
// - `*_backward(d_inputs, d_weights..., d_out, saved..., inputs, weights..., dims)` ADDS into
//   d_inputs and d_weights (callers zero them once per micro-batch), so fan-out needs no copies.
// - Exceptions: rope works in place in both directions (it is a rotation).
// Each function here is OpenMP-parallel over independent rows/columns (deterministic: no
// floating-point reduction crosses threads). kernels/ref/ops_ref.hpp holds the scalar reference of
// each, with the same signature, used as the oracle in tests.
// Both are instantiated for float (training) and double (gradient checks).
#pragma once

#include <cstdint>

namespace hokusai::kernels {

// out(N,C) = wte[tok - vocab_start] + (wpe ? wpe[t] : 0); tokens outside
// [vocab_start, vocab_start+V) contribute zero (vocabulary-parallel embedding).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B,
                       int64_t Tn, int64_t C, int64_t vocab_start, int64_t V);
template <typename T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t Tn, int64_t C, int64_t vocab_start, int64_t V);

// LayerNorm: out = (in - mean) * rstd * w + b; saves mean(N), rstd(N).
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* w, const T* b, int64_t N,
                       int64_t C, double eps);
template <typename T>
void layernorm_backward(T* din, T* dw, T* db, const T* dout, const T* in, const T* w,
                        const T* mean, const T* rstd, int64_t N, int64_t C);

// RMSNorm: out = in * rstd * w; saves rstd(N).
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* in, const T* w, int64_t N, int64_t C, double eps);
template <typename T>
void rmsnorm_backward(T* din, T* dw, const T* dout, const T* in, const T* w, const T* rstd,
                      int64_t N, int64_t C);

// out(N,C) += bias(C) broadcast over rows; backward: dbias(C) += column sums of dout.
template <typename T>
void bias_forward(T* out, const T* bias, int64_t N, int64_t C);
template <typename T>
void bias_backward(T* dbias, const T* dout, int64_t N, int64_t C);

// GELU, tanh approximation (GPT-2, Fugaku-LLM), n elements.
template <typename T>
void gelu_forward(T* out, const T* in, int64_t n);
template <typename T>
void gelu_backward(T* din, const T* dout, const T* in, int64_t n);

// SwiGLU: in(N, 2F) = [gate | up] per row; out(N,F) = silu(gate) * up.
template <typename T>
void swiglu_forward(T* out, const T* in, int64_t N, int64_t F);
template <typename T>
void swiglu_backward(T* din, const T* dout, const T* in, int64_t N, int64_t F);

// Rotary position embedding on the q and k parts of qkv(B,T,3,NH,HS), in place, with the
// Hugging Face LLaMA convention (rotate_half: pairs (i, i+HS/2)), frequencies theta^(-2i/HS).
// rope_backward applies the inverse rotation to dqkv in place.
template <typename T>
void rope_forward(T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t HS, double theta);
template <typename T>
void rope_backward(T* dqkv, int64_t B, int64_t Tn, int64_t NH, int64_t HS, double theta);

// Causal self-attention: qkv(B,T,3,NH,HS) -> out(B,T,NH,HS); saves probs(B,NH,T,T) (upper
// triangle unused). Scale 1/sqrt(HS).
template <typename T>
void attention_forward(T* out, T* probs, const T* qkv, int64_t B, int64_t Tn, int64_t NH,
                       int64_t HS);
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* probs, const T* qkv, int64_t B,
                        int64_t Tn, int64_t NH, int64_t HS);

// Softmax cross-entropy over the first V_real columns of logits(N, Vp) (padding columns are
// excluded and get zero gradient). losses(N) and saves lse(N) = log-sum-exp of each row.
// backward: dlogits += (softmax - onehot(target)) * dlosses[row].
template <typename T>
void softmax_xent_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                          int64_t Vp, int64_t V_real);
template <typename T>
void softmax_xent_backward(T* dlogits, const T* dlosses, const T* logits, const T* lse,
                           const int32_t* targets, int64_t N, int64_t Vp, int64_t V_real);

// out(n) = a + b; backward: da += dout, db += dout.
template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n);
template <typename T>
void residual_backward(T* da, T* db, const T* dout, int64_t n);

// Sum of squares (accumulated in double), for gradient norms.
template <typename T>
double sum_squares(const T* x, int64_t n);
// x *= s
template <typename T>
void scale(T* x, T s, int64_t n);

// AdamW step on n parameters (decoupled weight decay: p -= lr * wd * p). `step` starts at 1.
struct AdamWParams {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;
};
template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWParams& hp);

}  // namespace hokusai::kernels
