// DataLoader: data.paths -> tokenizer, datasets (preprocessing text inputs once into the cache),
// split by documents, GPT sample indexes, blending; and each rank's slice of a global batch.
#include <fmt/format.h>

#include <array>
#include <cmath>
#include <fstream>
#include <filesystem>
#include <sstream>

#include "hokusai/config.hpp"
#include "hokusai/data.hpp"
#include "hokusai/hash.hpp"
#include "mapped_file.hpp"

namespace hokusai {

namespace fs = std::filesystem;

std::string resolve_data_path(const std::string& path, const std::vector<std::string>& search_dirs) {
  const auto exists = [](const fs::path& p) {
    return fs::exists(p) || (fs::exists(p.string() + ".idx") && fs::exists(p.string() + ".bin"));
  };
  if (exists(path)) return path;
  std::string tried = "'" + path + "'";
  if (fs::path(path).is_relative()) {
    for (const auto& dir : search_dirs) {
      if (dir.empty()) continue;
      const fs::path candidate = fs::path(dir) / path;
      if (exists(candidate)) return candidate.string();
      tried += ", '" + candidate.string() + "'";
    }
  }
  throw DataError("data.paths: '" + path + "' not found (tried " + tried +
                  "): give a dataset prefix (PREFIX.bin + PREFIX.idx) or a .txt/.jsonl file");
}

namespace {

// data.split "98,2,0" -> three fractions summing to 1.
std::array<double, 3> parse_split(const std::string& text) {
  std::array<double, 3> f{0, 0, 0};
  std::stringstream ss(text);
  std::string item;
  int n = 0;
  while (std::getline(ss, item, ',')) {
    if (n == 3) throw DataError("data.split '" + text + "': at most three parts (train,valid,test)");
    try {
      size_t used = 0;
      f[size_t(n)] = std::stod(item, &used);
      if (used != item.size() || f[size_t(n)] < 0) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw DataError("data.split '" + text + "': '" + item + "' is not a non-negative number");
    }
    ++n;
  }
  const double total = f[0] + f[1] + f[2];
  if (total <= 0) throw DataError("data.split '" + text + "': the parts sum to zero");
  for (double& x : f) x /= total;
  return f;
}

std::string cache_dir_for(const Config& cfg, const std::string& data_path) {
  if (!cfg.data.cache_dir.empty()) return cfg.data.cache_dir;
  return (fs::absolute(data_path).parent_path() / ".hokusai-cache").string();
}

}  // namespace

DataLoader::DataLoader(const Config& cfg, const std::vector<std::string>& search_dirs, const int64_t (&samples)[3],
                       const std::function<void(const std::string&)>& log)
    : seq_len_(cfg.train.seq_len),
      micro_batch_(cfg.train.micro_batch),
      global_batch_(cfg.train.global_batch),
      dp_(cfg.parallel.dp),
      vocab_size_(cfg.model.vocab_size) {
  std::string model_path = cfg.data.tokenizer_model;
  if (!model_path.empty()) model_path = resolve_data_path(model_path, search_dirs);
  tokenizer_ = make_tokenizer(cfg.data.tokenizer, model_path);
  if (tokenizer_->vocab_size() > cfg.model.vocab_size)
    throw DataError(fmt::format("model.vocab_size={} is smaller than the {} tokenizer's {} ids: raise it",
                                cfg.model.vocab_size, tokenizer_->name(), tokenizer_->vocab_size()));
  const auto fractions = parse_split(cfg.data.split);

  std::vector<double> weights;
  std::vector<std::string> cache_dirs;
  for (const auto& src : cfg.data.paths) {
    const std::string found = resolve_data_path(src.path, search_dirs);
    std::string prefix = found;
    const std::string ext = fs::path(found).extension().string();
    if (ext == ".idx" || ext == ".bin") prefix = found.substr(0, found.size() - 4);
    const std::string cache = cache_dir_for(cfg, found);
    if (!(fs::exists(prefix + ".idx") && fs::exists(prefix + ".bin"))) {
      // A text or JSONL file: preprocess once into the cache, keyed by its size, time and tokenizer.
      const auto mtime = uint64_t(fs::last_write_time(found).time_since_epoch().count());
      const uint64_t key = splitmix64(fnv1a(fs::absolute(found).string()) ^ splitmix64(fs::file_size(found)) ^
                                      splitmix64(mtime) ^ fnv1a(tokenizer_->name() + "|" + cfg.data.json_key));
      prefix = (fs::path(cache) / fmt::format("{}_{}_{:016x}", fs::path(found).stem().string(),
                                              tokenizer_->name().substr(0, tokenizer_->name().find(':')), key))
                   .string();
      const bool built = build_once(prefix + ".done", [&](const std::string& tmp) {
        PreprocessOptions po;
        po.inputs = {found};
        po.output_prefix = prefix;
        po.json_key = cfg.data.json_key;
        po.progress = false;
        const auto st = preprocess(po, *tokenizer_);
        log(fmt::format("preprocessed {} -> {} ({} documents, {} tokens, {:.1f} MB/s)", found, prefix, st.documents,
                        st.tokens, double(st.input_bytes) / 1e6 / std::max(st.seconds, 1e-9)));
        std::ofstream(tmp) << "done\n";
      });
      if (!built) log(fmt::format("using preprocessed {} (cache)", prefix));
    }
    datasets_.push_back(std::make_shared<const IndexedDataset>(prefix));
    weights.push_back(src.weight);
    cache_dirs.push_back(cache);
  }

  const char* split_names[3] = {"train", "valid", "test"};
  for (int s = 0; s < 3; ++s) {
    if (samples[s] <= 0 || fractions[size_t(s)] <= 0) continue;
    std::vector<std::shared_ptr<GptDataset>> parts;
    double wsum = 0;
    for (double w : weights) wsum += w;
    for (size_t k = 0; k < datasets_.size(); ++k) {
      const auto& d = *datasets_[k];
      const int64_t D = d.documents();
      double lo = 0;
      for (int t = 0; t < s; ++t) lo += fractions[size_t(t)];
      const int64_t doc_begin = int64_t(std::llround(lo * double(D)));
      const int64_t doc_end = s == 2 ? D : int64_t(std::llround((lo + fractions[size_t(s)]) * double(D)));
      if (doc_end <= doc_begin)
        throw DataError(fmt::format("data.split '{}' leaves no {} documents of '{}' ({} documents in all)",
                                    cfg.data.split, split_names[s], d.prefix(), D));
      // Blending draws each dataset's share greedily; 0.5% + 1 margin covers the rounding.
      const int64_t n = datasets_.size() == 1
                            ? samples[s]
                            : int64_t(std::ceil(weights[k] / wsum * double(samples[s]) * 1.005)) + 1;
      parts.push_back(std::make_shared<GptDataset>(datasets_[k], d.document_start(doc_begin), d.document_start(doc_end),
                                                   seq_len_, n, cfg.train.seed + uint64_t(s), cache_dirs[k]));
      log(fmt::format("{} split of {}: documents [{}, {}), {} samples, {} epoch(s), index {}{}", split_names[s],
                      d.prefix(), doc_begin, doc_end, n, parts.back()->epochs(), parts.back()->cache_file(),
                      parts.back()->built_cache() ? " (built)" : " (cached)"));
    }
    splits_[s] = std::make_unique<BlendedDataset>(parts, weights, samples[s], cache_dirs.front());
  }
}

DataLoader::~DataLoader() = default;

int64_t DataLoader::size(Split s) const { return splits_[s] ? splits_[s]->size() : 0; }

void DataLoader::fill(Split s, int64_t first, int64_t count, int32_t* tokens, int32_t* targets) const {
  if (!splits_[s]) throw DataError("data: no samples for this split (check data.split)");
  if (first < 0 || first + count > splits_[s]->size())
    throw DataError(fmt::format("data: samples [{}, {}) requested, the index holds {}", first, first + count,
                                splits_[s]->size()));
  std::vector<int32_t> buf(size_t(seq_len_ + 1));
  for (int64_t i = 0; i < count; ++i) {
    splits_[s]->sample(first + i, buf.data());
    for (int32_t t : buf)
      if (t < 0 || t >= vocab_size_)
        throw DataError(fmt::format("data: sample {} holds token id {} outside [0, model.vocab_size={}): the dataset "
                                    "was made with another tokenizer or is corrupt",
                                    first + i, t, vocab_size_));
    std::copy_n(buf.begin(), seq_len_, tokens + i * seq_len_);
    std::copy_n(buf.begin() + 1, seq_len_, targets + i * seq_len_);
  }
}

void DataLoader::fill_micro_batch(int64_t step_first_sample, int micro, int dp_rank, int32_t* tokens,
                                  int32_t* targets) const {
  const int64_t first = step_first_sample + int64_t(dp_rank) * (global_batch_ / dp_) + int64_t(micro) * micro_batch_;
  fill(train, first, micro_batch_, tokens, targets);
}

}  // namespace hokusai
