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

// Collective over `node`: the CPUs this rank may use that no other rank of the node is also
// allowed to use, counted as its affinity mask's CPUs divided by the ranks whose masks overlap it
// (at least 1). Ranks bound to their own cores (mpirun's binding when the ranks fit) keep their
// cores; unbound ranks share the node's CPUs evenly, so 8 ranks on 2 cores run 1 thread each
// instead of 2 each, which made the job ~10x slower. The trainer's default threads per rank.
int cpus_per_rank(const Communicator& node);

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
