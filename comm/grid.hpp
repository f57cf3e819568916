// ParallelGrid: where this rank sits in the tp x pp x dp layout, and which ranks share each
// parallel group. Pure arithmetic here; the MPI communicators built from it live beside it in
// comm/ (they arrive with the comm layer) and are derived from these same formulas.
//
// Rank formula (Megatron's convention, tp innermost so tensor-parallel groups share a node or sit
// on torus neighbours):
//     rank = tp_rank + tp * (dp_rank + dp * pp_rank)
//
// Worked example, tp = 2, pp = 2, dp = 2 (8 ranks):
//     rank : 0 1 2 3 4 5 6 7
//     tp   : 0 1 0 1 0 1 0 1
//     dp   : 0 0 1 1 0 0 1 1
//     pp   : 0 0 0 0 1 1 1 1
//   tensor-parallel groups   {0,1} {2,3} {4,5} {6,7}
//   data-parallel groups     {0,2} {1,3} {4,6} {5,7}
//   pipeline-parallel groups {0,4} {1,5} {2,6} {3,7}
//   embedding-tie groups     {0,4} {1,5} {2,6} {3,7}   (first and last stage; = pp groups here)
//   rank 5 = tp 1, dp 0, pp 1: its pipeline predecessor is rank 1, it is the last stage.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/range.hpp"

namespace hokusai::comm {

struct GridShape {
  int tp = 1, pp = 1, dp = 1;
  int world() const { return tp * pp * dp; }
};

class ParallelGrid {
 public:
  // Throws std::invalid_argument naming the numbers when the layout does not fit world_size or
  // rank is out of range.
  ParallelGrid(GridShape shape, int world_size, int rank);

  // A 1 x 1 x 1 grid for single-process tools and tests.
  static ParallelGrid single() { return ParallelGrid(GridShape{}, 1, 0); }

  const GridShape& shape() const { return shape_; }
  int rank() const { return rank_; }
  int world_size() const { return shape_.world(); }
  int tp_rank() const { return tp_rank_; }
  int pp_rank() const { return pp_rank_; }
  int dp_rank() const { return dp_rank_; }
  bool first_stage() const { return pp_rank_ == 0; }
  bool last_stage() const { return pp_rank_ == shape_.pp - 1; }

  int rank_of(int tp_rank, int dp_rank, int pp_rank) const {
    return tp_rank + shape_.tp * (dp_rank + shape_.dp * pp_rank);
  }
  // Members of this rank's groups, in group-rank order.
  std::vector<int> tp_group() const;
  std::vector<int> dp_group() const;
  std::vector<int> pp_group() const;
  // Tied input/output embeddings: the first and the last stage of this rank's pipeline, which
  // sum their copies' gradients. A rank on a middle stage (or any rank when pp = 1) is alone.
  std::vector<int> embedding_group() const;

 private:
  GridShape shape_;
  int rank_, tp_rank_, pp_rank_, dp_rank_;
};

}  // namespace hokusai::comm
