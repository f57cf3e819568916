#include "parallel/tensor_parallel.hpp"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/collectives.hpp"

namespace hokusai::parallel {

namespace {

int checked_count(int64_t n, const char* what) {
  if (n > INT_MAX)
    throw std::runtime_error(std::string(what) + ": a block of " + std::to_string(n) +
                             " floats exceeds MPI's int count; use more tensor-parallel ranks or smaller micro-batches");
  return int(n);
}

// Element counts and displacements of every rank's block when `total` units of `unit` floats
// are split evenly.
void blocks(int p, int64_t total, int64_t unit, std::vector<int>& counts, std::vector<int>& displs,
            const char* what) {
  counts.resize(size_t(p));
  displs.resize(size_t(p));
  for (int q = 0; q < p; ++q) {
    const comm::Range r = comm::split_evenly(total, p, q);
    counts[size_t(q)] = checked_count(r.size() * unit, what);
    displs[size_t(q)] = checked_count(r.begin * unit, what);
  }
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
  std::vector<int> counts, displs;
  blocks(p, cols, rows, counts, displs, "tp_gather_columns");
  std::vector<float> stacked(size_t(rows * cols));
  const comm::Range mc = comm::split_evenly(cols, p, tp.rank());
  HOKUSAI_MPI(MPI_Allgatherv(mine, checked_count(rows * mc.size(), "tp_gather_columns"), MPI_FLOAT, stacked.data(),
                             counts.data(), displs.data(), MPI_FLOAT, tp.raw()));
  for (int q = 0; q < p; ++q) {
    const comm::Range c = comm::split_evenly(cols, p, q);
    const float* block = stacked.data() + c.begin * rows;  // displs[q] = c.begin * rows
    for (int64_t i = 0; i < rows; ++i)
      std::copy(block + i * c.size(), block + (i + 1) * c.size(), full + i * cols + c.begin);
  }
}

void tp_gather_rows(const comm::Communicator& tp, const float* mine, int64_t rows, int64_t cols, float* full) {
  const int p = tp.size();
  const comm::Range r = comm::split_evenly(rows, p, tp.rank());
  if (p == 1) {
    std::copy(mine, mine + rows * cols, full);
    return;
  }
  std::vector<int> counts, displs;
  blocks(p, rows, cols, counts, displs, "tp_gather_rows");
  HOKUSAI_MPI(MPI_Allgatherv(mine, checked_count(r.size() * cols, "tp_gather_rows"), MPI_FLOAT, full, counts.data(),
                             displs.data(), MPI_FLOAT, tp.raw()));
}

void tp_reduce_scatter_rows(const comm::Communicator& tp, const float* full, int64_t rows, int64_t cols,
                            float* mine) {
  const int p = tp.size();
  if (p == 1) {
    std::copy(full, full + rows * cols, mine);
    return;
  }
  std::vector<int> counts, displs;
  blocks(p, rows, cols, counts, displs, "tp_reduce_scatter_rows");
  HOKUSAI_MPI(MPI_Reduce_scatter(full, mine, counts.data(), MPI_FLOAT, MPI_SUM, tp.raw()));
}

TensorParallelOps tensor_parallel_ops(const comm::Communicator& tp, double* seconds,
                                      comm::AllreduceAlgorithm algorithm) {
  // Runs f, adding its wall time to *seconds when asked.
  const auto timed = [seconds](auto f) {
    return [seconds, f](auto* x, int64_t n) {
      const double t0 = seconds ? MPI_Wtime() : 0.0;
      f(x, n);
      if (seconds) *seconds += MPI_Wtime() - t0;
    };
  };
  TensorParallelOps ops;
  ops.size = tp.size();
  ops.sum = timed([&tp, algorithm](float* x, int64_t n) { tp_reduce(tp, x, n, algorithm); });
  ops.max = timed([&tp](float* x, int64_t n) {
    if (tp.size() > 1 && n > 0)
      HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, x, checked_count(n, "tp max"), MPI_FLOAT, MPI_MAX, tp.raw()));
  });
  ops.sum_f64 = timed([&tp](double* x, int64_t n) {
    if (tp.size() > 1 && n > 0)
      HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, x, checked_count(n, "tp sum"), MPI_DOUBLE, MPI_SUM, tp.raw()));
  });
  return ops;
}

}  // namespace hokusai::parallel
