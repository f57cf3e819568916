// The communicators of a ParallelGrid, each derived from the grid's own group formulas (the
// rank formula of comm/grid.hpp), never from separate arithmetic.
#pragma once

#include "comm/grid.hpp"
#include "comm/mpi.hpp"

namespace hokusai::comm {

struct GridComms {
  ParallelGrid grid;
  Communicator world, tp, dp, pp;
  Communicator embed;  // first and last pipeline stage (tied embeddings); size 1 elsewhere
  // Collective over `world`: every rank must call it with the same shape.
  static GridComms build(GridShape shape, const Communicator& world);
};

}  // namespace hokusai::comm
