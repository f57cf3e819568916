#include "train/run_dir.hpp"

#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "hokusai/checkpoint.hpp"

namespace hokusai {

namespace fs = std::filesystem;

namespace {

std::string default_run_dir(const std::string& name) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return (fs::path("runs") / ((name.empty() ? "run" : name) + "-" + stamp)).string();
}

}  // namespace

RunDirectory::RunDirectory(Config& cfg, const std::string& name, bool resume, const comm::GridComms& comms)
    : comms_(comms) {
  if (cfg.logging.run_dir.empty()) {
    if (resume) throw ConfigError("--resume needs logging.run_dir: the run directory to continue");
    cfg.logging.run_dir = default_run_dir(name);
  }
  path_ = cfg.logging.run_dir;
  const int rank = comms_.world.rank();
  if (resume) {
    const std::string root = checkpoint_root();
    const std::optional<std::string> newest = latest_checkpoint(root, &resume_note_);
    if (!newest)
      throw ConfigError(fmt::format("--resume: rank {} finds no checkpoint in '{}/checkpoints' (check logging.run_dir "
                                    "and that the layout matches the saved run's)",
                                    rank, root));
    // Shards save one after another: a job killed in between leaves some a step ahead. Every
    // rank resumes from the newest step all of them have.
    const auto step = int64_t(comms_.world.allreduce(double(checkpoint_step(*newest)), comm::Reduce::min));
    resume_from_ = checkpoint_at(root, step);
    if (!resume_from_)
      throw ConfigError(fmt::format("--resume: rank {} has no checkpoint of step {} in '{}/checkpoints', the newest "
                                    "step every shard has: raise checkpoint.keep (the shards were pruned apart)",
                                    rank, step, root));
  }
  if (rank == 0) fs::create_directories(path_);
  comms_.world.barrier();  // the run directory exists before anyone writes
}

std::string RunDirectory::checkpoint_root() const {
  return checkpoint_shard_root(path_, comms_.pp.size(), comms_.pp.rank(), comms_.tp.size(), comms_.tp.rank());
}

void RunDirectory::check_space(int64_t bytes) const {
  if (comms_.dp.rank() != 0) return;  // only these ranks write
  std::error_code ec;
  const fs::space_info s = fs::space(path_, ec);
  if (ec || s.available >= uintmax_t(bytes)) return;
  const double mib = 1.0 / (1 << 20);
  throw std::runtime_error(fmt::format(
      "checkpoint: '{}' has {:.1f} MiB free but a checkpoint of rank {} needs {:.1f} MiB (parameters and Adam "
      "state): free space or point logging.run_dir to a larger file system",
      path_, double(s.available) * mib, comms_.world.rank(), double(bytes) * mib));
}

std::string RunDirectory::save(const Config& cfg, uint64_t table_hash, int64_t step, int64_t adam_t,
                               std::span<const float> params, std::span<const float> m,
                               std::span<const float> v) const {
  std::string dir;
  if (comms_.dp.rank() == 0) {  // one writer per tp slice of each pipeline stage
    const CheckpointView ck{step, step * cfg.train.global_batch, adam_t, params, m, v};
    dir = save_checkpoint(checkpoint_root(), cfg, table_hash, ck, cfg.checkpoint.keep);
  }
  comms_.world.barrier();  // nobody exits before the checkpoint is complete
  return dir;
}

bool stop_agreed(const comm::Communicator& world, const std::atomic<bool>* stop) {
  const double mine = stop && stop->load() ? 1.0 : 0.0;
  return world.allreduce(mine, comm::Reduce::max) > 0;
}

}  // namespace hokusai
