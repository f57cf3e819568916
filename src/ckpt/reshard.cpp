#include "ckpt/reshard.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <stdexcept>

#include "comm/grid.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;

ModelDims dims_of(const Config& c, int pp_rank, int tp_rank) {
  const int tp = c.parallel.tp, pp = c.parallel.pp;
  const comm::ParallelGrid grid(comm::GridShape{tp, pp, 1}, tp * pp, tp_rank + tp * pp_rank);
  return ModelDims::from(c.model, grid, c.parallel.stage_layers, pp > 1 ? c.parallel.virtual_stages : 1);
}

}  // namespace

std::string tensor_manifest(const Config& cfg, int pp_rank, int tp_rank) {
  const ModelDims d = dims_of(cfg, pp_rank, tp_rank);
  const std::vector<TensorSpec> table = param_table(d);
  std::map<std::string, TensorSpec> serial;
  for (auto& t : param_table(ModelDims::from(cfg.model, comm::ParallelGrid::single()))) serial[t.name] = t;
  const auto ranges = [](const std::vector<int64_t>& idx) {  // consecutive runs -> [begin, end)
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < idx.size();) {
      size_t j = i + 1;
      while (j < idx.size() && idx[j] == idx[j - 1] + 1) ++j;
      out.push_back({idx[i], idx[j - 1] + 1});
      i = j;
    }
    return out;
  };
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorSpec& t : table) {
    const TensorSpec& g = serial.at(t.name);
    const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1, gcols = g.shape.size() == 2 ? g.shape[1] : 1;
    const int64_t rows = t.numel / cols, grows = g.numel / gcols;
    // A slice is a product of a row set and a column set: read them off the first column and row.
    std::vector<int64_t> row_idx, col_idx;
    int64_t padding = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t gr = serial_index(t, d, r * cols) / gcols;
      if (gr < grows) row_idx.push_back(gr); else ++padding;
    }
    for (int64_t c = 0; c < cols; ++c) col_idx.push_back(serial_index(t, d, c) % gcols);
    nlohmann::json e{{"name", t.name}, {"shape", t.shape}, {"offset", t.offset}, {"global_shape", g.shape},
                     {"rows", ranges(row_idx)}, {"replicated", !t.tp_sharded}};
    if (t.shape.size() == 2) e["cols"] = ranges(col_idx);
    if (padding > 0) e["padding_rows"] = padding;
    if (t.tied_copy) e["tied_copy_of_first_stage"] = true;
    tensors.push_back(std::move(e));
  }
  const nlohmann::json m{{"format", "hokusai tensor manifest 1"},
                         {"layout", {{"tp", cfg.parallel.tp}, {"tp_rank", tp_rank}, {"pp", cfg.parallel.pp},
                                     {"pp_rank", pp_rank}, {"virtual_stages", d.chunks}}},
                         {"arrays", "state.bin: parameters, then Adam m and v (when saved), fp32, each in this order"},
                         {"parameters", arena_size(table)},
                         {"tensors", tensors}};
  return m.dump(1) + "\n";
}

bool same_model_layout(const Config& a, const Config& b) {
  if (a.parallel.tp != b.parallel.tp || a.parallel.pp != b.parallel.pp) return false;
  for (int s = 0; s < a.parallel.pp; ++s)  // the same layers on every stage and chunk
    if (table_hash(param_table(dims_of(a, s, 0))) != table_hash(param_table(dims_of(b, s, 0)))) return false;
  return true;
}

std::optional<SavedRun> newest_saved_run(const std::string& run_dir, const Config& current) {
  // Every complete step directory under a `checkpoints` root (the run's, or a shard's
  // pp-stage-<s>/tp-rank-<r>/checkpoints), grouped by the layout its config.yaml names.
  struct Seen {
    Config config;
    std::map<int64_t, int> roots_with_step;
  };
  std::vector<Seen> layouts;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(run_dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it.depth() > 3) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_directory() || it->path().filename() != "checkpoints") continue;
    it.disable_recursion_pending();
    for (const auto& e : fs::directory_iterator(it->path(), ec)) {
      const int64_t step = checkpoint_step(e.path().string());
      if (step < 0 || !fs::exists(e.path() / "state.bin") || !fs::exists(e.path() / "config.yaml")) continue;
      Config c;
      try {
        c = load_config((e.path() / "config.yaml").string());
        resolve(c);
      } catch (const std::exception&) {
        continue;  // a damaged config: that step is not a candidate
      }
      Seen* seen = nullptr;
      for (auto& l : layouts)
        if (same_model_layout(l.config, c)) seen = &l;
      if (!seen) seen = &layouts.emplace_back(Seen{c, {}});
      ++seen->roots_with_step[step];
    }
  }
  std::optional<SavedRun> best;
  bool best_is_current = false;
  for (const auto& l : layouts)
    for (const auto& [step, roots] : l.roots_with_step) {
      if (roots < l.config.parallel.tp * l.config.parallel.pp) continue;  // not every shard saved it
      const bool is_current = same_model_layout(l.config, current);
      if (!best || step > best->step || (step == best->step && is_current && !best_is_current)) {
        best = SavedRun{l.config, step};
        best_is_current = is_current;
      }
    }
  return best;
}

CheckpointData load_resharded(const std::string& run_dir, const SavedRun& saved, const ModelDims& d,
                              const std::vector<TensorSpec>& table) {
  const Config& old = saved.config;
  const int otp = old.parallel.tp, opp = old.parallel.pp;
  // The serial model of both must be the same (the layout may differ, the model not).
  const std::vector<TensorSpec> serial = param_table(ModelDims::from(old.model, comm::ParallelGrid::single()));
  std::map<std::string, const TensorSpec*> serial_by_name, mine;
  for (const auto& t : serial) serial_by_name[t.name] = &t;
  for (const auto& t : table) {
    const auto s = serial_by_name.find(t.name);
    if (s == serial_by_name.end())
      throw std::runtime_error(fmt::format("resume: tensor {} of this model is not in the checkpoint of step {} "
                                           "(its model section differs: resume with the saved run's model)",
                                           t.name, saved.step));
    mine[t.name] = &t;
  }
  const int64_t n = arena_size(table);
  CheckpointData out;
  out.params.assign(size_t(n), 0.0f);
  out.m.assign(size_t(n), 0.0f);
  out.v.assign(size_t(n), 0.0f);
  std::vector<uint8_t> covered(size_t(n), 0);
  bool first = true;
  for (int s = 0; s < opp; ++s)
    for (int t = 0; t < otp; ++t) {
      const ModelDims od = dims_of(old, s, t);
      const std::vector<TensorSpec> otable = param_table(od);
      bool needed = false;
      for (const auto& ot : otable) needed = needed || (!ot.tied_copy && mine.count(ot.name));
      if (!needed) continue;  // this old shard holds nothing of this rank's
      const std::string root = checkpoint_shard_root(run_dir, opp, s, otp, t);
      const auto dir = checkpoint_at(root, saved.step);
      if (!dir)
        throw std::runtime_error(fmt::format("resume: '{}' has no checkpoint of step {}, which the other shards of "
                                             "that layout have",
                                             root, saved.step));
      const CheckpointReader ck(*dir, table_hash(otable));  // checked whole; read tensor by tensor
      if (first) {
        out.step = ck.step, out.consumed_samples = ck.consumed_samples, out.adam_t = ck.adam_t;
        out.loss_scale = ck.loss_scale;
        first = false;
      } else if (ck.step != out.step || ck.consumed_samples != out.consumed_samples || ck.adam_t != out.adam_t) {
        throw std::runtime_error("resume: '" + *dir + "' disagrees with the other shards on the step, samples or Adam step");
      }
      for (const TensorSpec& os : otable) {
        const auto it = mine.find(os.name);
        if (os.tied_copy || it == mine.end()) continue;
        const TensorSpec& ns = *it->second;
        const int64_t serial_numel = serial_by_name.at(os.name)->numel;
        std::vector<float> p(size_t(os.numel)), m(size_t(os.numel)), v(size_t(os.numel));  // this tensor only
        ck.read(0, os.offset, os.numel, p.data());
        ck.read(1, os.offset, os.numel, m.data());
        ck.read(2, os.offset, os.numel, v.data());
        const auto put = [&](int64_t to, int64_t from) {  // from: index in the old tensor
          out.params[size_t(to)] = p[size_t(from)];
          out.m[size_t(to)] = m[size_t(from)];
          out.v[size_t(to)] = v[size_t(from)];
          covered[size_t(to)] = 1;
        };
        if (!os.tp_sharded && !ns.tp_sharded) {  // whole on both sides
          if (os.numel != ns.numel)
            throw std::runtime_error(fmt::format("resume: tensor {} has {} elements in '{}', {} here", os.name,
                                                 os.numel, *dir, ns.numel));
          for (int64_t i = 0; i < ns.numel; ++i) put(ns.offset + i, i);
          continue;
        }
        // Through the serial index: where each serial element sits in this rank's tensor.
        std::vector<int64_t> local_of(size_t(serial_numel), -1);
        for (int64_t i = 0; i < ns.numel; ++i) {
          const int64_t j = serial_index(ns, d, i);
          if (j < serial_numel) local_of[size_t(j)] = i;
        }
        for (int64_t i = 0; i < os.numel; ++i) {
          const int64_t j = serial_index(os, od, i);
          if (j < serial_numel && local_of[size_t(j)] >= 0) put(ns.offset + local_of[size_t(j)], i);
        }
      }
    }
  for (const TensorSpec& ns : table) {
    const int64_t serial_numel = serial_by_name.at(ns.name)->numel;
    for (int64_t i = 0; i < ns.numel; ++i)
      if (!covered[size_t(ns.offset + i)] && serial_index(ns, d, i) < serial_numel)
        throw std::runtime_error(fmt::format("resume: element {} of tensor {} is in no shard of step {} saved by "
                                             "tp {} x pp {}",
                                             i, ns.name, saved.step, otp, opp));
  }
  return out;
}

}  // namespace hokusai
