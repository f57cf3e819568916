// Scalar references of kernels/ops.hpp: same signatures and contracts, serial, double
// accumulation, written for clarity. The oracle for the fast versions and for SVE/x86 kernels.
#pragma once

#include <cstdint>

#include "kernels/ops.hpp"

namespace hokusai::kernels::ref {

#include "kernels/ops_decl.inc"

// Causal self-attention: qkv(B,T,NH+2*KV,HS) -> out(B,T,NH,HS); saves probs(B,NH,T,T) (upper
// triangle unused). Scale 1/sqrt(HS). Rows of qkv: NH query heads, KV key heads, KV value heads;
// query head h attends with key/value head h / (NH/KV) (grouped-query attention; KV = NH is
// multi-head attention). Reference only: the trainer's attention is
// model::attention_forward/backward (src/model/attention.cpp, through the GEMM), tested
// against this one.
template <typename T>
void attention_forward(T* out, T* probs, const T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS);
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* probs, const T* qkv, int64_t B, int64_t Tn, int64_t NH,
                        int64_t KV, int64_t HS);

}  // namespace hokusai::kernels::ref
