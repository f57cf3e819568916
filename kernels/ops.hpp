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

#include "kernels/gemm.hpp"  // Precision, round_to

namespace hokusai::kernels {

// Hyper-parameters of one AdamW step (adamw_update, declared in ops_decl.inc).
// Each gradient enters as grad[i] * grad_scale, rounded as kernels::scale would leave it: the
// clipping factor rides on the update instead of a pass of its own over the gradients.
struct AdamWParams {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;
  double grad_scale = 1.0;
};

#include "kernels/ops_decl.inc"

}  // namespace hokusai::kernels
