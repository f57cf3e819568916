#include "comm/grid.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace hokusai::comm {

ParallelGrid::ParallelGrid(GridShape shape, int world_size, int rank) : shape_(shape), rank_(rank) {
  if (shape.tp < 1 || shape.pp < 1 || shape.dp < 1)
    throw std::invalid_argument("parallel layout tp=" + std::to_string(shape.tp) + " pp=" +
                                std::to_string(shape.pp) + " dp=" + std::to_string(shape.dp) +
                                ": each must be >= 1");
  if (shape.world() != world_size)
    throw std::invalid_argument("parallel layout tp*pp*dp = " + std::to_string(shape.tp) + "*" +
                                std::to_string(shape.pp) + "*" + std::to_string(shape.dp) + " = " +
                                std::to_string(shape.world()) + " but the job has " +
                                std::to_string(world_size) + " ranks: change parallel.* or -np");
  if (rank < 0 || rank >= world_size)
    throw std::invalid_argument("rank " + std::to_string(rank) + " outside [0, " +
                                std::to_string(world_size) + ")");
  tp_rank_ = rank % shape.tp;
  dp_rank_ = (rank / shape.tp) % shape.dp;
  pp_rank_ = rank / (shape.tp * shape.dp);
}

std::vector<int> ParallelGrid::tp_group() const {
  std::vector<int> g;
  for (int t = 0; t < shape_.tp; ++t) g.push_back(rank_of(t, dp_rank_, pp_rank_));
  return g;
}

std::vector<int> ParallelGrid::dp_group() const {
  std::vector<int> g;
  for (int d = 0; d < shape_.dp; ++d) g.push_back(rank_of(tp_rank_, d, pp_rank_));
  return g;
}

std::vector<int> ParallelGrid::pp_group() const {
  std::vector<int> g;
  for (int p = 0; p < shape_.pp; ++p) g.push_back(rank_of(tp_rank_, dp_rank_, p));
  return g;
}

std::vector<int> ParallelGrid::embedding_group() const {
  if (shape_.pp == 1 || !(first_stage() || last_stage())) return {rank_};
  return {rank_of(tp_rank_, dp_rank_, 0), rank_of(tp_rank_, dp_rank_, shape_.pp - 1)};
}

Range split_evenly(int64_t total, int parts, int index) {
  const int64_t base = total / parts, extra = total % parts;
  const int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

}  // namespace hokusai::comm
