#include "layers.hpp"

#include <algorithm>
#include <stdexcept>
#include <type_traits>

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
  if (din) kernels::gemm(ctx, Op::N, Op::N, N, IC, OC, T(1), dout, OC, w, IC, T(0), din, IC);
  kernels::gemm(ctx, Op::T, Op::N, OC, IC, N, T(1), dout, OC, in, IC, T(1), dw, IC);
  if (db) kernels::bias_backward(db, dout, N, OC);
}

namespace {

// Sum over the tp group (float only: the double model is never split).
template <typename T>
void tp_sum(const TensorParallelOps* tp, T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    if (tp && tp->size > 1) tp->sum(x, n);
}

// The row reduce-scatter of sequence parallelism (float only: the double model is never split).
template <typename T>
void reduce_scatter_rows(const TensorParallelOps* tp, const T* full, int64_t N, int64_t C, T* mine) {
  if constexpr (std::is_same_v<T, float>)
    tp->reduce_scatter_rows(full, N, C, mine);
  else
    throw std::logic_error("sequence parallelism: the double model is never split");
}

}  // namespace

template <typename T>
const T* sequence_gather(const TensorParallelOps* tp, const T* mine, int64_t N, int64_t C, T* full) {
  if constexpr (std::is_same_v<T, float>)
    tp->gather_rows(mine, N, C, full);
  else
    throw std::logic_error("sequence parallelism: the double model is never split");
  return full;
}

template <typename T>
void sequence_row_parallel_linear_forward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* mine,
                                          T* partial, const T* in, const T* w, const T* b, int64_t N, int64_t IC,
                                          int64_t OC) {
  linear_forward<T>(ctx, partial, in, w, nullptr, N, IC, OC);
  reduce_scatter_rows(tp, partial, N, OC, mine);
  if (b) kernels::bias_forward(mine, b, tp->rows(N).size(), OC);
}

template <typename T>
void sequence_column_parallel_linear_backward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* din,
                                              T* partial, T* dw, T* db, const T* dout, const T* in, const T* w,
                                              int64_t N, int64_t IC, int64_t OC) {
  linear_backward(ctx, partial, dw, db, dout, in, w, N, IC, OC);
  reduce_scatter_rows(tp, partial, N, IC, din);
}

template <typename T>
void row_parallel_linear_forward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* out, const T* in,
                                 const T* w, const T* b, int64_t N, int64_t IC, int64_t OC) {
  if (!tp || tp->size == 1) return linear_forward(ctx, out, in, w, b, N, IC, OC);
  linear_forward<T>(ctx, out, in, w, nullptr, N, IC, OC);
  tp_sum(tp, out, N * OC);
  if (b) kernels::bias_forward(out, b, N, OC);
}

template <typename T>
void column_parallel_linear_backward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* din, T* dw,
                                     T* db, const T* dout, const T* in, const T* w, int64_t N, int64_t IC,
                                     int64_t OC) {
  linear_backward(ctx, din, dw, db, dout, in, w, N, IC, OC);
  tp_sum(tp, din, N * IC);
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
#define HOKUSAI_TP_LINEARS(T)                                                                                   \
  template void row_parallel_linear_forward<T>(const kernels::GemmContext&, const TensorParallelOps*, T*,      \
                                               const T*, const T*, const T*, int64_t, int64_t, int64_t);       \
  template void column_parallel_linear_backward<T>(const kernels::GemmContext&, const TensorParallelOps*, T*,  \
                                                   T*, T*, const T*, const T*, const T*, int64_t, int64_t,     \
                                                   int64_t);                                                   \
  template const T* sequence_gather<T>(const TensorParallelOps*, const T*, int64_t, int64_t, T*);              \
  template void sequence_row_parallel_linear_forward<T>(const kernels::GemmContext&, const TensorParallelOps*, \
                                                        T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                                        int64_t);                                              \
  template void sequence_column_parallel_linear_backward<T>(const kernels::GemmContext&,                        \
                                                            const TensorParallelOps*, T*, T*, T*, T*, const T*, \
                                                            const T*, const T*, int64_t, int64_t, int64_t);
HOKUSAI_TP_LINEARS(float)
HOKUSAI_TP_LINEARS(double)
#undef HOKUSAI_TP_LINEARS

}  // namespace hokusai::model
