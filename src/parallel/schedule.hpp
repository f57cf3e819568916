// The pipeline schedules as pure arithmetic (no MPI, no model): the order in which one stage runs
// the forward and backward of each micro-batch through each of its model chunks. Pipeline
// (parallel/pipeline.hpp) executes it; the planner counts its in-flight activations; the SimGrid
// replay of a plan (bench/plan_replay.cpp) runs the same order with computation as delays.
#pragma once

#include <vector>

namespace hokusai::parallel {

// One step of a schedule: the forward or backward of one micro-batch through one model chunk.
struct ScheduleOp {
  bool forward;
  int micro, chunk;
};

// The order stage `stage` of `stages` runs m micro-batches through its `chunks` model chunks:
// 1F1B for one chunk, interleaved 1F1B for more (m a multiple of stages; std::invalid_argument
// otherwise).
std::vector<ScheduleOp> pipeline_schedule(int stages, int stage, int micro_batches, int chunks = 1);

// Micro-batch chunks that stage keeps between forward and backward under that schedule.
int pipeline_slots(int stages, int stage, int micro_batches, int chunks = 1);

}  // namespace hokusai::parallel
