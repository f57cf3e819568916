// Collectives on fp32 buffers over any Communicator, in place.
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

#include "comm/grid.hpp"
#include "comm/mpi.hpp"

namespace hokusai::comm {

enum class ReduceOp { sum, average };
// torus: allreduce_torus (comm/topology.hpp) on a communicator laid on a torus; hierarchical:
// allreduce_hierarchical (comm/topology.hpp) on a communicator grouped by node. The plain
// allreduce() below knows neither and rejects both.
enum class AllreduceAlgorithm { automatic, mpi, ring, rabenseifner, torus, hierarchical };
// What is known about where a communicator's ranks sit: nothing (flat), one rank per node of a
// torus (TorusComms), or several ranks per node (Hierarchy).
enum class Layout { flat, torus, nodes };

AllreduceAlgorithm parse_allreduce_algorithm(std::string_view name);  // throws std::invalid_argument
std::string_view to_string(AllreduceAlgorithm a);
// The selection policy (automatic): see docs in collectives.cpp with the measured thresholds.
AllreduceAlgorithm choose_allreduce(int64_t bytes, int ranks, Layout layout = Layout::flat);
// The policy in words, for the start-up line of a collective over `ranks` ranks whose messages
// are between min_bytes and max_bytes.
std::string describe_policy(int64_t min_bytes, int64_t max_bytes, int ranks, Layout layout);

// data[0..count) := op over the ranks of comm. Every rank passes the same count.
void allreduce(const Communicator& comm, float* data, int64_t count, ReduceOp op,
               AllreduceAlgorithm algorithm = AllreduceAlgorithm::automatic);

// Ring reduce-scatter, in place: afterwards chunk split_evenly(count, p, rank) of data holds the
// reduced values (the other chunks hold partial sums).
void reduce_scatter_ring(const Communicator& comm, float* data, int64_t count, ReduceOp op);
// Ring allgather, in place: each rank's chunk split_evenly(count, p, rank) goes to every rank.
void allgather_ring(const Communicator& comm, float* data, int64_t count);

}  // namespace hokusai::comm
