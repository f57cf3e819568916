// The run directory of a training job and what lives in it across restarts: where it is (a new
// timestamped one, or logging.run_dir), the checkpoint a --resume continues from (the newest step
// every rank's shard has), the checkpoint saves, and the job's agreement to stop on a signal.
// Every member that talks to other ranks says so; all of them are collective over comms.world.
#pragma once

#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ckpt/reshard.hpp"
#include "comm/grid_comm.hpp"
#include "hokusai/config.hpp"

namespace hokusai {

class RunDirectory {
 public:
  // Collective. Sets cfg.logging.run_dir when empty (runs/<name>-<timestamp>); with `resume`,
  // finds the checkpoint to continue from. Rank 0 creates the directory; every rank returns
  // once it exists. Throws ConfigError naming the directory and the rank when a resume cannot.
  RunDirectory(Config& cfg, const std::string& name, bool resume, const comm::GridComms& comms);

  const std::string& path() const { return path_; }
  // The checkpoint --resume continues from (nullopt for a new run), and a warning to log when it
  // was found without a readable `latest` ("" otherwise).
  const std::optional<std::string>& resume_from() const { return resume_from_; }
  const std::string& resume_note() const { return resume_note_; }
  // Set instead of resume_from() when the newest complete checkpoint was saved by another
  // layout (parallel.tp, pp or the layer split changed): the trainer reshards it.
  const std::optional<SavedRun>& reshard_from() const { return reshard_from_; }
  // On the ranks that write checkpoints: throws std::runtime_error naming the directory when its
  // file system has less free space than one checkpoint of `bytes` (a save would fail mid-run).
  void check_space(int64_t bytes) const;
  // Where this rank's checkpoints go: the run directory, or with model parallelism one directory
  // per pipeline stage and tp rank, <run_dir>[/pp-stage-<s>][/tp-rank-<r>].
  std::string checkpoint_root() const;

  // Saving is two steps, so the write can overlap training (checkpoint.async):
  //  begin_save: rank 0 of each data-parallel group writes its (tp, pp) slice — the parameters
  //    and the whole Adam state (m, v: gathered from the ZeRO-1 shards by the caller) — now, or
  //    with `async` from a copy in a background thread. Not collective.
  //  finish_save: collective. Waits for this rank's write; the checkpoint counts only when every
  //    shard has it: then older ones are pruned to checkpoint.keep. When any shard failed, the
  //    shards that did write discard this step (the previous checkpoint stays `latest` on every
  //    shard) and, with checkpoint.on_error: stop, the lowest failing rank throws its error (the
  //    job ends with that one line); with continue, the outcome says so and training goes on.
  struct SaveOutcome {
    int64_t step = -1;          // -1: no save was pending
    std::string dir;            // this rank's checkpoint directory ("" when it does not write or failed)
    int failing_rank = -1;      // the lowest rank whose write failed, -1 when none did
    std::string error;          // its message, on that rank
    double write_seconds = 0;   // this rank's write (0 on ranks that do not write)
  };
  // tensors.json of this rank's shard, written with each of its checkpoints (tensor_manifest).
  void set_manifest(std::string manifest) { manifest_ = std::move(manifest); }
  // loss_scale: fp16's dynamic loss scale (scale 0 for other precisions), saved beside the arrays.
  void begin_save(const Config& cfg, uint64_t table_hash, int64_t step, int64_t consumed_samples, int64_t adam_t,
                  std::span<const float> params, std::span<const float> m, std::span<const float> v,
                  LossScaleState loss_scale, bool async);
  // On every rank (the ranks that do not write have a save pending too: finish_save is collective).
  bool save_pending() const { return pending_step_ >= 0; }
  // checkpoint.async, on the writing ranks: allocates and touches the copy of `floats` values
  // now (at set-up, not at the first save), with `threads` threads.
  void reserve_snapshot(size_t floats, int threads);
  // Collective: true on every rank when every rank's write in flight is done (finish_save would
  // not wait). One small allreduce.
  bool written_everywhere() const;
  // `must_succeed` (the end of the run, a stop signal): a failure stops the job whatever
  // checkpoint.on_error says (the work since the last checkpoint would be lost silently).
  SaveOutcome finish_save(const Config& cfg, bool must_succeed);

 private:
  const comm::GridComms& comms_;
  std::string path_;
  std::optional<std::string> resume_from_;
  std::optional<SavedRun> reshard_from_;
  std::string resume_note_;
  std::string manifest_;
  struct Written {
    std::string dir, error;
    double seconds = 0;
  };
  std::future<Written> pending_;  // this rank's write in flight (a ready future when synchronous)
  int64_t pending_step_ = -1;
  // checkpoint.async: params, m, v copied at begin_save. Allocated and touched once
  // (reserve_snapshot), so a save copies into warm memory: the first touch of fresh memory ran at
  // 0.2-0.4 GB/s on the test VM against 15 GB/s for the copy itself.
  std::unique_ptr<float[]> snapshot_;
  size_t snapshot_size_ = 0;
};

// The checkpoint interval Young's rule suggests, tau = sqrt(2 * delta * MTBF) for a save that
// blocks training delta seconds, as one log line in seconds and in steps of `step_seconds`,
// beside the configured checkpoint.interval.
std::string checkpoint_interval_advice(double save_seconds, double step_seconds, const CheckpointConfig& c);

// The last save's blocking time and the last logged step time recorded in a run directory's
// metrics.jsonl (an earlier part of a resumed run), when both are there.
struct MeasuredCosts {
  double save_seconds = 0, step_seconds = 0;
};
std::optional<MeasuredCosts> measured_costs(const std::string& run_dir);

// Collective over comms.world: true on every rank when `stop` (set by SIGTERM/SIGUSR1) is set on
// any. A signal reaches the ranks at slightly different times; they agree before acting.
bool stop_agreed(const comm::Communicator& world, const std::atomic<bool>* stop);

}  // namespace hokusai
