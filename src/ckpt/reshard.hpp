// Resuming a checkpoint in another parallel layout (`--resume` after changing parallel.tp, pp,
// virtual_stages or stage_layers; a dp change needs nothing: dp replicas share their shard's
// checkpoint and ZeRO-1's Adam state is saved gathered).
//
// Every saved shard directory holds the config that wrote it, so the old layout's tensor tables
// (names, local shapes, and through serial_index each element's place in the serial model) are
// rebuilt from it. A rank of the new layout reads, one old shard at a time, only the shards that
// hold tensors it needs (a pipeline stage reads the old stages owning its layers, all old tp
// ranks for a tp-split tensor, one for a replicated one), and places each element it owns
// through the inverse of its own serial_index, one tensor at a time. It never holds the whole
// model, nor a whole old shard. Every element must be
// found (an error names the tensor and step otherwise); the vocabulary padding starts at zero.
// Each old shard read is checksummed whole first, in pieces (CheckpointReader), then read tensor
// by tensor: memory is this rank's state plus one old tensor (parameters, m, v) and its index map.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hokusai/checkpoint.hpp"
#include "hokusai/config.hpp"
#include "hokusai/model.hpp"

namespace hokusai {

// The newest step that some layout saved completely in run_dir (every tp x pp shard root holds
// step_N with its state.bin), with the config stored beside it. A layout equal to `current`'s
// wins a tie. nullopt when nothing complete is saved.
struct SavedRun {
  Config config;
  int64_t step = 0;
};
std::optional<SavedRun> newest_saved_run(const std::string& run_dir, const Config& current);

// The tensor manifest of the shard of `cfg`'s layout at (pp_rank, tp_rank), as JSON text: for
// every tensor of its table (in arena order) the name, local shape, offset in each array, the
// global (serial, tp = 1) shape, and which part of the global tensor it holds — `rows` and `cols`:
// lists of [begin, end) ranges whose concatenation, in order, gives the local rows and columns
// (e.g. a tp rank's qkv_w: three row ranges, its q, k and v heads); `padding_rows`: local rows past
// the global ones (tp's vocabulary padding); `replicated`: the same on every tp rank. Written as
// tensors.json beside each state.bin; nothing reads it back (the tables are rebuilt from
// config.yaml), it documents the checkpoint for people and other tools.
std::string tensor_manifest(const Config& cfg, int pp_rank, int tp_rank);

// True when `a` and `b` place the model identically (tp, pp and the pipeline's layer split).
bool same_model_layout(const Config& a, const Config& b);

// This rank's parameters and Adam state (table of dims `d`) from step `step` that `saved`'s
// layout wrote into run_dir. Throws std::runtime_error naming the shard directory or tensor.
CheckpointData load_resharded(const std::string& run_dir, const SavedRun& saved, const ModelDims& d,
                              const std::vector<TensorSpec>& table);

}  // namespace hokusai
