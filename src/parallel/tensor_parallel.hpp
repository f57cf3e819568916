// Tensor parallelism (Megatron style), the communication: the conjugate pairs below, and the
// model's view of the tp group (tensor_parallel_ops). The column-/row-parallel linears that use
// it are in src/model/layers.hpp, the vocabulary-parallel ops in src/model/vocab_parallel.hpp.
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

#include "comm/collectives.hpp"
#include "comm/grid.hpp"
#include "comm/mpi.hpp"
#include "hokusai/model.hpp"

namespace hokusai::parallel {

// reduce (g): x[0..n) := sum over the group, in place, by `algorithm` (automatic: the policy of
// comm/collectives.hpp). Also copy's backward.
void tp_reduce(const comm::Communicator& tp, float* x, int64_t n,
               comm::AllreduceAlgorithm algorithm = comm::AllreduceAlgorithm::automatic);

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

// The model's view of the tp group (include/hokusai/model.hpp): sum, max and double sum over
// `tp`, which must outlive the returned object. The vocabulary-parallel embedding and
// cross-entropy that use it are in src/model/vocab_parallel.hpp. When `seconds` is given, the
// time spent in each reduction is added to it (the step's tensor-parallel communication time);
// `algorithm` is the sum's (comm.tp_allreduce).
TensorParallelOps tensor_parallel_ops(const comm::Communicator& tp, double* seconds = nullptr,
                                      comm::AllreduceAlgorithm algorithm = comm::AllreduceAlgorithm::automatic);

}  // namespace hokusai::parallel
