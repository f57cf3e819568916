// merge_checkpoint: the shards of a model-parallel run -> one serial checkpoint. Every shard
// tensor is placed by name and serial_index (the map that also makes sharded initialisation equal
// the serial one); the vocabulary padding of tp > 1 is dropped; a tied wte copy on the last
// stage must equal the first stage's.
#include <algorithm>
#include <climits>
#include <filesystem>
#include <map>
#include <stdexcept>

#include "ckpt/reshard.hpp"
#include "comm/grid.hpp"
#include "hokusai/checkpoint.hpp"

namespace hokusai {

namespace fs = std::filesystem;

std::string merge_checkpoint(const std::string& run_dir, const std::string& out_run_dir) {
  const std::string config_path = (fs::path(run_dir) / "config.yaml").string();
  if (!fs::exists(config_path))
    throw std::runtime_error("merge: no '" + config_path + "': give the run directory of a training run");
  Config cfg = load_config(config_path);
  resolve(cfg);
  validate(cfg);
  const int tp = cfg.parallel.tp, pp = cfg.parallel.pp;
  comm::GridShape shape{tp, pp, 1};

  // The newest step every shard has (a job killed between two shards' saves leaves them apart).
  int64_t step = INT64_MAX;
  for (int s = 0; s < pp; ++s)
    for (int t = 0; t < tp; ++t) {
      const std::string root = checkpoint_shard_root(run_dir, pp, s, tp, t);
      const auto latest = latest_checkpoint(root);
      if (!latest) throw std::runtime_error("merge: shard '" + root + "' has no checkpoint (checkpoints/latest)");
      step = std::min(step, checkpoint_step(*latest));
    }

  const ModelDims serial_dims = ModelDims::from(cfg.model, comm::ParallelGrid::single());
  const std::vector<TensorSpec> serial = param_table(serial_dims);
  std::map<std::string, const TensorSpec*> by_name;
  for (const auto& t : serial) by_name[t.name] = &t;
  const int64_t n = arena_size(serial);
  std::vector<float> params(static_cast<size_t>(n)), m(static_cast<size_t>(n)), v(static_cast<size_t>(n));
  std::vector<uint8_t> covered(static_cast<size_t>(n), 0);
  int64_t adam_t = -1, consumed = -1;  // of shard (0, 0); every other shard must agree
  LossScaleState loss_scale;            // of shard (0, 0): the same on every rank
  for (int s = 0; s < pp; ++s)
    for (int t = 0; t < tp; ++t) {
      const comm::ParallelGrid grid(shape, tp * pp, t + tp * s);
      const ModelDims d = ModelDims::from(cfg.model, grid, cfg.parallel.stage_layers,
                                          pp > 1 ? cfg.parallel.virtual_stages : 1);
      const std::vector<TensorSpec> table = param_table(d);
      const std::string root = checkpoint_shard_root(run_dir, pp, s, tp, t);
      const auto dir = checkpoint_at(root, step);
      if (!dir)
        throw std::runtime_error("merge: shard '" + root + "' has no checkpoint of step " + std::to_string(step) +
                                 ", the newest step the other shards share (checkpoint.keep too small?)");
      CheckpointData ck = load_checkpoint(*dir, table_hash(table), true);
      if (ck.m.empty()) throw std::runtime_error("merge: '" + *dir + "' holds no optimizer state");
      if (s == 0 && t == 0) adam_t = ck.adam_t, consumed = ck.consumed_samples, loss_scale = ck.loss_scale;
      if (ck.adam_t != adam_t || ck.consumed_samples != consumed)
        throw std::runtime_error("merge: '" + *dir + "' disagrees with the first shard on the Adam step or samples seen");
      for (const TensorSpec& spec : table) {
        const auto it = by_name.find(spec.name);
        if (it == by_name.end()) throw std::runtime_error("merge: tensor " + spec.name + " of '" + *dir + "' has no place in the serial model");
        const TensorSpec& dst = *it->second;
        for (int64_t i = 0; i < spec.numel; ++i) {
          const int64_t j = serial_index(spec, d, i);
          if (j >= dst.numel) continue;  // vocabulary padding of tp > 1
          const size_t at = size_t(dst.offset + j), from = size_t(spec.offset + i);
          if (spec.tied_copy) {  // the last stage's copy of wte: must equal the first stage's
            if (params[at] != ck.params[from])
              throw std::runtime_error("merge: the tied wte copy of '" + *dir + "' differs from the first stage's (" +
                                       std::to_string(params[at]) + " vs " + std::to_string(ck.params[from]) +
                                       " at element " + std::to_string(j) + ")");
            continue;
          }
          params[at] = ck.params[from];
          m[at] = ck.m[from];
          v[at] = ck.v[from];
          covered[at] = 1;
        }
      }
    }
  const auto missing = std::find(covered.begin(), covered.end(), 0);
  if (missing != covered.end())
    throw std::runtime_error("merge: serial element " + std::to_string(missing - covered.begin()) +
                             " is in no shard: the shards do not match " + config_path);

  Config out = cfg;
  out.parallel.tp = out.parallel.pp = out.parallel.dp = 1;
  out.parallel.zero1 = false;
  out.parallel.stage_layers.clear();
  out.parallel.recompute_stages.clear();
  out.parallel.virtual_stages = 1;
  out.logging.run_dir = out_run_dir;
  fs::create_directories(out_run_dir);
  const CheckpointView view{step, consumed, adam_t, params, m, v, tensor_manifest(out, 0, 0), loss_scale};
  return save_checkpoint(out_run_dir, out, table_hash(serial), view, std::max(1, cfg.checkpoint.keep));
}

}  // namespace hokusai
