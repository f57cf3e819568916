#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/ops.hpp"
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
          const T mx = kernels::row_max(row, t + 1);
          const T inv = T(1) / kernels::exp_shifted(row, t + 1, mx);
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
    CacheLineVector<T> ds(static_cast<size_t>(Tn * Tn));  // dP, then dS in place
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
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j <= t; ++j) dot += pr[j] * d[j];
            kernels::softmax_grad_rows(d, pr, &dot, scale, 1, t + 1, Tn);
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

namespace hokusai::model {

namespace {

// An operand of flash's products: values, or (Q, K and V of a block that keeps qkv in 16 bits) the
// patterns of the context's precision, which the products read as they are (kernels::GemmOperand).
template <typename T>
struct Rows {
  const T* values = nullptr;
  const uint16_t* bits = nullptr;
  Rows at(int64_t offset) const { return bits ? Rows{nullptr, bits + offset} : Rows{values + offset, nullptr}; }
};
template <typename T>
Rows<T> qkv_rows(const T* qkv, const uint16_t* qkv_bits) {
  if constexpr (!std::is_same_v<T, float>)
    if (qkv_bits) throw std::invalid_argument("flash attention: 16-bit qkv patterns need float products");
  return qkv_bits ? Rows<T>{nullptr, qkv_bits} : Rows<T>{qkv, nullptr};
}
template <typename T>
void product(const kernels::GemmContext& one, Op oa, Op ob, int64_t m, int64_t n, int64_t k, T alpha, Rows<T> a,
             int64_t lda, Rows<T> b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>)
    if (a.bits || b.bits)
      return kernels::gemm(one, oa, ob, m, n, k, alpha, kernels::GemmOperand{a.values, a.bits, lda},
                           kernels::GemmOperand{b.values, b.bits, ldb}, beta, c, ldc);
  kernels::gemm(one, oa, ob, m, n, k, alpha, a.values, lda, b.values, ldb, beta, c, ldc);
}
template <typename T>
Rows<T> values(const T* x) {
  return Rows<T>{x, nullptr};
}

// Query rows per product for one (query tile, key tile) pair: the whole tile where each of its rows
// sees every key of the key tile, else FlashTiles::band rows (<= 0 or >= the tile: whole tiles).
int64_t bands(int64_t q0, int64_t nq, int64_t k0, int64_t nk, int64_t band) {
  return band <= 0 || band >= nq || q0 >= k0 + nk - 1 ? nq : band;
}

}  // namespace

template <typename T>
void flash_attention_forward(const kernels::GemmContext& ctx, T* out, T* lse, const T* qkv, int64_t B, int64_t Tn,
                             int64_t NH, int64_t KV, int64_t HS, FlashTiles tiles, const uint16_t* qkv_bits) {
  if (tiles.q <= 0 || tiles.k <= 0) tiles = FlashTiles::for_length(Tn);
  const Rows<T> rows = qkv_rows(qkv, qkv_bits);
  const int64_t C = NH * HS, W = (NH + 2 * KV) * HS, group = NH / KV;
  const int64_t BQ = tiles.q, BK = tiles.k, nqt = (Tn + BQ - 1) / BQ, band = tiles.band;
  const T scale = T(1) / std::sqrt(T(HS));
#pragma omp parallel
  {
    kernels::GemmWorkspace ws;
    const kernels::GemmContext one = serial(ctx, &ws);
    // One query tile's scores against the current key tile, and its running max and sum per row;
    // on cache lines (a 256 x 256 tile from malloc starts 16 bytes past one: every row load splits).
    struct {
      CacheLineVector<T> s, m, l;
    } f{CacheLineVector<T>(size_t(BQ * BK)), CacheLineVector<T>(size_t(BQ)), CacheLineVector<T>(size_t(BQ))};
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < NH; ++h)
        for (int64_t qt = 0; qt < nqt; ++qt) {
          const int64_t q0 = qt * BQ, nq = std::min(BQ, Tn - q0);
          const Rows<T> q = rows.at((b * Tn + q0) * W + h * HS);
          const Rows<T> kbase = rows.at(b * Tn * W + (NH + h / group) * HS);
          const Rows<T> vbase = kbase.at(KV * HS);
          T* o = out + (b * Tn + q0) * C + h * HS;
          for (int64_t i = 0; i < nq; ++i) f.m[i] = -INFINITY, f.l[i] = T(0);
          // The first key tile writes o (beta 0: every row has a valid key there, and o may hold
          // anything); later tiles rescale it and add.
          for (int64_t k0 = 0; k0 < q0 + nq; k0 += BK) {  // causal: keys up to the tile's last query
            const int64_t nk = std::min(BK, q0 + nq - k0);
            // Rows b0 .. b0+nb against the keys k0 .. k0+nkb their last row sees (bands where the
            // diagonal crosses the tile; the keys left out are masked, so every row's sums are
            // the same). A band above every key of the tile is skipped: its rows add nothing here.
            for (int64_t b0 = 0, step = bands(q0, nq, k0, nk, band); b0 < nq; b0 += step) {
              const int64_t nb = std::min(step, nq - b0), nkb = std::min(nk, q0 + b0 + nb - k0);
              if (nkb <= 0) continue;
              T* const s = f.s.data() + b0 * BK;
              T* const ob = o + b0 * C;
              product(one, Op::N, Op::T, nb, nkb, HS, scale, q.at(b0 * W), W, kbase.at(k0 * W), W, T(0), s, BK);
              for (int64_t i = 0; i < nb; ++i) {  // online softmax: rescale what the row has so far
                const int64_t r = b0 + i, valid = std::min(nkb, q0 + r - k0 + 1);  // keys k0 .. q0+r
                T* row = s + i * BK;
                if (valid <= 0) {
                  std::fill_n(row, nkb, T(0));
                  continue;
                }
                const T mx = std::max(f.m[r], kernels::row_max(row, valid));
                const T alpha = std::exp(f.m[r] - mx);  // 0 for the first tile (m = -inf)
                const T sum = kernels::exp_shifted(row, valid, mx);
                std::fill(row + valid, row + nkb, T(0));
                f.l[r] = f.l[r] * alpha + sum;
                f.m[r] = mx;
                if (k0 > 0 && alpha != T(1))
                  for (int64_t d = 0; d < HS; ++d) ob[i * C + d] *= alpha;
              }
              product(one, Op::N, Op::N, nb, HS, nkb, T(1), values<T>(s), BK, vbase.at(k0 * W), W, T(k0 > 0), ob, C);
            }
          }
          for (int64_t i = 0; i < nq; ++i) {
            const T inv = T(1) / f.l[i];
            for (int64_t d = 0; d < HS; ++d) o[i * C + d] *= inv;
            lse[(b * NH + h) * Tn + q0 + i] = f.m[i] + std::log(f.l[i]);
          }
        }
  }
}

namespace {

// Tasks of the backward: (batch, key/value head, key chunk). A chunk's task owns dK and dV of its
// keys (the group's query heads add into them one after the other, query tiles in order: the same
// sums as one task per head) and adds its part of dQ into a buffer of its own; the parts are
// summed in chunk order afterwards. Chunks come from the shape alone (enough tasks for a many-core
// node with few heads per rank), so results do not depend on the thread count.
struct KeyChunks {
  int64_t per_chunk = 1;  // key tiles per chunk
  int64_t count = 1;
};
KeyChunks key_chunks(int64_t B, int64_t Tn, int64_t KV, int64_t BK) {
  const int64_t ktiles = std::max<int64_t>(1, (Tn + BK - 1) / BK);
  const int64_t want = std::clamp<int64_t>((kFlashBackwardTasks + B * KV - 1) / std::max<int64_t>(1, B * KV), 1, ktiles);
  const int64_t per_chunk = (ktiles + want - 1) / want;
  return {per_chunk, (ktiles + per_chunk - 1) / per_chunk};
}

}  // namespace

int64_t flash_backward_parts(int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, FlashTiles tiles) {
  if (tiles.q <= 0 || tiles.k <= 0) tiles = FlashTiles::for_length(Tn);
  const KeyChunks chunks = key_chunks(B, Tn, KV, tiles.k);
  // (B, KV, chunks, group, Tn, HS) = chunks x the size of Q; none with one chunk.
  return chunks.count > 1 ? B * chunks.count * NH * Tn * HS : 0;
}

int64_t flash_backward_parts_max(int64_t max_B, int64_t max_T, int64_t NH, int64_t KV, int64_t HS) {
  // Not monotonic in T (the tiles grow at T = 513, so there are fewer chunks): every shape counts.
  int64_t most = 0;
  for (int64_t b = 1; b <= max_B; ++b)
    for (int64_t t = 1; t <= max_T; ++t) most = std::max(most, flash_backward_parts(b, t, NH, KV, HS));
  return most;
}

template <typename T>
void flash_attention_backward(const kernels::GemmContext& ctx, T* dqkv, const T* dout, const T* out, const T* lse,
                              const T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS,
                              FlashTiles tiles, std::span<T> dq_parts, const uint16_t* qkv_bits) {
  if (tiles.q <= 0 || tiles.k <= 0) tiles = FlashTiles::for_length(Tn);
  const Rows<T> rows = qkv_rows(qkv, qkv_bits);
  const int64_t C = NH * HS, W = (NH + 2 * KV) * HS, group = NH / KV;
  const int64_t BQ = tiles.q, BK = tiles.k, band = tiles.band;
  const T scale = T(1) / std::sqrt(T(HS));
  const KeyChunks split = key_chunks(B, Tn, KV, BK);
  const int64_t per_chunk = split.per_chunk, chunks = split.count;
  // The first query row of the first query tile that reaches key chunk c: the chunk's dQ part is
  // written from there on (and only read from there on).
  const auto first_query = [&](int64_t c) { return c * per_chunk * BK / BQ * BQ; };
  const int64_t parts = flash_backward_parts(B, Tn, NH, KV, HS, tiles);
  std::vector<T> own;
  if (dq_parts.empty() && parts > 0) own.resize(size_t(parts)), dq_parts = own;
  if (int64_t(dq_parts.size()) < parts)
    throw std::invalid_argument("flash_attention_backward: " + std::to_string(dq_parts.size()) +
                                " values for the dQ parts of B " + std::to_string(B) + ", T " + std::to_string(Tn) +
                                ": " + std::to_string(parts) + " needed");
  // No zeroing of the parts: a chunk's first key tile writes its dQ rows (beta 0), and rows above
  // the chunk's first query tile are never written nor read.
  // D_t = dO_t · O_t of every (batch, head, query), made once for all the chunks that read it (the
  // size of lse); each chunk's task had made the rows it reads, most of them again per chunk.
  CacheLineVector<T> delta(static_cast<size_t>(B * NH * Tn));
#pragma omp parallel
  {
#pragma omp for collapse(2) schedule(static)
    for (int64_t bh = 0; bh < B * NH; ++bh)
      for (int64_t t = 0; t < Tn; ++t) {
        const T* dy = dout + ((bh / NH) * Tn + t) * C + (bh % NH) * HS;
        const T* y = out + ((bh / NH) * Tn + t) * C + (bh % NH) * HS;
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t d = 0; d < HS; ++d) dot += dy[d] * y[d];
        delta[size_t(bh * Tn + t)] = dot;
      }
    kernels::GemmWorkspace ws;
    const kernels::GemmContext one = serial(ctx, &ws);
    struct {  // one tile's probabilities and dP (then dS)
      CacheLineVector<T> s, dp;
    } f{CacheLineVector<T>(size_t(BQ * BK)), CacheLineVector<T>(size_t(BQ * BK))};
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < KV; ++g)
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t kbegin = c * per_chunk * BK, kend = std::min(Tn, kbegin + per_chunk * BK);
          const Rows<T> kbase = rows.at(b * Tn * W + (NH + g) * HS);
          const Rows<T> vbase = kbase.at(KV * HS);
          T* dkbase = dqkv + b * Tn * W + (NH + g) * HS;
          T* dvbase = dkbase + KV * HS;
          for (int64_t h = g * group; h < (g + 1) * group; ++h) {
            const T* dy = dout + b * Tn * C + h * HS;
            const T* ls = lse + (b * NH + h) * Tn;
            const T* dl = delta.data() + (b * NH + h) * Tn;
            // Where this head's dQ goes: dqkv itself (one chunk) or this chunk's part (rows of HS).
            T* dqh = chunks == 1 ? dqkv + b * Tn * W + h * HS
                                 : dq_parts.data() + (((b * KV + g) * chunks + c) * group + (h - g * group)) * Tn * HS;
            const int64_t ldq = chunks == 1 ? W : HS;
            for (int64_t q0 = first_query(c); q0 < Tn; q0 += BQ) {
              const int64_t nq = std::min(BQ, Tn - q0);
              const Rows<T> q = rows.at((b * Tn + q0) * W + h * HS);
              T* dq = dqh + q0 * ldq;
              const T* dyq = dy + q0 * C;
              for (int64_t k0 = kbegin; k0 < std::min(kend, q0 + nq); k0 += BK) {
                const int64_t nk = std::min(BK, std::min(kend, q0 + nq) - k0);
                const T beta = chunks > 1 && k0 == kbegin ? T(0) : T(1);  // a part's first write
                // In bands of rows where the diagonal crosses the tile, as in forward.
                for (int64_t b0 = 0, step = bands(q0, nq, k0, nk, band); b0 < nq; b0 += step) {
                  const int64_t nb = std::min(step, nq - b0), nkb = std::min(nk, q0 + b0 + nb - k0);
                  const int64_t r0 = q0 + b0;  // the band's first query
                  T* const dqb = dq + b0 * ldq;
                  if (nkb <= 0) {  // no key of the tile for these rows; a part's rows are still written
                    if (beta == T(0))
                      for (int64_t i = 0; i < nb; ++i) std::fill_n(dqb + i * ldq, HS, T(0));
                    continue;
                  }
                  const Rows<T> qb = q.at(b0 * W);
                  const T* const dyb = dyq + b0 * C;
                  // P from the saved log-sum-exp (0 above the diagonal).
                  product(one, Op::N, Op::T, nb, nkb, HS, scale, qb, W, kbase.at(k0 * W), W, T(0), f.s.data(), BK);
                  kernels::causal_probabilities(f.s.data(), BK, nb, nkb, ls + r0, r0 - k0);
                  // dV += P^T dO;  dP = dO V^T;  dS = P ⊙ (dP − D) · scale;  dQ += dS K;  dK += dS^T Q
                  kernels::gemm(one, Op::T, Op::N, nkb, HS, nb, T(1), f.s.data(), BK, dyb, C, T(1), dvbase + k0 * W, W);
                  product(one, Op::N, Op::T, nb, nkb, HS, T(1), values(dyb), C, vbase.at(k0 * W), W, T(0), f.dp.data(),
                          BK);
                  kernels::softmax_grad_rows(f.dp.data(), f.s.data(), dl + r0, scale, nb, nkb, BK);
                  product(one, Op::N, Op::N, nb, HS, nkb, T(1), values<T>(f.dp.data()), BK, kbase.at(k0 * W), W, beta,
                          dqb, ldq);
                  product(one, Op::T, Op::N, nkb, HS, nb, T(1), values<T>(f.dp.data()), BK, qb, W, T(1),
                          dkbase + k0 * W, W);
                }
              }
            }
          }
        }
    if (chunks > 1) {  // dQ: the chunks' parts in chunk order
#pragma omp for collapse(3) schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < NH; ++h)
          for (int64_t t = 0; t < Tn; ++t) {
            const int64_t g = h / group;
            T* dq = dqkv + (b * Tn + t) * W + h * HS;
            for (int64_t c = 0; c < chunks && first_query(c) <= t; ++c) {  // the chunks that reach row t
              const T* part = dq_parts.data() + (((b * KV + g) * chunks + c) * group + (h - g * group)) * Tn * HS + t * HS;
              for (int64_t d = 0; d < HS; ++d) dq[d] += part[d];
            }
          }
    }
  }
}

template void flash_attention_forward<float>(const kernels::GemmContext&, float*, float*, const float*, int64_t,
                                             int64_t, int64_t, int64_t, int64_t, FlashTiles, const uint16_t*);
template void flash_attention_forward<double>(const kernels::GemmContext&, double*, double*, const double*, int64_t,
                                              int64_t, int64_t, int64_t, int64_t, FlashTiles, const uint16_t*);
template void flash_attention_backward<float>(const kernels::GemmContext&, float*, const float*, const float*,
                                              const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                                              int64_t, FlashTiles, std::span<float>, const uint16_t*);
template void flash_attention_backward<double>(const kernels::GemmContext&, double*, const double*, const double*,
                                               const double*, const double*, int64_t, int64_t, int64_t, int64_t,
                                               int64_t, FlashTiles, std::span<double>, const uint16_t*);

}  // namespace hokusai::model
