// Watchdog: ends the job when this rank makes no progress for comm.timeout_s seconds, instead of
// letting every rank wait forever in a collective for a peer that stopped (the most reported
// failure of large runs). The training loop tells it what it does (phase()); a thread of its own
// watches the time since the last call and, every few seconds, writes this rank's heartbeat
// (pid, step, phase, times) to <run_dir>/heartbeat/rank-<R>. A rank whose phase outlasts the
// timeout reads every heartbeat, names the ranks that went silent (a stopped or dead process
// writes no heartbeat) or are furthest behind, prints one line for the whole job (the first rank
// to claim <run_dir>/heartbeat/verdict speaks, the others exit quietly) and exits with code 1,
// on which the launcher (mpirun, srun) ends every rank. MPI is not called from the thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace hokusai {

class Watchdog {
 public:
  // timeout_s <= 0: disabled (phase() costs nothing). who: how this rank is named in messages
  // ("rank 3 (tp 1, pp 0, dp 1) on node n2").
  Watchdog(double timeout_s, const std::string& run_dir, int rank, int ranks, std::string who);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // The main thread starts `what` (a string literal) in `step`: progress.
  void phase(const char* what, int64_t step);

 private:
  void watch();
  void write_heartbeat(double now) const;
  [[noreturn]] void expire(double now);
  double timeout_;
  std::string dir_, who_;
  int rank_, ranks_;
  std::atomic<double> since_{0.0};
  std::atomic<const char*> what_{"set-up"};
  std::atomic<int64_t> step_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hokusai
