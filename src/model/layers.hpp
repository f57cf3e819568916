// Layers built on the GEMM interface (the elementwise layers are kernels/ops.hpp).
// Legend: N tokens, IC input features, OC output features.
#pragma once

#include <cstdint>
#include <span>

#include "hokusai/model.hpp"
#include "kernels/gemm.hpp"

namespace hokusai::model {

// out(N,OC) = in(N,IC) · w(OC,IC)^T + b(OC)   (b may be null)
template <typename T>
void linear_forward(const kernels::GemmContext& ctx, T* out, const T* in, const T* w, const T* b,
                    int64_t N, int64_t IC, int64_t OC);

// din(N,IC) := dout · w (overwritten: no caller adds into an input gradient, and zeroing it first
// was a pass over N x IC per product);  dw(OC,IC) += dout^T · in;  db(OC) += column sums of dout.
// din or db may be null (not needed / no bias).
template <typename T>
void linear_backward(const kernels::GemmContext& ctx, T* din, T* dw, T* db, const T* dout,
                     const T* in, const T* w, int64_t N, int64_t IC, int64_t OC);

// The two tensor-parallel halves of a Megatron pair of linears. tp null (or one rank, or the
// double model, which is never split): the plain linear. A column-parallel forward (w = this
// rank's output rows, input replicated) and a row-parallel backward (dout replicated) need no
// communication: they are linear_forward / linear_backward.
//
// Row-parallel forward (w = this rank's input columns, in = this rank's input block):
// out = sum over the tp group of in·w^T, then + b (replicated) once.
template <typename T>
void row_parallel_linear_forward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* out, const T* in,
                                 const T* w, const T* b, int64_t N, int64_t IC, int64_t OC);
// Column-parallel backward: din := sum over the tp group of dout·w (overwritten: the partial
// sums must not meet other contributions before the reduction); dw += dout^T·in; db += colsum.
template <typename T>
void column_parallel_linear_backward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* din, T* dw,
                                     T* db, const T* dout, const T* in, const T* w, int64_t N, int64_t IC,
                                     int64_t OC);

// Sequence parallelism (ModelDims::sequence_parallel; Megatron's): between the pairs, each tp
// rank holds only its block tp->rows(N) of the N token rows. The conjugate pairs
// (src/parallel/tensor_parallel.hpp): all-gather the rows before a column-parallel linear
// (backward: reduce-scatter its input gradient), reduce-scatter after a row-parallel one
// (backward: all-gather its output gradient). tp must be a split group (float).
//
// full(N x C) := every rank's rows; returns full.
template <typename T>
const T* sequence_gather(const TensorParallelOps* tp, const T* mine, int64_t N, int64_t C, T* full);
// Row-parallel forward, reduce-scattered: mine(rows x OC) := this rank's rows of
// (sum over the tp group of in·w^T) + b. partial: N x OC scratch.
template <typename T>
void sequence_row_parallel_linear_forward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* mine,
                                          T* partial, const T* in, const T* w, const T* b, int64_t N, int64_t IC,
                                          int64_t OC);
// Column-parallel backward, reduce-scattered: din(rows x IC) := this rank's rows of the sum over
// the tp group of dout·w (overwritten); dw += dout^T·in (in: the gathered input, N x IC);
// db += colsum(dout). partial: N x IC scratch.
template <typename T>
void sequence_column_parallel_linear_backward(const kernels::GemmContext& ctx, const TensorParallelOps* tp, T* din,
                                              T* partial, T* dw, T* db, const T* dout, const T* in, const T* w,
                                              int64_t N, int64_t IC, int64_t OC);

}  // namespace hokusai::model

namespace hokusai::model {

// Causal self-attention through GEMM (same contract as kernels::attention_forward/backward,
// which stay as the reference): per (batch, head), S = scale·Q·K^T and O = P·V as matrix
// products on strided views of qkv(B,T,NH+2*KV,HS) (NH query heads, then KV key and KV value
// heads; query head h reads key/value head h/(NH/KV)), a causal softmax between them. The full T×T
// products do twice the causal FLOPs but at GEMM speed. Forward is parallel over (batch, head),
// backward over (batch, key/value head) as a group's heads add into one dK and dV; each
// product runs single-threaded inside, on the native GEMM whatever ctx.backend says (the library
// backends are not reentrant; see attention.cpp), or the reference for the reference backend.
template <typename T>
void attention_forward(const kernels::GemmContext& ctx, T* out, T* probs, const T* qkv, int64_t B, int64_t Tn,
                       int64_t NH, int64_t KV, int64_t HS);
// dqkv += gradient (adds, like every backward).
template <typename T>
void attention_backward(const kernels::GemmContext& ctx, T* dqkv, const T* dout, const T* probs, const T* qkv,
                        int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS);

// Fused causal attention, flash-style: per (batch, head, query tile) the scores against one key
// tile at a time (GEMM), an online softmax (running max and sum per row, the output rescaled as
// the max grows), and P·V added into the output; only the log-sum-exp per row is saved
// (lse: B x NH x T), never the T x T probabilities, so memory per layer is O(T). Backward
// recomputes each tile's probabilities from lse, with D = rowsum(dO ⊙ O) from the saved output,
// in tasks of (batch, key/value head, key chunk): kFlashBackwardTasks. Same layouts and results (to
// rounding) as attention_forward/backward, which stay as the reference.
struct FlashTiles {
  int64_t q = 0;  // query rows per tile; 0: for_length's choice
  int64_t k = 0;  // keys per tile
  // Measured on Zen 5 (bench_attention --batch 1 and 4, gpt2-124m heads, 2 threads, 2026-12-04,
  // docs/performance.md): up to T = 512, 64 x 256 — 8-9% faster than 128 x 128 at T = 256 and level
  // or ahead of every other tile tried at 256 and 512 (at T = 256 one key tile covers every key, and
  // 64-row query tiles give more forward tasks); 256 x 256 above (1.55-1.69x the GEMM path at
  // T = 2048), where fewer, larger tiles amortise packing K and V.
  static FlashTiles for_length(int64_t T) { return T <= 512 ? FlashTiles{64, 256} : FlashTiles{256, 256}; }
  // Where the causal diagonal crosses a tile (some of its rows see only some of its keys), the
  // tile's rows are taken this many at a time, each band against the keys its last row sees: the
  // products skip most of the masked triangle instead of computing it and zeroing it (a 256 x 256
  // diagonal tile in bands of 64 computes 62.5% of its products). <= 0 or >= q: whole tiles.
  int64_t band = 64;
};
// The backward's tasks: each (batch, key/value head) is split into chunks of key tiles until there
// are at least this many (one per core of an A64FX node), so a rank with few heads and a
// micro-batch of 1 still fills its cores; a chunk adds its part of dQ into a buffer of its own
// (chunks x the size of Q, transient), summed in chunk order. From the shape alone: the results
// do not depend on the thread count.
inline constexpr int64_t kFlashBackwardTasks = 48;

// qkv_bits (float only): Q, K and V as the 16-bit patterns of ctx.precision (kernels::narrow), in
// qkv's layout — a block that keeps qkv in 16 bits (Halves); then qkv is not read. The products
// read the patterns directly: the same bits as from the values they stand for, half the bytes.
template <typename T>
void flash_attention_forward(const kernels::GemmContext& ctx, T* out, T* lse, const T* qkv, int64_t B, int64_t Tn,
                             int64_t NH, int64_t KV, int64_t HS, FlashTiles tiles = {},
                             const uint16_t* qkv_bits = nullptr);
// dqkv += gradient; `out` and `lse` are the forward's. `dq_parts`: the chunks' dQ parts, at least
// flash_backward_parts(...) values (the model keeps them in its scratch, so the planner counts
// them); empty: allocated here for the call. Too small: std::invalid_argument.
template <typename T>
void flash_attention_backward(const kernels::GemmContext& ctx, T* dqkv, const T* dout, const T* out, const T* lse,
                              const T* qkv, int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS,
                              FlashTiles tiles = {}, std::span<T> dq_parts = {}, const uint16_t* qkv_bits = nullptr);
// The values of dQ parts flash_attention_backward needs for one shape (0: one chunk per
// (batch, kv head), dQ added in place), and the most any shape up to (max_B, max_T) needs.
int64_t flash_backward_parts(int64_t B, int64_t Tn, int64_t NH, int64_t KV, int64_t HS, FlashTiles tiles = {});
int64_t flash_backward_parts_max(int64_t max_B, int64_t max_T, int64_t NH, int64_t KV, int64_t HS);

}  // namespace hokusai::model
