// A contiguous part of an index range, and the even split every sharding in hokusai uses (data
// ranks' gradient chunks, ZeRO-1 shards, pipeline stages' layers, the model's parameter ranges).
// Arithmetic only: included by the model's public header without the grid or MPI.
#pragma once

#include <cstdint>

namespace hokusai::comm {

// [begin, end) of part `index` when `total` items are split into `parts` contiguous parts as
// evenly as possible (the first total % parts parts get one more).
struct Range {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
};
Range split_evenly(int64_t total, int parts, int index);

}  // namespace hokusai::comm
