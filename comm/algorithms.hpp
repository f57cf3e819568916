// The collective algorithms by name (no MPI: the config names them, comm/collectives.hpp runs them).
#pragma once

#include <array>
#include <string_view>
#include <utility>

#include "hokusai/names.hpp"

namespace hokusai::comm {

// torus: allreduce_torus (comm/topology.hpp) on a communicator laid on a torus; hierarchical:
// allreduce_hierarchical (comm/topology.hpp) on a communicator grouped by node. The plain
// allreduce() of comm/collectives.hpp knows neither and rejects both.
enum class AllreduceAlgorithm { automatic, mpi, ring, rabenseifner, torus, hierarchical };

// Broadcast from root: mpi (MPI_Bcast) or scatter_allgather (the root sends chunk q to rank q,
// then the ring allgather: 2n(p−1)/p bytes per rank, bandwidth-optimal for large messages).
enum class BroadcastAlgorithm { mpi, scatter_allgather };

}  // namespace hokusai::comm

template <>
struct hokusai::Names<hokusai::comm::AllreduceAlgorithm> {
  using E = comm::AllreduceAlgorithm;
  static constexpr std::array<std::pair<E, std::string_view>, 6> table = {
      {{E::automatic, "automatic"}, {E::mpi, "mpi"}, {E::ring, "ring"}, {E::rabenseifner, "rabenseifner"},
       {E::torus, "torus"}, {E::hierarchical, "hierarchical"}}};
};
template <>
struct hokusai::Names<hokusai::comm::BroadcastAlgorithm> {
  using E = comm::BroadcastAlgorithm;
  static constexpr std::array<std::pair<E, std::string_view>, 2> table = {
      {{E::mpi, "mpi"}, {E::scatter_allgather, "scatter_allgather"}}};
};
