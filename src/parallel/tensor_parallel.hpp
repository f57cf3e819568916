// Tensor parallelism (Megatron style), the building blocks: the communication in conjugate pairs
// and the column-/row-parallel linear layers built on them. The model's blocks compose these.
//
// Conjugate pairs: the backward of each operation is its partner's forward.
//
//   operation (forward)        | what it does on the tp group            | its backward
//   ---------------------------+-----------------------------------------+----------------------
//   copy   (Megatron's f)      | nothing: every rank already holds x     | reduce
//   reduce (Megatron's g)      | x := sum over ranks of x (in place)     | copy (nothing)
//   split_columns              | keep this rank's column block of x      | gather_columns
//   gather_columns             | concatenate every rank's column block   | split_columns
//   gather_rows      (seq. p.) | concatenate every rank's row block      | reduce_scatter_rows
//   reduce_scatter_rows        | sum over ranks, keep this rank's rows   | gather_rows
//
// Blocks are comm::split_evenly(total, tp size, rank): uneven totals are allowed (the first
// total % size ranks get one more). With one rank every operation is a copy or nothing (no MPI
// call). Float buffers, row-major (rows x cols).
#pragma once

#include <cstdint>

#include "comm/grid.hpp"
#include "comm/mpi.hpp"
#include "hokusai/model.hpp"
#include "kernels/gemm.hpp"

namespace hokusai::parallel {

// reduce (g): x[0..n) := sum over the group, in place. Also copy's backward.
void tp_reduce(const comm::Communicator& tp, float* x, int64_t n);

// split_columns: mine(rows x cols_r) := full(rows x cols)[:, block r]. Backward of gather_columns.
void tp_split_columns(const comm::Communicator& tp, const float* full, int64_t rows, int64_t cols, float* mine);
// gather_columns: full(rows x cols) := [block 0 | block 1 | ...]. Backward of split_columns.
void tp_gather_columns(const comm::Communicator& tp, const float* mine, int64_t rows, int64_t cols, float* full);

// gather_rows: full(rows x cols) := every rank's row block stacked. Backward of reduce_scatter_rows.
void tp_gather_rows(const comm::Communicator& tp, const float* mine, int64_t rows, int64_t cols, float* full);
// reduce_scatter_rows: mine(rows_r x cols) := (sum over ranks of full)[block r rows]. Backward of
// gather_rows. `full` is not modified.
void tp_reduce_scatter_rows(const comm::Communicator& tp, const float* full, int64_t rows, int64_t cols,
                            float* mine);

// Column-parallel linear: the serial y(N,OC) = x(N,IC)·W(OC,IC)^T + b(OC) with W's rows (output
// features) split: this rank holds W_r = W[block r, :] and b_r, and produces the column block
// y_r(N,OC_r). The input x is replicated (copy), so the input gradient is a partial sum: reduce.
struct ColumnParallelLinear {
  // y_r := x·W_r^T + b_r   (b_r may be null)
  static void forward(const kernels::GemmContext& ctx, float* y_r, const float* x, const float* w_r,
                      const float* b_r, int64_t N, int64_t IC, int64_t OC_r);
  // dx += sum over ranks of dy_r·W_r (scratch: N*IC floats); dW_r += dy_r^T·x; db_r += colsum(dy_r).
  static void backward(const kernels::GemmContext& ctx, const comm::Communicator& tp, float* dx, float* scratch,
                       float* dw_r, float* db_r, const float* dy_r, const float* x, const float* w_r, int64_t N,
                       int64_t IC, int64_t OC_r);
};

// Row-parallel linear: the serial y(N,OC) = x(N,IC)·W(OC,IC)^T + b with W's columns (input
// features) split: this rank holds W_r = W[:, block r] and the column block x_r(N,IC_r) of the
// input (a column-parallel layer's output). Partial products are summed (reduce), then the bias,
// which every rank holds whole, is added once.
struct RowParallelLinear {
  // y := sum over ranks of x_r·W_r^T, + b   (b may be null)
  static void forward(const kernels::GemmContext& ctx, const comm::Communicator& tp, float* y, const float* x_r,
                      const float* w_r, const float* b, int64_t N, int64_t IC_r, int64_t OC);
  // dy is replicated: dx_r += dy·W_r; dW_r += dy^T·x_r; db += colsum(dy) (the same on every rank).
  static void backward(const kernels::GemmContext& ctx, float* dx_r, float* dw_r, float* db, const float* dy,
                       const float* x_r, const float* w_r, int64_t N, int64_t IC_r, int64_t OC);
};

// The model's view of the tp group (include/hokusai/model.hpp): sum, max and double sum over
// `tp`, which must outlive the returned object. The vocabulary-parallel embedding and
// cross-entropy that use it are in src/model/vocab_parallel.hpp.
TensorParallelOps tensor_parallel_ops(const comm::Communicator& tp);

}  // namespace hokusai::parallel
