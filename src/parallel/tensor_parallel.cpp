#include "parallel/tensor_parallel.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/collectives.hpp"

namespace hokusai::parallel {

namespace {

// Element counts of every rank's block when `total` units of `unit` floats are split evenly.
std::vector<int64_t> blocks(int p, int64_t total, int64_t unit) {
  std::vector<int64_t> counts(static_cast<size_t>(p));
  for (int q = 0; q < p; ++q) counts[size_t(q)] = comm::split_evenly(total, p, q).size() * unit;
  return counts;
}

}  // namespace

void tp_reduce(const comm::Communicator& tp, float* x, int64_t n, comm::AllreduceAlgorithm algorithm) {
  if (tp.size() == 1 || n == 0) return;
  comm::allreduce(tp, x, n, comm::ReduceOp::sum, algorithm);
}

void tp_split_columns(const comm::Communicator& tp, const float* full, int64_t rows, int64_t cols, float* mine) {
  const comm::Range c = comm::split_evenly(cols, tp.size(), tp.rank());
  for (int64_t i = 0; i < rows; ++i) std::copy(full + i * cols + c.begin, full + i * cols + c.end, mine + i * c.size());
}

void tp_gather_columns(const comm::Communicator& tp, const float* mine, int64_t rows, int64_t cols, float* full) {
  const int p = tp.size();
  if (p == 1) {
    std::copy(mine, mine + rows * cols, full);
    return;
  }
  // Every rank's (rows x cols_q) block, contiguous and in rank order, then interleaved by row.
  std::vector<float> stacked(size_t(rows * cols));
  tp.allgatherv(mine, stacked.data(), blocks(p, cols, rows));
  for (int q = 0; q < p; ++q) {
    const comm::Range c = comm::split_evenly(cols, p, q);
    const float* block = stacked.data() + c.begin * rows;  // displs[q] = c.begin * rows
    for (int64_t i = 0; i < rows; ++i)
      std::copy(block + i * c.size(), block + (i + 1) * c.size(), full + i * cols + c.begin);
  }
}

void tp_gather_rows(const comm::Communicator& tp, const float* mine, int64_t rows, int64_t cols, float* full) {
  const int p = tp.size();
  if (p == 1) {
    std::copy(mine, mine + rows * cols, full);
    return;
  }
  tp.allgatherv(mine, full, blocks(p, rows, cols));
}

void tp_reduce_scatter_rows(const comm::Communicator& tp, const float* full, int64_t rows, int64_t cols,
                            float* mine) {
  const int p = tp.size();
  if (p == 1) {
    std::copy(full, full + rows * cols, mine);
    return;
  }
  tp.reduce_scatter(full, mine, blocks(p, rows, cols));
}

TensorParallelOps tensor_parallel_ops(const comm::Communicator& tp, double* seconds,
                                      comm::AllreduceAlgorithm algorithm) {
  // Runs f, adding its wall time to *seconds when asked.
  const auto timed = [seconds](auto f) {
    return [seconds, f](auto* x, int64_t n) {
      const double t0 = seconds ? comm::wall_time() : 0.0;
      f(x, n);
      if (seconds) *seconds += comm::wall_time() - t0;
    };
  };
  TensorParallelOps ops;
  ops.size = tp.size();
  ops.rank = tp.rank();
  ops.sum = timed([&tp, algorithm](float* x, int64_t n) { tp_reduce(tp, x, n, algorithm); });
  ops.max = timed([&tp](float* x, int64_t n) { tp.allreduce(x, n, comm::Reduce::max); });
  ops.sum_f64 = timed([&tp](double* x, int64_t n) { tp.allreduce(x, n, comm::Reduce::sum); });
  // The row collectives take (in, rows, cols, out); timed the same way.
  const auto timed_rows = [seconds](auto f) {
    return [seconds, f](const float* in, int64_t rows, int64_t cols, float* out) {
      const double t0 = seconds ? comm::wall_time() : 0.0;
      f(in, rows, cols, out);
      if (seconds) *seconds += comm::wall_time() - t0;
    };
  };
  ops.gather_rows = timed_rows([&tp](const float* mine, int64_t rows, int64_t cols, float* full) {
    tp_gather_rows(tp, mine, rows, cols, full);
  });
  ops.reduce_scatter_rows = timed_rows([&tp](const float* full, int64_t rows, int64_t cols, float* mine) {
    tp_reduce_scatter_rows(tp, full, rows, cols, mine);
  });
  return ops;
}

}  // namespace hokusai::parallel
