#include "comm/shared.hpp"

#include <sched.h>

#include <algorithm>

namespace hokusai::comm {

Communicator split_node(const Communicator& comm) {
  MPI_Comm node = MPI_COMM_NULL;
  HOKUSAI_MPI(MPI_Comm_split_type(comm.raw(), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node));
  return Communicator(node, true);
}

int cpus_per_rank(const Communicator& node) {
  cpu_set_t mine;
  CPU_ZERO(&mine);
  if (sched_getaffinity(0, sizeof(mine), &mine) != 0) return 1;
  std::vector<cpu_set_t> all(size_t(node.size()));
  HOKUSAI_MPI(MPI_Allgather(&mine, int(sizeof(mine)), MPI_BYTE, all.data(), int(sizeof(mine)), MPI_BYTE, node.raw()));
  int sharing = 0;
  for (cpu_set_t& other : all) {
    cpu_set_t both;
    CPU_AND(&both, &mine, &other);
    if (CPU_COUNT(&both) > 0) ++sharing;
  }
  return std::max(1, CPU_COUNT(&mine) / std::max(1, sharing));
}

SharedBuffer::SharedBuffer(const Communicator& node, int64_t count) : node_(node), rank_(node.rank()), count_(count) {
  float* base = nullptr;
  // Segments padded to 64 floats (a 256-byte A64FX cache line) so no two ranks share a line.
  const int64_t padded = (count + 63) / 64 * 64;
  HOKUSAI_MPI(MPI_Win_allocate_shared(MPI_Aint(padded * int64_t(sizeof(float))), int(sizeof(float)), MPI_INFO_NULL,
                                      node.raw(), &base, &win_));
  const int p = node.size();
  segments_.resize(size_t(p));
  for (int r = 0; r < p; ++r) {
    MPI_Aint bytes = 0;
    int disp = 0;
    HOKUSAI_MPI(MPI_Win_shared_query(win_, r, &bytes, &disp, &segments_[size_t(r)]));
  }
  HOKUSAI_MPI(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_));  // one passive epoch for the lifetime
}

SharedBuffer::~SharedBuffer() {
  if (win_ != MPI_WIN_NULL) {
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);
  }
}

void SharedBuffer::sync() {
  HOKUSAI_MPI(MPI_Win_sync(win_));
  node_.barrier();
  HOKUSAI_MPI(MPI_Win_sync(win_));
}

void SharedBuffer::allreduce(ReduceOp op) {
  const int p = node_.size();
  if (p == 1 || count_ == 0) return;
  sync();  // every rank's input is written
  const Range mine = split_evenly(count_, p, rank_);
  const float inv = 1.0f / float(p);
  // Sum my chunk over all segments, in rank order (the same order on every node), then write it
  // into every segment. Blocks of 4 KiB keep the running sum in L1.
  constexpr int64_t kBlock = 1024;
  float acc[kBlock];
  for (int64_t b = mine.begin; b < mine.end; b += kBlock) {
    const int64_t n = std::min(kBlock, mine.end - b);
    const float* s0 = segments_[0] + b;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) acc[i] = s0[i];
    for (int q = 1; q < p; ++q) {
      const float* s = segments_[size_t(q)] + b;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) acc[i] += s[i];
    }
    if (op == ReduceOp::average)
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) acc[i] *= inv;
    for (int q = 0; q < p; ++q) std::copy_n(acc, n, segments_[size_t(q)] + b);
  }
  sync();  // every chunk is written everywhere
}

}  // namespace hokusai::comm
