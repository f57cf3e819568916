// Internal: the explicit instantiation list of every op in kernels/ops.hpp, shared by the fast
// versions (kernels/ops*.cpp) and the references (kernels/ref/ops_ref.cpp) so the two can never
// drift apart. Expand inside the namespace that defines the templates.
#pragma once

#define HOKUSAI_INSTANTIATE_OPS(T)                                                                 \
  template void embedding_forward<T>(T*, const int32_t*, const T*, const T*, int64_t, int64_t,     \
                                     int64_t, int64_t, int64_t);                                   \
  template void embedding_backward<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t, int64_t, \
                                      int64_t, int64_t);                                           \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,   \
                                     double);                                                      \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,          \
                                      const T*, int64_t, int64_t);                                 \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);          \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t,       \
                                    int64_t);                                                      \
  template void norm_rows_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                     double, bool, Precision);                                     \
  template void norm_scale_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t);         \
  template void norm_rows_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t, \
                                      int64_t, bool);                                              \
  template void bias_forward<T>(T*, const T*, int64_t, int64_t);                                   \
  template void bias_backward<T>(T*, const T*, int64_t, int64_t);                                  \
  template void gelu_forward<T>(T*, const T*, int64_t);                                            \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t);                                 \
  template void gelu_backward_in_place<T>(T*, const T*, int64_t);                                  \
  template void swiglu_forward<T>(T*, const T*, int64_t, int64_t);                                 \
  template void swiglu_backward<T>(T*, const T*, const T*, int64_t, int64_t);                      \
  template void rope_forward<T>(T*, int64_t, int64_t, int64_t, int64_t, int64_t, double);          \
  template void rope_backward<T>(T*, int64_t, int64_t, int64_t, int64_t, int64_t, double);         \
  template T exp_shifted<T>(T*, int64_t, T);                                                       \
  template void causal_probabilities<T>(T*, int64_t, int64_t, int64_t, const T*, int64_t);         \
  template void softmax_grad_rows<T>(T*, const T*, const T*, T, int64_t, int64_t, int64_t);        \
  template T row_max<T>(const T*, int64_t);                                                        \
  template double sum_exp<T>(const T*, int64_t, T);                                                \
  template void softmax_xent_forward<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t,        \
                                        int64_t);                                                  \
  template void softmax_xent_backward<T>(T*, const T*, const T*, const T*, const int32_t*,         \
                                         int64_t, int64_t, int64_t, int64_t);                      \
  template void residual_forward<T>(T*, const T*, const T*, int64_t);                              \
  template void fill_zero<T>(T*, int64_t);                                                         \
  template double sum_squares<T>(const T*, int64_t);                                               \
  template void scale<T>(T*, T, int64_t);                                                          \
  template void adamw_update<T>(T*, const T*, T*, T*, int64_t, const AdamWParams&);

