// StepMeter: what a training step reports. Accumulates each step's loss, wall time and time by
// phase; at a log step writes one metrics.jsonl object (rank 0: loss, lr, norm, tokens/s, MFU and
// every rank's time per step by phase, gathered here) and the log lines, then starts over.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <fstream>
#include <string>
#include <vector>

namespace hokusai {

namespace comm {
struct GridComms;
}
class ProgressLine;

// metrics.jsonl (rank 0): one JSON object per line, appended and flushed line by line. A write
// that fails (a full disk) is said once on stderr, naming the file; training goes on — the
// checkpoint, not the metrics, is what must not be lost, and its save reports its own failure.
class MetricsFile {
 public:
  explicit MetricsFile(std::string path);
  void write(const std::string& line);  // without the newline

 private:
  std::string path_;
  std::ofstream out_;
  bool warned_ = false;
};

// Where one step's time went on this rank (seconds).
struct StepTime {
  double compute = 0, tp_comm = 0, pp_wait = 0, dp_exposed = 0, optimizer = 0;
  static constexpr int fields = 5;
  StepTime& operator+=(const StepTime& o);
};

struct StepStats {
  double loss = 0, lr = 0, grad_norm = 0;
  bool skipped = false;         // not finite: no update (train.skip_nonfinite)
  int64_t skipped_total = 0;    // steps skipped so far in this run
  double loss_scale = 0;        // fp16: the dynamic loss scale after this step (0: none)
  int64_t overflow_total = 0;   // fp16: steps skipped for overflowing gradients so far
  StepTime time;
};

class StepMeter {
 public:
  struct Rates {
    double tokens_per_step = 0, flops_per_token = 0;
    double peak_gflops = 0;  // per rank: the MFU denominator
    int ranks = 1;
  };
  // comm.straggler_factor and comm.straggler_steps (factor 0: no report).
  struct Stragglers {
    double factor = 0;
    int steps = 100;
  };
  // comms: the job's (the per-rank times are gathered over comms.world). metrics: the metrics.jsonl stream (rank 0; null elsewhere). The
  // logger and the progress line must outlive the meter.
  // Collective (gathers every rank's grid coordinates once, for the straggler report).
  StepMeter(Rates rates, Stragglers stragglers, const comm::GridComms& comms, MetricsFile* metrics,
            std::shared_ptr<spdlog::logger> lg, ProgressLine& progress);
  // One finished step and its wall time.
  void add(const StepStats& st, double seconds);
  // Collective over the job (the per-rank times are gathered): the steps since the last log as
  // one metrics object and log line, `last` for lr and norm; on rank 0, the straggler report
  // (one warning per slow rank, its ranks listed in the metrics object). Starts a new interval.
  void log(int64_t step, int64_t steps, const StepStats& last);
  // Mean wall time of every step added so far (this rank).
  double mean_step_seconds() const { return all_steps_ ? all_seconds_ / double(all_steps_) : 0.0; }

 private:
  // Rank 0: the ranks slow for comm.straggler_steps steps in a row (and reset them), given every
  // rank's time per step by phase ([rank][phase], ms).
  std::vector<int> find_stragglers(const std::vector<double>& all);

  Rates rates_;
  Stragglers stragglers_;
  const comm::GridComms& comms_;
  std::vector<double> coords_;      // rank 0: (tp, pp, dp) of every rank
  std::vector<int64_t> slow_for_;   // rank 0: steps in a row each rank has been slow
  MetricsFile* metrics_;
  std::shared_ptr<spdlog::logger> lg_;
  ProgressLine& progress_;
  double seconds_ = 0, loss_ = 0;
  StepTime time_;
  int steps_ = 0, loss_steps_ = 0;
  double all_seconds_ = 0;
  int64_t all_steps_ = 0;
};

}  // namespace hokusai
