// The run directory of a training job and what lives in it across restarts: where it is (a new
// timestamped one, or logging.run_dir), the checkpoint a --resume continues from (the newest step
// every rank's shard has), the checkpoint saves, and the job's agreement to stop on a signal.
// Every member that talks to other ranks says so; all of them are collective over comms.world.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

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
  // On the ranks that write checkpoints: throws std::runtime_error naming the directory when its
  // file system has less free space than one checkpoint of `bytes` (a save would fail mid-run).
  void check_space(int64_t bytes) const;
  // Where this rank's checkpoints go: the run directory, or with model parallelism one directory
  // per pipeline stage and tp rank, <run_dir>[/pp-stage-<s>][/tp-rank-<r>].
  std::string checkpoint_root() const;

  // Collective. Rank 0 of each data-parallel group writes its (tp, pp) slice: the parameters and
  // the whole Adam state (m, v: gathered from the ZeRO-1 shards by the caller). Returns the
  // checkpoint directory on the ranks that wrote, "" elsewhere; no rank returns before every
  // write is complete.
  std::string save(const Config& cfg, uint64_t table_hash, int64_t step, int64_t adam_t,
                   std::span<const float> params, std::span<const float> m, std::span<const float> v) const;

 private:
  const comm::GridComms& comms_;
  std::string path_;
  std::optional<std::string> resume_from_;
  std::string resume_note_;
};

// Collective over comms.world: true on every rank when `stop` (set by SIGTERM/SIGUSR1) is set on
// any. A signal reaches the ranks at slightly different times; they agree before acting.
bool stop_agreed(const comm::Communicator& world, const std::atomic<bool>* stop);

}  // namespace hokusai
