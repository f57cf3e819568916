#include <algorithm>
#include <cmath>
#include <vector>

#include "layers.hpp"

namespace hokusai::model {

using kernels::Op;

namespace {
// One single-threaded product per (batch, head) task, called concurrently from the OpenMP team.
// Always our native GEMM (or the reference): it is reentrant given one workspace per thread
// (reused across heads: a fresh one per call cost an mmap and page faults every product). The
// library backends are not safe to call concurrently: OpenBLAS' OpenMP build shares buffers
// between concurrent callers (training stopped being bit-reproducible) and oneDNN's sgemm
// corrupted the heap under mpirun in one of three runs.
kernels::GemmContext serial(const kernels::GemmContext& ctx, kernels::GemmWorkspace* thread_workspace) {
  kernels::GemmContext c = ctx;
  if (c.backend != kernels::GemmBackend::reference) c.backend = kernels::GemmBackend::native;
  c.threads = 1;
  c.workspace = thread_workspace;
  return c;
}
}  // namespace

template <typename T>
void attention_forward(const kernels::GemmContext& ctx, T* out, T* probs, const T* qkv, int64_t B, int64_t Tn,
                       int64_t NH, int64_t KV, int64_t HS) {
  const int64_t C = NH * HS, W = (NH + 2 * KV) * HS, group = NH / KV;
  const T scale = T(1) / std::sqrt(T(HS));
#pragma omp parallel
  {
    kernels::GemmWorkspace ws;
    const kernels::GemmContext one = serial(ctx, &ws);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < NH; ++h) {
        const T* q = qkv + b * Tn * W + h * HS;
        const T* k = qkv + b * Tn * W + (NH + h / group) * HS;
        const T* v = k + KV * HS;
        T* p = probs + (b * NH + h) * Tn * Tn;
        kernels::gemm(one, Op::N, Op::T, Tn, Tn, HS, scale, q, W, k, W, T(0), p, Tn);
        for (int64_t t = 0; t < Tn; ++t) {
          T* row = p + t * Tn;
          T mx = row[0];
          for (int64_t j = 1; j <= t; ++j) mx = std::max(mx, row[j]);
          T sum = 0;
          for (int64_t j = 0; j <= t; ++j) sum += (row[j] = std::exp(row[j] - mx));
          const T inv = T(1) / sum;
          for (int64_t j = 0; j <= t; ++j) row[j] *= inv;
          for (int64_t j = t + 1; j < Tn; ++j) row[j] = T(0);  // masked: P·V sees zeros
        }
        kernels::gemm(one, Op::N, Op::N, Tn, HS, Tn, T(1), p, Tn, v, W, T(0), out + b * Tn * C + h * HS, C);
      }
  }
}

template <typename T>
void attention_backward(const kernels::GemmContext& ctx, T* dqkv, const T* dout, const T* probs, const T* qkv,
                        int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS) {
  const int64_t C = NH * HS, W = (NH + 2 * KV) * HS, group = NH / KV;
  const T scale = T(1) / std::sqrt(T(HS));
#pragma omp parallel
  {
    kernels::GemmWorkspace ws;
    const kernels::GemmContext one = serial(ctx, &ws);
    std::vector<T> ds(static_cast<size_t>(Tn * Tn));  // dP, then dS in place
    // One task per (batch, key/value head): the query heads of a group add into the same dK and
    // dV, so they run one after the other in the task that owns them (no two threads write one
    // gradient, and the order of the sums is fixed).
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < KV; ++g) {
        const T* k = qkv + b * Tn * W + (NH + g) * HS;
        const T* v = k + KV * HS;
        T* dk = dqkv + b * Tn * W + (NH + g) * HS;
        T* dv = dk + KV * HS;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const T* q = qkv + b * Tn * W + h * HS;
          T* dq = dqkv + b * Tn * W + h * HS;
          const T* p = probs + (b * NH + h) * Tn * Tn;
          const T* dy = dout + b * Tn * C + h * HS;
          kernels::gemm(one, Op::N, Op::T, Tn, Tn, HS, T(1), dy, C, v, W, T(0), ds.data(), Tn);  // dP = dO·V^T
          for (int64_t t = 0; t < Tn; ++t) {  // dS = P ⊙ (dP − Σ P·dP), times the score scale
            const T* pr = p + t * Tn;
            T* d = ds.data() + t * Tn;
            T dot = 0;
            for (int64_t j = 0; j <= t; ++j) dot += pr[j] * d[j];
            for (int64_t j = 0; j <= t; ++j) d[j] = pr[j] * (d[j] - dot) * scale;
            for (int64_t j = t + 1; j < Tn; ++j) d[j] = T(0);
          }
          kernels::gemm(one, Op::N, Op::N, Tn, HS, Tn, T(1), ds.data(), Tn, k, W, T(1), dq, W);  // dQ += dS·K
          kernels::gemm(one, Op::T, Op::N, Tn, HS, Tn, T(1), ds.data(), Tn, q, W, T(1), dk, W);  // dK += dS^T·Q
          kernels::gemm(one, Op::T, Op::N, Tn, HS, Tn, T(1), p, Tn, dy, C, T(1), dv, W);         // dV += P^T·dO
        }
      }
  }
}

template void attention_forward<float>(const kernels::GemmContext&, float*, float*, const float*, int64_t, int64_t,
                                       int64_t, int64_t, int64_t);
template void attention_forward<double>(const kernels::GemmContext&, double*, double*, const double*, int64_t,
                                        int64_t, int64_t, int64_t, int64_t);
template void attention_backward<float>(const kernels::GemmContext&, float*, const float*, const float*, const float*,
                                        int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<double>(const kernels::GemmContext&, double*, const double*, const double*,
                                         const double*, int64_t, int64_t, int64_t, int64_t, int64_t);

}  // namespace hokusai::model
