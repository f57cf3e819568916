// Intra-node allreduce through an MPI-3 shared-memory window. The data lives in the window, so
// the reduction reads every rank's segment directly and writes the result back into every
// segment: no send/receive copies. Each rank owns one chunk (split_evenly) and is the only one
// to read or write it, so the phases need only two barriers.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/mpi.hpp"

namespace hokusai::comm {

// Ranks that share memory (one node): MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), ordered by
// their rank in `comm`.
Communicator split_node(const Communicator& comm);

class SharedBuffer {
 public:
  // Collective over `node` (ranks of one node): every rank gets a segment of `count` floats.
  SharedBuffer(const Communicator& node, int64_t count);
  ~SharedBuffer();
  SharedBuffer(const SharedBuffer&) = delete;
  SharedBuffer& operator=(const SharedBuffer&) = delete;

  float* local() { return segments_[size_t(rank_)]; }
  float* segment(int r) { return segments_[size_t(r)]; }
  int64_t count() const { return count_; }

  // Every rank's segment := op over all segments. Collective over the node communicator.
  void allreduce(ReduceOp op);

 private:
  const Communicator& node_;
  MPI_Win win_ = MPI_WIN_NULL;
  int rank_ = 0;
  int64_t count_ = 0;
  std::vector<float*> segments_;
  void sync();  // make every rank's writes visible to all (MPI_Win_sync + barrier)
};

}  // namespace hokusai::comm
