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
// 3: 4-byte columns where they fit, checked reads, samples shuffled in epoch-sized blocks
constexpr uint64_t kIndexVersion = 3;

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
    : data_(std::move(data)), seq_len_(seq_len), num_samples_(num_samples), first_(first), last_(last) {
  int64_t tokens_per_epoch = 0;
  int64_t longest = 0;
  for (int64_t s = first; s < last; ++s) tokens_per_epoch += data_->length(s), longest = std::max(longest, data_->length(s));
  if (tokens_per_epoch == 0)
    throw DataError("'" + data_->prefix() + "': sequences [" + std::to_string(first) + ", " + std::to_string(last) +
                    ") of this split hold no tokens: change data.split or add data");
  // Samples are shuffled within blocks of one epoch's worth, and the index always holds whole
  // blocks: sample i is the same for every num_samples that covers it. A run extended (more
  // train.steps) or resumed with another train.global_batch reads on from its consumed-sample
  // count through exactly the order it started with.
  const int64_t per_block = std::max<int64_t>(1, tokens_per_epoch / seq_len);
  num_samples_ = (num_samples + per_block - 1) / per_block * per_block;
  num_samples = num_samples_;
  const int64_t needed = num_samples * seq_len + 1;
  epochs_ = std::max<int64_t>(1, (needed + tokens_per_epoch - 1) / tokens_per_epoch);
  const int64_t n_order = epochs_ * (last - first);
  // 4-byte columns when every entry fits: positions in `order` (<= n_order), offsets into a
  // sequence (< longest), sample numbers (< num_samples) and sequence numbers (< last).
  const int width = std::max({n_order, longest, num_samples + 1, last}) < INT32_MAX ? 4 : 8;
  const uint64_t key = mix_all({kIndexVersion, data_->fingerprint(), uint64_t(first), uint64_t(last),
                                uint64_t(seq_len), uint64_t(num_samples), seed});
  cache_file_ = (fs::path(cache_dir) / fmt::format("{}_{:016x}.gptidx", fs::path(data_->prefix()).filename().string(), key))
                    .string();
  built_ = build_once(cache_file_, [&](const std::string& tmp) {
    std::vector<int64_t> order;
    order.reserve(size_t(n_order));
    for (int64_t e = 0; e < epochs_; ++e) {
      std::vector<int64_t> epoch(static_cast<size_t>(last - first));
      for (int64_t s = first; s < last; ++s) epoch[size_t(s - first)] = s;
      shuffle(epoch, splitmix64(seed ^ 0x6570756368ULL ^ uint64_t(e)));
      order.insert(order.end(), epoch.begin(), epoch.end());
    }
    Writer w(tmp);
    const CacheHeader h{{'H', 'K', 'G', 'P', 'T', 'I', 'X', '2'}, key, n_order, num_samples, epochs_, width};
    w.put(&h, sizeof h);
    const auto put_column = [&](const std::vector<int64_t>& v) {
      if (width == 8) return w.put(v.data(), v.size() * 8);
      const std::vector<int32_t> narrow(v.begin(), v.end());
      w.put(narrow.data(), narrow.size() * 4);
    };
    put_column(order);
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
    put_column(starts);
    std::vector<int64_t> perm;
    perm.reserve(size_t(num_samples));
    for (int64_t b = 0; b < num_samples / per_block; ++b) {
      std::vector<int64_t> block(static_cast<size_t>(per_block));
      for (int64_t i = 0; i < per_block; ++i) block[size_t(i)] = b * per_block + i;
      shuffle(block, splitmix64(seed ^ 0x73616d706c65ULL ^ splitmix64(uint64_t(b))));
      perm.insert(perm.end(), block.begin(), block.end());
    }
    put_column(perm);
    w.close();
  });
  cache_ = std::make_unique<MappedFile>(cache_file_);
  const CacheHeader& h = check_header(*cache_, "HKGPTIX2", key);
  // Sizes come from this dataset, never from the file; the file must agree with them.
  if (h.a != n_order || h.b != num_samples || h.c != epochs_ || h.d != width)
    throw DataError("cache file '" + cache_file_ + "' was built for another dataset (header " + std::to_string(h.a) +
                    " positions, " + std::to_string(h.b) + " samples, " + std::to_string(h.c) + " epochs, width " +
                    std::to_string(h.d) + "): delete it to rebuild");
  const size_t n_starts = size_t(2 * (num_samples + 1));
  if (cache_->size() != kCacheHeader + size_t(width) * (size_t(n_order) + n_starts + size_t(num_samples)))
    throw DataError("cache file '" + cache_file_ + "' has the wrong size: delete it to rebuild");
  const unsigned char* p = cache_->data() + kCacheHeader;
  order_ = {p, size_t(n_order), width};
  starts_ = {p + size_t(width) * size_t(n_order), n_starts, width};
  shuffle_ = {p + size_t(width) * (size_t(n_order) + n_starts), size_t(num_samples), width};
}

GptDataset::~GptDataset() = default;

int64_t GptDataset::Column::operator[](size_t i) const {
  if (width == 4) {
    int32_t v;
    std::memcpy(&v, data + 4 * i, 4);
    return v;
  }
  int64_t v;
  std::memcpy(&v, data + 8 * i, 8);
  return v;
}

void GptDataset::corrupt(int64_t i, const std::string& why) const {
  throw DataError("cache file '" + cache_file_ + "' is corrupt (sample " + std::to_string(i) + ": " + why +
                  "): delete it to rebuild");
}

// Every entry read from the cache file is checked before use (a few compares per sample): a
// damaged file is one error naming it, never a read outside the dataset.
void GptDataset::sample(int64_t i, int32_t* out) const {
  if (i < 0 || i >= num_samples_) corrupt(i, "out of range, the index holds " + std::to_string(num_samples_));
  const int64_t j = shuffle_[size_t(i)];
  if (j < 0 || j >= num_samples_) corrupt(i, "shuffled to " + std::to_string(j));
  int64_t pos = starts_[size_t(2 * j)], off = starts_[size_t(2 * j + 1)];
  int64_t need = seq_len_ + 1;
  while (need > 0) {
    if (pos < 0 || pos >= int64_t(order_.size)) corrupt(i, "position " + std::to_string(pos) + " beyond the order");
    const int64_t seq = order_[size_t(pos)];
    if (seq < first_ || seq >= last_) corrupt(i, "sequence " + std::to_string(seq) + " outside the split");
    const int64_t len = data_->length(seq);
    if (off < 0 || off > len) corrupt(i, "offset " + std::to_string(off) + " in a sequence of " + std::to_string(len));
    const int64_t take = std::min(need, len - off);
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
  const CacheHeader& h = check_header(*cache_, "HKBLEND1", key);
  if (h.a != num_samples || h.b != int64_t(parts_.size()))
    throw DataError("cache file '" + path + "' was built for another blend: delete it to rebuild");
  cache_file_ = path;
  const size_t which_bytes = (size_t(num_samples) * 2 + 7) / 8 * 8;
  if (cache_->size() != kCacheHeader + which_bytes + 8 * size_t(num_samples))
    throw DataError("cache file '" + path + "' has the wrong size: delete it to rebuild");
  dataset_ = cache_->array<int16_t>(kCacheHeader, size_t(num_samples));
  index_ = cache_->array<int64_t>(kCacheHeader + which_bytes, size_t(num_samples));
}

BlendedDataset::~BlendedDataset() = default;

int BlendedDataset::dataset_of(int64_t i) const {
  if (parts_.size() == 1) return 0;
  const int k = (i >= 0 && i < num_samples_) ? dataset_[size_t(i)] : -1;
  if (k < 0 || k >= int(parts_.size()))
    throw DataError("cache file '" + cache_file_ + "' is corrupt (sample " + std::to_string(i) + " of dataset " +
                    std::to_string(k) + "): delete it to rebuild");
  return k;
}

void BlendedDataset::sample(int64_t i, int32_t* out) const {
  if (parts_.size() == 1) return parts_[0]->sample(i, out);
  parts_[size_t(dataset_of(i))]->sample(index_[size_t(i)], out);  // GptDataset::sample checks the index
}

}  // namespace hokusai
