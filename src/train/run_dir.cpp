#include "train/run_dir.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hokusai/checkpoint.hpp"

namespace hokusai {

namespace fs = std::filesystem;

namespace {

constexpr size_t kChunk = size_t(1) << 20;  // floats per thread's piece of a snapshot copy

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
    // The newest complete checkpoint of any layout; when another layout saved it, it is resharded
    // (ckpt/reshard.hpp). Rank 0 scans the run directory (every shard's config of every kept
    // step: on a parallel file system, once, not once per rank) and tells the others.
    std::optional<SavedRun> saved;
    std::string found;  // "<step>\n<the saving layout's config>" or empty
    if (rank == 0) {
      saved = newest_saved_run(path_, cfg);
      if (saved) found = std::to_string(saved->step) + "\n" + dump_config(saved->config);
    }
    found = comms_.world.broadcast(found, 0);
    if (rank != 0 && !found.empty()) {
      const size_t eol = found.find('\n');
      Config c = load_config_text(found.substr(eol + 1), "the saved run's config (from rank 0)");
      resolve(c);
      saved = SavedRun{std::move(c), std::stoll(found.substr(0, eol))};
    }
    if (saved && !same_model_layout(saved->config, cfg)) {
      const auto serial_hash = [](const ModelConfig& m) {
        return table_hash(param_table(ModelDims::from(m, comm::ParallelGrid::single())));
      };
      if (serial_hash(saved->config.model) != serial_hash(cfg.model))
        throw ConfigError(fmt::format("--resume: the newest checkpoint in '{}' (step {}) is of another model (its "
                                      "model section differs from this config's: {} layers, hidden {} there): resume "
                                      "with the saved run's model section",
                                      path_, saved->step, saved->config.model.layers, saved->config.model.hidden));
      reshard_from_ = saved;
    }
  }
  if (resume && !reshard_from_) {
    const std::string root = checkpoint_root();
    std::string note;
    const std::optional<std::string> newest = latest_checkpoint(root, &note);
    // Shards save one after another: a job killed in between leaves some a step ahead, and one
    // killed inside its first save leaves some with none. Every rank takes part (-1: none), so all
    // of them decide the same: resume from the newest step every shard has; with none on any,
    // stop when no shard has one either, else start over.
    const double mine = newest ? double(checkpoint_step(*newest)) : -1.0;
    const auto step = int64_t(comms_.world.allreduce(mine, comm::Reduce::min));
    const auto ahead = int64_t(comms_.world.allreduce(mine, comm::Reduce::max));
    if (ahead < 0)
      throw ConfigError(fmt::format("--resume: no checkpoint in '{}' (rank {} looked in '{}/checkpoints'): check "
                                    "logging.run_dir and that the layout matches the saved run's",
                                    path_, rank, root));
    if (step < 0) {
      resume_note_ = fmt::format(
          "--resume: no step of '{}' has a checkpoint from every shard (the newest, step {}, is missing on some: "
          "the job stopped inside its first save); starting from step 0 (the incomplete step is rewritten at its "
          "save)",
          path_, ahead);
    } else {
      resume_note_ = note;
      resume_from_ = checkpoint_at(root, step);
      if (!resume_from_)
        throw ConfigError(fmt::format("--resume: rank {} has no checkpoint of step {} in '{}/checkpoints', the newest "
                                      "step every shard has: raise checkpoint.keep (the shards were pruned apart)",
                                      rank, step, root));
    }
  }
  if (rank == 0) fs::create_directories(path_);
  comms_.world.barrier();  // the run directory exists before anyone writes
}

std::string RunDirectory::checkpoint_root() const {
  return checkpoint_shard_root(path_, comms_.pp.size(), comms_.pp.rank(), comms_.tp.size(), comms_.tp.rank());
}

void RunDirectory::check_space(int64_t bytes) const {
  if (comms_.dp.rank() != 0) return;  // only these ranks write
  // The file system this rank's checkpoints go to (its shard directory may not exist yet, and may
  // be a mount of its own).
  fs::path where = checkpoint_root();
  while (!fs::exists(where) && where.has_parent_path() && where != where.parent_path()) where = where.parent_path();
  std::error_code ec;
  const fs::space_info s = fs::space(where, ec);
  if (ec || s.available >= uintmax_t(bytes)) return;
  const double mib = 1.0 / (1 << 20);
  throw std::runtime_error(fmt::format(
      "checkpoint: '{}' has {:.1f} MiB free but a checkpoint of rank {} needs {:.1f} MiB (parameters and Adam "
      "state): free space or point logging.run_dir to a larger file system",
      where.string(), double(s.available) * mib, comms_.world.rank(), double(bytes) * mib));
}

void RunDirectory::begin_save(const Config& cfg, uint64_t table_hash, int64_t step, int64_t consumed_samples,
                              int64_t adam_t, std::span<const float> params, std::span<const float> m,
                              std::span<const float> v, LossScaleState loss_scale, bool async) {
  if (save_pending()) throw std::logic_error("RunDirectory::begin_save: the previous save was not finished");
  pending_step_ = step;
  if (comms_.dp.rank() != 0) return;  // one writer per tp slice of each pipeline stage
  const std::string root = checkpoint_root();
  const auto write = [root, cfg, table_hash, manifest = manifest_](CheckpointView ck) {
    ck.manifest = manifest;
    const double t0 = comm::wall_time();
    Written w;
    try {
      // Pruning waits for finish_save: a step counts once every shard has it.
      w.dir = save_checkpoint(root, cfg, table_hash, ck, std::numeric_limits<int>::max());
    } catch (const std::exception& e) {
      w.error = e.what();
    }
    w.seconds = comm::wall_time() - t0;
    return w;
  };
  if (!async) {
    std::promise<Written> done;
    done.set_value(write({step, consumed_samples, adam_t, params, m, v, {}, loss_scale}));
    pending_ = done.get_future();
    return;
  }
  // One copy of the three arrays, by every thread; the step goes on with the live ones.
  const size_t total = params.size() + m.size() + v.size();
  if (total != snapshot_size_) reserve_snapshot(total, omp_get_max_threads());
  float* dst = snapshot_.get();
  for (const std::span<const float> part : {params, m, v}) {
    const auto chunks = int64_t((part.size() + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const size_t b = size_t(c) * kChunk, e = std::min(part.size(), b + kChunk);
      std::memcpy(dst + b, part.data() + b, (e - b) * sizeof(float));
    }
    dst += part.size();
  }
  const std::span<const float> all(snapshot_.get(), total);
  const CheckpointView ck{step, consumed_samples, adam_t, all.subspan(0, params.size()),
                          all.subspan(params.size(), m.size()), all.subspan(params.size() + m.size(), v.size()),
                          {}, loss_scale};
  pending_ = std::async(std::launch::async, [write, ck] {
    // Below the training threads: on a node without a spare core the writer takes what they
    // leave (the kernel's writeback does the rest).
    setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 10);
    return write(ck);
  });
}

void RunDirectory::reserve_snapshot(size_t floats, int threads) {
  if (comms_.dp.rank() != 0) return;
  snapshot_.reset(new float[floats]);  // (not value-initialised: the touch below is the only pass)
  snapshot_size_ = floats;
  float* p = snapshot_.get();
  const auto chunks = int64_t((floats + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t b = size_t(c) * kChunk, e = std::min(floats, b + kChunk);
    std::memset(p + b, 0, (e - b) * sizeof(float));
  }
}

RunDirectory::SaveOutcome RunDirectory::finish_save(const Config& cfg, bool must_succeed) {
  SaveOutcome out;
  out.step = pending_step_;
  Written w;
  if (pending_.valid()) w = pending_.get();
  pending_step_ = -1;
  out.write_seconds = w.seconds;
  // Agreement: nobody goes on (or exits) before every shard's write is complete.
  out.failing_rank = comms_.world.lowest_rank_where(!w.error.empty());
  const bool wrote = comms_.dp.rank() == 0 && w.error.empty();
  if (out.failing_rank < 0) {
    if (wrote) prune_checkpoints(checkpoint_root(), cfg.checkpoint.keep);
    out.dir = w.dir;
    return out;
  }
  if (wrote) discard_checkpoint(checkpoint_root(), out.step);
  out.error = w.error;
  if (cfg.checkpoint.on_error == OnSaveError::stop || must_succeed) {
    if (comms_.world.rank() == out.failing_rank)
      throw std::runtime_error(w.error + (must_succeed ? fmt::format(" (the checkpoint of step {} at the end of this job; "
                                                                     "the newest complete one is kept)", out.step)
                                                       : std::string()));
    comms_.world.barrier();  // the failing rank's error ends the job (main aborts it)
  }
  return out;
}

bool RunDirectory::written_everywhere() const {
  const bool mine = !pending_.valid() || pending_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  return comms_.world.allreduce(mine ? 1.0 : 0.0, comm::Reduce::min) > 0;
}

std::string checkpoint_interval_advice(double save_seconds, double step_seconds, const CheckpointConfig& c) {
  const double mtbf = c.mtbf_hours * 3600.0;
  const double tau = std::sqrt(2.0 * std::max(save_seconds, 1e-3) * mtbf);
  const int64_t steps = std::max<int64_t>(1, std::llround(tau / std::max(step_seconds, 1e-6)));
  // Expected cost per mean time between failures: the saves made in it, plus half an interval of
  // work redone after the failure (Young's first-order model, minimal at tau).
  const auto lost = [&](double interval_s) { return interval_s / 2 + save_seconds * mtbf / interval_s; };
  std::string now = "at the end only";
  if (c.interval > 0)
    now = fmt::format("every {} steps = {:.3g} s, costing ~{:.0f} s per MTBF", c.interval,
                      double(c.interval) * step_seconds, lost(double(c.interval) * step_seconds));
  return fmt::format("checkpoint interval (Young's rule, checkpoint.mtbf_hours={}): a save blocks training {:.2f} s "
                     "and a step takes {:.3f} s, so sqrt(2 * {:.2f} s * {:.0f} s) = {:.0f} s = checkpoint.interval={} "
                     "(saves and redone work cost ~{:.0f} s per MTBF); configured: {}",
                     c.mtbf_hours, save_seconds, step_seconds, save_seconds, mtbf, tau, steps, lost(tau), now);
}

std::optional<MeasuredCosts> measured_costs(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  MeasuredCosts c;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;  // a line cut by a crash
    if (j.contains("checkpoint_blocked_s") && j["checkpoint_blocked_s"].is_number())
      c.save_seconds = j["checkpoint_blocked_s"].get<double>();
    if (j.contains("step_ms") && j["step_ms"].is_number()) c.step_seconds = j["step_ms"].get<double>() / 1e3;
  }
  if (c.save_seconds > 0 && c.step_seconds > 0) return c;
  return std::nullopt;
}

bool stop_agreed(const comm::Communicator& world, const std::atomic<bool>* stop) {
  const double mine = stop && stop->load() ? 1.0 : 0.0;
  return world.allreduce(mine, comm::Reduce::max) > 0;
}

}  // namespace hokusai
