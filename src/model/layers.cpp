#include "layers.hpp"

#include "kernels/ops.hpp"

namespace hokusai::model {

using kernels::Op;

template <typename T>
void linear_forward(const kernels::GemmContext& ctx, T* out, const T* in, const T* w, const T* b,
                    int64_t N, int64_t IC, int64_t OC) {
  kernels::gemm(ctx, Op::N, Op::T, N, OC, IC, T(1), in, IC, w, IC, T(0), out, OC);
  if (b) kernels::bias_forward(out, b, N, OC);
}

template <typename T>
void linear_backward(const kernels::GemmContext& ctx, T* din, T* dw, T* db, const T* dout,
                     const T* in, const T* w, int64_t N, int64_t IC, int64_t OC) {
  if (din) kernels::gemm(ctx, Op::N, Op::N, N, IC, OC, T(1), dout, OC, w, IC, T(1), din, IC);
  kernels::gemm(ctx, Op::T, Op::N, OC, IC, N, T(1), dout, OC, in, IC, T(1), dw, IC);
  if (db) kernels::bias_backward(db, dout, N, OC);
}

template void linear_forward<float>(const kernels::GemmContext&, float*, const float*, const float*,
                                    const float*, int64_t, int64_t, int64_t);
template void linear_forward<double>(const kernels::GemmContext&, double*, const double*,
                                     const double*, const double*, int64_t, int64_t, int64_t);
template void linear_backward<float>(const kernels::GemmContext&, float*, float*, float*,
                                     const float*, const float*, const float*, int64_t, int64_t,
                                     int64_t);
template void linear_backward<double>(const kernels::GemmContext&, double*, double*, double*,
                                      const double*, const double*, const double*, int64_t,
                                      int64_t, int64_t);

}  // namespace hokusai::model
