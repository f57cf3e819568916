// Collectives on fp32 and bf16 buffers over any Communicator, in place or out of place.
//   ring          reduce-scatter then allgather around the ring: 2(p-1) steps, bandwidth-optimal
//                 (each rank sends 2n(p-1)/p bytes); any p.
//   rabenseifner  reduce-scatter by recursive halving + allgather by recursive doubling:
//                 2 lg p steps, the same bytes; non-powers of two fold the first 2r ranks in
//                 pairs (r = p - 2^floor(lg p)) before and unfold them after.
//   mpi           the MPI library's MPI_Allreduce (the peer in bench/collectives).
// Sums of integer-valued floats are exact in every algorithm (tests rely on it); for general
// floats the summation order differs between algorithms, within fp32 rounding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "comm/algorithms.hpp"
#include "comm/dtype.hpp"
#include "comm/grid.hpp"
#include "comm/mpi.hpp"

namespace hokusai::comm {

enum class ReduceOp { sum, average };
// What is known about where a communicator's ranks sit: nothing (flat), one rank per node of a
// torus (TorusComms), or several ranks per node (Hierarchy).
enum class Layout { flat, torus, nodes };

// The selection policy (automatic): see docs in collectives.cpp with the measured thresholds.
AllreduceAlgorithm choose_allreduce(int64_t bytes, int ranks, Layout layout = Layout::flat);
// `requested`, or the policy's choice when it is automatic.
AllreduceAlgorithm resolve_allreduce(AllreduceAlgorithm requested, int64_t bytes, int ranks, Layout layout);
// The policy in words, for the start-up line of a collective over `ranks` ranks whose messages
// are between min_bytes and max_bytes.
std::string describe_policy(int64_t min_bytes, int64_t max_bytes, int ranks, Layout layout);

// Every collective below takes T = float or bf16 (comm/dtype.hpp; instantiated in
// collectives.cpp). bf16 sums add in fp32 and round once per step; the mpi algorithm on bf16
// reduces an fp32 copy with MPI_Allreduce (MPI has no bf16 sum).

// data[0..count) := op over the ranks of comm. Every rank passes the same count.
template <class T>
void allreduce(const Communicator& comm, T* data, int64_t count, ReduceOp op,
               AllreduceAlgorithm algorithm = AllreduceAlgorithm::automatic);
// Out of place: out[0..count) := op over every rank's in[0..count); in is not modified (in == out
// is the in-place call). The input is copied into out, then reduced there.
template <class T>
void allreduce(const Communicator& comm, const T* in, T* out, int64_t count, ReduceOp op,
               AllreduceAlgorithm algorithm = AllreduceAlgorithm::automatic);

// Ring reduce-scatter, in place: afterwards chunk split_evenly(count, p, rank) of data holds the
// reduced values (the other chunks hold partial sums).
template <class T>
void reduce_scatter_ring(const Communicator& comm, T* data, int64_t count, ReduceOp op);
// Ring allgather, in place: each rank's chunk split_evenly(count, p, rank) goes to every rank.
template <class T>
void allgather_ring(const Communicator& comm, T* data, int64_t count);
// Out of place, as MPI_Reduce_scatter with counts split_evenly(count, p, ·): out receives this
// rank's reduced chunk (split_evenly(count, p, rank).size() elements); in is not modified.
template <class T>
void reduce_scatter(const Communicator& comm, const T* in, T* out, int64_t count, ReduceOp op);
// Out of place, as MPI_Allgatherv with the same chunks: in holds this rank's chunk, out[0..count)
// receives every rank's.
template <class T>
void allgather(const Communicator& comm, const T* in, T* out, int64_t count);

// Broadcast from root (comm/algorithms.hpp: BroadcastAlgorithm).
template <class T>
void broadcast(const Communicator& comm, T* data, int64_t count, int root,
               BroadcastAlgorithm algorithm = BroadcastAlgorithm::scatter_allgather);

}  // namespace hokusai::comm
