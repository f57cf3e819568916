// Layers built on the GEMM interface (the elementwise layers are kernels/ops.hpp).
// Legend: N tokens, IC input features, OC output features.
#pragma once

#include <cstdint>

#include "kernels/gemm.hpp"

namespace hokusai::model {

// out(N,OC) = in(N,IC) · w(OC,IC)^T + b(OC)   (b may be null)
template <typename T>
void linear_forward(const kernels::GemmContext& ctx, T* out, const T* in, const T* w, const T* b,
                    int64_t N, int64_t IC, int64_t OC);

// din(N,IC) += dout · w;  dw(OC,IC) += dout^T · in;  db(OC) += column sums of dout.
// din or db may be null (not needed / no bias).
template <typename T>
void linear_backward(const kernels::GemmContext& ctx, T* din, T* dw, T* db, const T* dout,
                     const T* in, const T* w, int64_t N, int64_t IC, int64_t OC);

}  // namespace hokusai::model
