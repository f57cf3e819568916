// Vocabulary parallelism: tensor-parallel rank r holds the embedding / output rows of vocabulary
// ids [v0, v0 + Vl) (v0 = r * Vl; the padded vocabulary Vp = tp * Vl); ids >= V_real are padding.
// The reductions come from TensorParallelOps (the trainer builds them from the tp communicator;
// src/parallel/tensor_parallel.hpp: tensor_parallel_ops). tests/mpi/test_tensor_parallel.cpp
// checks both against the serial ops at 1-4 ranks.
#pragma once

#include <cstdint>

#include "hokusai/model.hpp"

namespace hokusai::model {

// out(N,C) := embedding rows of `tokens` (each row lives on one rank, the others add zeros),
// summed over the group; then + wpe[t] (positions, replicated; null: none), once.
// rows (sequence parallelism): only this rank's token rows of that sum (a reduce-scatter, half an
// all-reduce's bytes), into out + rows.begin*C; `partial` (N,C) holds the rank's lookups, which
// MPI's reduce-scatter may not alias with its output. partial null: all rows (all-reduce).
void vocab_parallel_embedding_forward(const TensorParallelOps& tp, float* out, const int32_t* tokens,
                                      const float* wte_r, const float* wpe, int64_t B, int64_t Tn, int64_t C,
                                      int64_t v0, int64_t Vl, comm::Range rows = {}, float* partial = nullptr);

// Softmax cross-entropy over logits split by vocabulary: this rank holds logits_r(N, Vl); no
// rank ever holds N x Vp. losses[i] = lse_i - logit_i[target_i] (0 where target < 0), lse over
// the real ids of every rank: one max (N floats) and one sum (2N doubles) over the group.
void vocab_parallel_xent_forward(const TensorParallelOps& tp, float* losses, float* lse, const float* logits_r,
                                 const int32_t* targets, int64_t N, int64_t Vl, int64_t v0, int64_t V_real);
// The backward needs no communication: kernels::softmax_xent_backward on this rank's slice with
// the global lse and vocab_start = v0.

}  // namespace hokusai::model
