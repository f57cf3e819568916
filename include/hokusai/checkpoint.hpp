// Checkpoints of a single-rank run (sharded, resharding checkpoints arrive with 3D parallelism).
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
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hokusai/config.hpp"
#include "hokusai/model.hpp"

namespace hokusai {

// What a save writes: views of the live arenas (no copy of the model).
struct CheckpointView {
  int64_t step = 0;
  int64_t consumed_samples = 0;
  int64_t adam_t = 0;
  std::span<const float> params, m, v;  // m, v empty: no optimizer state
};

// What a load returns.
struct CheckpointData {
  int64_t step = 0;
  int64_t consumed_samples = 0;
  int64_t adam_t = 0;
  std::vector<float> params, m, v;  // m, v empty when saved or loaded without optimizer state
};

// Hash of tensor names and shapes: a checkpoint only loads into the model it was saved from.
uint64_t table_hash(const std::vector<TensorSpec>& table);

// Saves atomically (see above); keeps the newest `keep`. Returns the checkpoint directory.
std::string save_checkpoint(const std::string& run_dir, const Config& cfg, uint64_t table_hash,
                            const CheckpointView& data, int keep);

// Directory of the newest complete checkpoint under run_dir, if any.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Loads a checkpoint directory (or a run directory: its latest checkpoint). Throws
// std::runtime_error naming the file and the field on any mismatch or corruption.
CheckpointData load_checkpoint(const std::string& dir, uint64_t expected_table_hash, bool with_optimizer);

// Resolves a run or checkpoint directory to the checkpoint directory itself.
std::string checkpoint_dir(const std::string& run_or_checkpoint_dir);

}  // namespace hokusai
