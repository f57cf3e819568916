#include "parallel/schedule.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace hokusai::parallel {

std::vector<ScheduleOp> pipeline_schedule(int P, int s, int m, int v) {
  std::vector<ScheduleOp> ops;
  if (v == 1) {
    const int warmup = std::min(P - s - 1, m);
    for (int i = 0; i < warmup; ++i) ops.push_back({true, i, 0});
    for (int i = warmup; i < m; ++i) {
      ops.push_back({true, i, 0});
      ops.push_back({false, i - warmup, 0});
    }
    for (int i = m - warmup; i < m; ++i) ops.push_back({false, i, 0});
    return ops;
  }
  if (m % P != 0)
    throw std::invalid_argument("interleaved pipeline: " + std::to_string(m) + " micro-batches per step is not a "
                                "multiple of the " + std::to_string(P) + " stages");
  const int total = m * v;
  // The k-th forward (backward) of this stage: micro-batch and chunk.
  const auto micro = [&](int k) { return (k / (P * v)) * P + k % P; };
  const auto chunk = [&](int k, bool forward) {
    const int c = (k % (P * v)) / P;
    return forward ? c : v - 1 - c;
  };
  const int warmup = m == P ? total : std::min(total, (P - s - 1) * 2 + (v - 1) * P);
  for (int k = 0; k < warmup; ++k) ops.push_back({true, micro(k), chunk(k, true)});
  for (int k = 0; k < total - warmup; ++k) {
    ops.push_back({true, micro(warmup + k), chunk(warmup + k, true)});
    ops.push_back({false, micro(k), chunk(k, false)});
  }
  for (int k = total - warmup; k < total; ++k) ops.push_back({false, micro(k), chunk(k, false)});
  return ops;
}

int pipeline_slots(int stages, int stage, int micro_batches, int chunks) {
  int in_flight = 0, most = 1;
  for (const ScheduleOp& op : pipeline_schedule(stages, stage, micro_batches, chunks))
    most = std::max(most, in_flight += op.forward ? 1 : -1);
  return most;
}

}  // namespace hokusai::parallel
