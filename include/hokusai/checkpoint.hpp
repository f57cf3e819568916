// Checkpoints. A model-parallel run (tp or pp > 1) writes one checkpoint per pipeline stage and
// tensor-parallel rank, each under its shard root (checkpoint_shard_root); merge_checkpoint
// turns those shards back into one serial checkpoint.
//
// Layout: <run_dir>/checkpoints/step_00000100/{config.yaml, state.bin}, and
// <run_dir>/checkpoints/latest holding the name of the newest complete checkpoint.
// A checkpoint is written into step_X.tmp, flushed, then renamed: a crash mid-save leaves the
// previous checkpoint and `latest` untouched. Older checkpoints are removed only after the new
// one and `latest` are in place.
//
// state.bin: header {magic "HKSCKPT1", u32 version = 1, u32 dtype = 7 (float32, Megatron's code),
// i64 step, i64 consumed_samples, i64 adam_t, i64 n_params, u64 table_hash, u64 has_optimizer}
// then params[n], then m[n], v[n] when has_optimizer, then u64 checksum of everything before it.
// loss_scale.txt (fp16 runs only): "loss_scale <value>" and "good_steps <steps since the last
// change>" lines, the dynamic loss scale a resumed run goes on with.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hokusai/config.hpp"
#include "hokusai/model.hpp"

namespace hokusai {

// fp16's dynamic loss scale (train.loss_scale): the same on every rank. scale 0: none saved.
struct LossScaleState {
  double scale = 0;
  int64_t good_steps = 0;  // steps without overflow since the scale last changed
};

// What a save writes: views of the live arenas (no copy of the model).
struct CheckpointView {
  int64_t step = 0;
  int64_t consumed_samples = 0;
  int64_t adam_t = 0;
  std::span<const float> params, m, v;  // m, v empty: no optimizer state
  // tensors.json written beside state.bin when not empty: the shard's tensor manifest
  // (tensor_manifest in ckpt/reshard.hpp), for people and tools reading the checkpoint.
  std::string manifest;
  LossScaleState loss_scale;  // written as loss_scale.txt when scale > 0
};

// What a load returns.
struct CheckpointData {
  int64_t step = 0;
  int64_t consumed_samples = 0;
  int64_t adam_t = 0;
  std::vector<float> params, m, v;  // m, v empty when saved or loaded without optimizer state
  LossScaleState loss_scale;  // from loss_scale.txt; scale 0 when the checkpoint has none
};

// Hash of tensor names and shapes: a checkpoint only loads into the model it was saved from.
uint64_t table_hash(const std::vector<TensorSpec>& table);

// Saves atomically (see above); keeps the newest `keep`. Returns the checkpoint directory.
// A failed write throws std::runtime_error naming the file, the system's reason and the space
// left, and leaves the previous checkpoints and `latest` as they were.
std::string save_checkpoint(const std::string& run_dir, const Config& cfg, uint64_t table_hash,
                            const CheckpointView& data, int keep);
// Removes all but the newest `keep` complete checkpoints of run_dir.
void prune_checkpoints(const std::string& run_dir, int keep);
// Removes checkpoint `step` of run_dir and points `latest` at the newest one left: a shard's save
// that other shards of the job failed to match is not a checkpoint of the job.
void discard_checkpoint(const std::string& run_dir, int64_t step);

// Directory of the newest complete checkpoint under run_dir, if any: the one `latest` names, or,
// when `latest` is missing or names no complete checkpoint (a damaged file), the complete
// step_N directory with the largest N; then *note (if given) says so.
std::optional<std::string> latest_checkpoint(const std::string& run_dir, std::string* note = nullptr);

// Loads a checkpoint directory (or a run directory: its latest checkpoint). Throws
// std::runtime_error naming the file and the field on any mismatch or corruption.
CheckpointData load_checkpoint(const std::string& dir, uint64_t expected_table_hash, bool with_optimizer);

// A checkpoint with optimizer state read in ranges, for resharding: the constructor checks the
// header as load_checkpoint does and the whole file's checksum in 16 MiB pieces (nothing kept);
// read() then copies `count` values of array 0 (parameters), 1 (Adam m) or 2 (Adam v) from
// `offset`. Memory: the pieces, never the arrays. with_optimizer: refuse a checkpoint without
// Adam state (a resume needs it; weights alone, e.g. `hokusai import`'s, serve --init-from).
class CheckpointReader {
 public:
  CheckpointReader(const std::string& dir, uint64_t expected_table_hash, bool with_optimizer = true);
  void read(int array, int64_t offset, int64_t count, float* out) const;
  const std::string& path() const { return path_; }
  int64_t step = 0, consumed_samples = 0, adam_t = 0, n_params = 0;
  LossScaleState loss_scale;

 private:
  std::string path_;
  int arrays_ = 3;
};

// Resolves a run or checkpoint directory to the checkpoint directory itself.
std::string checkpoint_dir(const std::string& run_or_checkpoint_dir);

// Where the checkpoints of pipeline stage pp_rank and tensor-parallel rank tp_rank go:
// <run_dir>[/pp-stage-<s>][/tp-rank-<r>] (a component only when that dimension is split).
std::string checkpoint_shard_root(const std::string& run_dir, int pp, int pp_rank, int tp, int tp_rank);
// The step of a checkpoint directory's name (step_00000020 -> 20); -1 when it is not one.
int64_t checkpoint_step(const std::string& checkpoint_dir);
// The complete checkpoint of `step` under a run (or shard) root; nullopt when it has none.
std::optional<std::string> checkpoint_at(const std::string& run_dir, int64_t step);

// Reads the newest step every shard of a model-parallel run has (the layout from
// <run_dir>/config.yaml), checks each shard's table hash and checksum, and writes the serial
// model (tp = pp = dp = 1, parameters and Adam state) as a checkpoint of out_run_dir: it trains on
// with --resume in any layout of one tensor/pipeline slice and `hokusai generate` reads it.
// Returns the checkpoint directory written. Throws std::runtime_error naming the shard.
std::string merge_checkpoint(const std::string& run_dir, const std::string& out_run_dir);

}  // namespace hokusai
