// `hokusai calibrate`: measures this machine's description for the planner (src/plan/machine.hpp)
// in a few minutes: the FMA peaks, our GEMM at exactly the shapes the config's model calls (per
// tensor-parallel width and thread count), the causal attention per (sequence, head), the
// elementwise ops of a block, the cross-entropy and the optimizer with their real kernels, the
// process's own memory, and — run under mpirun with two ranks or more — the MPI latency and
// bandwidth between ranks 0 and 1.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "comm/mpi.hpp"
#include "hokusai/config.hpp"
#include "plan/machine.hpp"

namespace hokusai {

struct CalibrateOptions {
  std::vector<int> threads;          // thread counts to measure (empty: 1 and all cores)
  std::vector<int> tp;               // tensor-parallel widths whose shapes are measured (empty: 1, 2)
  std::vector<int> micro_batches;    // micro-batch sizes (empty: the config's)
  double seconds = 0.15;             // per measured point (at least 3 repetitions; the median)
  std::string name;                  // the machine's name (default: from the CPU)
};

// Collective over `world` (rank 0 measures; rank 1 answers the ping-pong; the others wait without
// spinning). Returns the description on rank 0 (empty elsewhere); progress lines go to `log`.
plan::MachineSpec calibrate_machine(const Config& cfg, const CalibrateOptions& o, const comm::Communicator& world,
                                    std::ostream& log);

}  // namespace hokusai
