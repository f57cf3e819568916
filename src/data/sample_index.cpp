// GPT sample index (Megatron's GPTDataset) and blending, both cached in memory-mapped files.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "hokusai/data.hpp"
#include "hokusai/hash.hpp"
#include "mapped_file.hpp"

namespace hokusai {

namespace fs = std::filesystem;

namespace {

constexpr size_t kCacheHeader = 48;  // magic 8 + key 8 + four i64 fields: arrays stay 8-aligned
constexpr uint64_t kIndexVersion = 1;

struct CacheHeader {
  char magic[8];
  uint64_t key;
  int64_t a, b, c, d;
};
static_assert(sizeof(CacheHeader) == kCacheHeader);

uint64_t mix_all(std::initializer_list<uint64_t> values) {
  uint64_t h = 0x243f6a8885a308d3ULL;
  for (uint64_t v : values) h = splitmix64(h ^ v);
  return h;
}

// Seeded Fisher-Yates with a counter-based generator: the same permutation on every platform
// and standard library (std::shuffle's distribution is implementation-defined).
template <typename T>
void shuffle(std::vector<T>& v, uint64_t seed) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = size_t(splitmix64(seed ^ splitmix64(uint64_t(i))) % uint64_t(i));
    std::swap(v[i - 1], v[j]);
  }
}

class Writer {
 public:
  explicit Writer(const std::string& path) : path_(path), out_(path, std::ios::binary | std::ios::trunc) {
    if (!out_) throw DataError("cannot create cache file '" + path + "' (set data.cache_dir to a writable directory)");
  }
  void put(const void* p, size_t bytes) {
    out_.write(static_cast<const char*>(p), std::streamsize(bytes));
    if (!out_) throw DataError("write to cache file '" + path_ + "' failed (disk full?)");
  }
  void close() {
    out_.close();
    if (!out_) throw DataError("closing cache file '" + path_ + "' failed");
  }

 private:
  std::string path_;
  std::ofstream out_;
};

const CacheHeader& check_header(const MappedFile& f, const char* magic, uint64_t key) {
  if (f.size() < kCacheHeader) throw DataError("cache file '" + f.path() + "' is truncated: delete it to rebuild");
  const auto* h = reinterpret_cast<const CacheHeader*>(f.data());
  if (std::memcmp(h->magic, magic, 8) != 0 || h->key != key)
    throw DataError("cache file '" + f.path() + "' does not match its name: delete it to rebuild");
  return *h;
}

}  // namespace

GptDataset::GptDataset(std::shared_ptr<const IndexedDataset> data, int64_t first, int64_t last, int64_t seq_len,
                       int64_t num_samples, uint64_t seed, const std::string& cache_dir)
    : data_(std::move(data)), seq_len_(seq_len), num_samples_(num_samples) {
  int64_t tokens_per_epoch = 0;
  for (int64_t s = first; s < last; ++s) tokens_per_epoch += data_->length(s);
  if (tokens_per_epoch == 0)
    throw DataError("'" + data_->prefix() + "': sequences [" + std::to_string(first) + ", " + std::to_string(last) +
                    ") of this split hold no tokens: change data.split or add data");
  const int64_t needed = num_samples * seq_len + 1;
  epochs_ = std::max<int64_t>(1, (needed + tokens_per_epoch - 1) / tokens_per_epoch);
  const uint64_t key = mix_all({kIndexVersion, data_->fingerprint(), uint64_t(first), uint64_t(last),
                                uint64_t(seq_len), uint64_t(num_samples), seed});
  cache_file_ = (fs::path(cache_dir) / fmt::format("{}_{:016x}.gptidx", fs::path(data_->prefix()).filename().string(), key))
                    .string();
  built_ = build_once(cache_file_, [&](const std::string& tmp) {
    std::vector<int64_t> order;
    order.reserve(size_t(epochs_ * (last - first)));
    for (int64_t e = 0; e < epochs_; ++e) {
      std::vector<int64_t> epoch(static_cast<size_t>(last - first));
      for (int64_t s = first; s < last; ++s) epoch[size_t(s - first)] = s;
      shuffle(epoch, splitmix64(seed ^ 0x6570756368ULL ^ uint64_t(e)));
      order.insert(order.end(), epoch.begin(), epoch.end());
    }
    Writer w(tmp);
    const CacheHeader h{{'H', 'K', 'G', 'P', 'T', 'I', 'X', '1'}, key, int64_t(order.size()), num_samples, epochs_, 0};
    w.put(&h, sizeof h);
    w.put(order.data(), order.size() * 8);
    // Start (position in order, offset) of sample j = stream token j*seq_len.
    int64_t pos = 0, off = 0;
    std::vector<int64_t> starts;
    starts.reserve(size_t(2 * (num_samples + 1)));
    for (int64_t j = 0; j <= num_samples; ++j) {
      while (pos < int64_t(order.size()) && off >= data_->length(order[size_t(pos)])) ++pos, off = 0;
      starts.push_back(pos);
      starts.push_back(off);
      int64_t need = seq_len;
      while (need > 0 && pos < int64_t(order.size())) {
        const int64_t avail = data_->length(order[size_t(pos)]) - off;
        if (avail > need) {
          off += need;
          need = 0;
        } else {
          need -= avail;
          ++pos;
          off = 0;
        }
      }
    }
    w.put(starts.data(), starts.size() * 8);
    std::vector<int64_t> perm(static_cast<size_t>(num_samples));
    for (int64_t i = 0; i < num_samples; ++i) perm[size_t(i)] = i;
    shuffle(perm, splitmix64(seed ^ 0x73616d706c65ULL));
    w.put(perm.data(), perm.size() * 8);
    w.close();
  });
  cache_ = std::make_unique<MappedFile>(cache_file_);
  const CacheHeader& h = check_header(*cache_, "HKGPTIX1", key);
  const size_t n_order = size_t(h.a);
  if (cache_->size() != kCacheHeader + 8 * (n_order + 2 * size_t(num_samples + 1) + size_t(num_samples)))
    throw DataError("cache file '" + cache_file_ + "' has the wrong size: delete it to rebuild");
  order_ = cache_->array<int64_t>(kCacheHeader, n_order);
  starts_ = cache_->array<int64_t>(kCacheHeader + 8 * n_order, size_t(2 * (num_samples + 1)));
  shuffle_ = cache_->array<int64_t>(kCacheHeader + 8 * (n_order + 2 * size_t(num_samples + 1)), size_t(num_samples));
}

GptDataset::~GptDataset() = default;

void GptDataset::sample(int64_t i, int32_t* out) const {
  const int64_t j = shuffle_[size_t(i)];
  int64_t pos = starts_[size_t(2 * j)], off = starts_[size_t(2 * j + 1)];
  int64_t need = seq_len_ + 1;
  while (need > 0) {
    const int64_t seq = order_[size_t(pos)];
    const int64_t take = std::min(need, data_->length(seq) - off);
    data_->read(seq, off, take, out);
    out += take;
    need -= take;
    ++pos;
    off = 0;
  }
}

BlendedDataset::BlendedDataset(std::vector<std::shared_ptr<GptDataset>> parts, std::vector<double> weights,
                               int64_t num_samples, const std::string& cache_dir)
    : parts_(std::move(parts)), num_samples_(num_samples) {
  if (parts_.size() == 1) return;  // one dataset: sample i is its sample i, no index needed
  double total = 0;
  for (double w : weights) total += w;
  for (double& w : weights) w /= total;
  std::vector<uint64_t> key_parts = {kIndexVersion, uint64_t(num_samples)};
  for (size_t k = 0; k < parts_.size(); ++k) {
    key_parts.push_back(fnv1a(parts_[k]->cache_file()));
    uint64_t bits;
    std::memcpy(&bits, &weights[k], 8);
    key_parts.push_back(bits);
  }
  uint64_t key = 0x626c656e64ULL;
  for (uint64_t v : key_parts) key = splitmix64(key ^ v);
  const std::string path = (fs::path(cache_dir) / fmt::format("blend_{:016x}.blendidx", key)).string();
  build_once(path, [&](const std::string& tmp) {
    std::vector<int16_t> which(static_cast<size_t>(num_samples));
    std::vector<int64_t> index(static_cast<size_t>(num_samples));
    std::vector<int64_t> count(parts_.size(), 0);
    for (int64_t i = 0; i < num_samples; ++i) {
      // The dataset furthest below its share of the first i+1 samples.
      size_t best = 0;
      double best_err = -1e300;
      for (size_t k = 0; k < parts_.size(); ++k) {
        const double err = weights[k] * double(i + 1) - double(count[k]);
        if (err > best_err) best_err = err, best = k;
      }
      which[size_t(i)] = int16_t(best);
      index[size_t(i)] = count[best]++;
    }
    for (size_t k = 0; k < parts_.size(); ++k)
      if (count[k] > parts_[k]->size())
        throw DataError("blending needs " + std::to_string(count[k]) + " samples of dataset " + std::to_string(k) +
                        " but its index holds " + std::to_string(parts_[k]->size()));
    Writer w(tmp);
    const CacheHeader h{{'H', 'K', 'B', 'L', 'E', 'N', 'D', '1'}, key, num_samples, int64_t(parts_.size()), 0, 0};
    w.put(&h, sizeof h);
    w.put(which.data(), which.size() * 2);
    const size_t pad = (8 - (which.size() * 2) % 8) % 8;
    const char zeros[8] = {};
    w.put(zeros, pad);
    w.put(index.data(), index.size() * 8);
    w.close();
  });
  cache_ = std::make_unique<MappedFile>(path);
  check_header(*cache_, "HKBLEND1", key);
  const size_t which_bytes = (size_t(num_samples) * 2 + 7) / 8 * 8;
  if (cache_->size() != kCacheHeader + which_bytes + 8 * size_t(num_samples))
    throw DataError("cache file '" + path + "' has the wrong size: delete it to rebuild");
  dataset_ = cache_->array<int16_t>(kCacheHeader, size_t(num_samples));
  index_ = cache_->array<int64_t>(kCacheHeader + which_bytes, size_t(num_samples));
}

BlendedDataset::~BlendedDataset() = default;

void BlendedDataset::sample(int64_t i, int32_t* out) const {
  if (parts_.size() == 1) return parts_[0]->sample(i, out);
  parts_[size_t(dataset_[size_t(i)])]->sample(index_[size_t(i)], out);
}

}  // namespace hokusai
