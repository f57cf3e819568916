#include "vocab_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.hpp"

namespace hokusai::model {

void vocab_parallel_embedding_forward(const TensorParallelOps& tp, float* out, const int32_t* tokens,
                                      const float* wte_r, const float* wpe, int64_t B, int64_t Tn, int64_t C,
                                      int64_t v0, int64_t Vl, comm::Range rows, float* partial) {
  const int64_t N = B * Tn;
  if (partial) {  // every rank of the group takes this branch or none (a collective each)
    kernels::embedding_forward<float>(partial, tokens, wte_r, nullptr, B, Tn, C, v0, Vl);
    tp.reduce_scatter_rows(partial, N, C, out + rows.begin * C);
  } else {
    rows = {0, N};
    kernels::embedding_forward<float>(out, tokens, wte_r, nullptr, B, Tn, C, v0, Vl);
    tp.sum(out, N * C);
  }
  if (!wpe) return;
#pragma omp parallel for schedule(static)
  for (int64_t row = rows.begin; row < rows.end; ++row) {
    const float* p = wpe + (row % Tn) * C;
    float* o = out + row * C;
    for (int64_t c = 0; c < C; ++c) o[c] += p[c];
  }
}

void vocab_parallel_xent_forward(const TensorParallelOps& tp, float* losses, float* lse, const float* logits_r,
                                 const int32_t* targets, int64_t N, int64_t Vl, int64_t v0, int64_t V_real) {
  const int64_t real = std::clamp<int64_t>(V_real - v0, 0, Vl);  // this rank's non-padding ids
  std::vector<float> mx(static_cast<size_t>(N));
  std::vector<double> sums(static_cast<size_t>(2 * N));  // [sum of exp | target logit] per token
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    mx[size_t(i)] = kernels::row_max(logits_r + i * Vl, real);
  }
  tp.max(mx.data(), N);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const float* l = logits_r + i * Vl;
    // The serial cross-entropy's vectorised exp (libm's scalar exp was 5% of a tp 2 step).
    sums[size_t(i)] = real > 0 ? kernels::sum_exp(l, real, mx[size_t(i)]) : 0.0;
    const int64_t t = int64_t(targets[i]) - v0;
    sums[size_t(N + i)] = targets[i] >= 0 && t >= 0 && t < Vl ? double(l[t]) : 0.0;
  }
  tp.sum_f64(sums.data(), 2 * N);
  for (int64_t i = 0; i < N; ++i) {
    const double z = double(mx[size_t(i)]) + std::log(sums[size_t(i)]);
    lse[i] = float(z);
    losses[i] = targets[i] < 0 ? 0.0f : float(z - sums[size_t(N + i)]);
  }
}

}  // namespace hokusai::model
