// Megatron's indexed dataset: validated memory-mapped reader and a streaming writer.
#include <cstdio>
#include <climits>
#include <cstring>
#include <filesystem>
#include <limits>

#include "hokusai/data.hpp"
#include "hokusai/hash.hpp"
#include "mapped_file.hpp"

namespace hokusai {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr size_t kHeader = 34;  // magic 9 + version 8 + dtype 1 + N 8 + D 8

template <typename T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

size_t dtype_size(uint8_t code) {
  switch (code) {
    case 1: case 2: return 1;
    case 3: case 8: return 2;
    case 4: case 7: return 4;
    case 5: case 6: return 8;
    default: return 0;
  }
}

uint8_t dtype_for_vocab(int64_t vocab_size) { return vocab_size < 65500 ? 8 : 4; }

IndexedDataset::IndexedDataset(const std::string& prefix) : prefix_(prefix) {
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  if (!fs::exists(idx_path)) throw DataError("'" + idx_path + "' not found (dataset prefix '" + prefix + "')");
  if (!fs::exists(bin_path)) throw DataError("'" + bin_path + "' not found (dataset prefix '" + prefix + "')");
  idx_ = std::make_unique<MappedFile>(idx_path);
  bin_ = std::make_unique<MappedFile>(bin_path);
  const unsigned char* p = idx_->data();
  const size_t size = idx_->size();
  const auto fail = [&](const std::string& what) { throw DataError("'" + idx_path + "': " + what); };
  if (size < kHeader) fail("truncated: " + str(int64_t(size)) + " bytes, the header alone needs 34");
  if (std::memcmp(p, kMagic, 9) != 0) fail("magic: expected \"MMIDIDX\\0\\0\" (not a Megatron indexed dataset)");
  const uint64_t version = load<uint64_t>(p + 9);
  if (version != 1) fail("version: " + std::to_string(version) + ", expected 1");
  dtype_ = p[17];
  if (dtype_size(dtype_) == 0) fail("dtype: code " + std::to_string(int(dtype_)) + ", expected 1..8");
  const uint64_t n = load<uint64_t>(p + 18), d = load<uint64_t>(p + 26);
  if (n > size / 12 || d > size / 8 || d < 1)
    fail("counts: N=" + std::to_string(n) + " sequences, D=" + std::to_string(d) + " cannot fit in " +
         str(int64_t(size)) + " bytes (truncated or corrupt)");
  const uint64_t expected = kHeader + 12 * n + 8 * d;
  if (size != expected)
    fail("size: " + str(int64_t(size)) + " bytes, expected " + std::to_string(expected) + " for N=" +
         std::to_string(n) + ", D=" + std::to_string(d) + (size < expected ? " (truncated)" : " (trailing bytes)"));
  n_ = int64_t(n);
  d_ = int64_t(d);
  lengths_ = p + kHeader;
  offsets_ = lengths_ + 4 * n;
  doc_index_ = offsets_ + 8 * n;
  if (document_start(0) != 0) fail("document_index[0]: " + str(document_start(0)) + ", expected 0");
  if (document_start(d_ - 1) != n_)
    fail("document_index[" + str(d_ - 1) + "]: " + str(document_start(d_ - 1)) + ", expected N=" + str(n_));
  for (int64_t i = 1; i < d_; ++i)
    if (document_start(i) < document_start(i - 1))
      fail("document_index[" + str(i) + "]: " + str(document_start(i)) + " is below the previous entry");
  const int64_t es = int64_t(dtype_size(dtype_)), bin_size = int64_t(bin_->size());
  // The fingerprint keys the sample-index caches built from this dataset: it covers every entry
  // of the index (an .idx rewritten in place must never reuse a stale cache) and the .bin size.
  fingerprint_ = fnv1a(std::string_view(reinterpret_cast<const char*>(p), kHeader));
  for (int64_t i = 0; i < n_; ++i) {
    const int64_t len = length(i), off = offset(i);
    if (len < 0) fail("lengths[" + str(i) + "]: " + str(len) + ", expected >= 0");
    if (off < 0 || off % es != 0) fail("offsets[" + str(i) + "]: " + str(off) + ", expected a multiple of " + str(es));
    // Written so that nothing overflows: off <= bin_size, then len against the bytes left.
    if (off > bin_size || len > (bin_size - off) / es)
      throw DataError("'" + bin_path + "': " + str(bin_size) + " bytes, but sequence " + str(i) + " (offsets[" +
                      str(i) + "]=" + str(off) + ", lengths[" + str(i) + "]=" + str(len) +
                      ") ends beyond it: the .bin is truncated or the .idx corrupt");
    if (total_tokens_ > INT64_MAX - len) fail("lengths: the token count overflows 64 bits (corrupt)");
    total_tokens_ += len;
    fingerprint_ = splitmix64(fingerprint_ ^ (uint64_t(len) * 0x9e3779b97f4a7c15ULL) ^ uint64_t(off));
  }
  for (int64_t i = 0; i < d_; ++i) fingerprint_ = splitmix64(fingerprint_ ^ uint64_t(document_start(i)));
  fingerprint_ = splitmix64(fingerprint_ ^ uint64_t(bin_size) ^ splitmix64(uint64_t(total_tokens_)));
}

IndexedDataset::~IndexedDataset() = default;
IndexedDataset::IndexedDataset(IndexedDataset&&) noexcept = default;

int64_t IndexedDataset::length(int64_t seq) const { return load<int32_t>(lengths_ + 4 * seq); }
int64_t IndexedDataset::offset(int64_t seq) const { return load<int64_t>(offsets_ + 8 * seq); }
int64_t IndexedDataset::document_start(int64_t doc) const { return load<int64_t>(doc_index_ + 8 * doc); }

void IndexedDataset::read(int64_t seq, int64_t off, int64_t count, int32_t* out) const {
  if (count <= 0) return;  // empty sequences: out may be null
  const unsigned char* src = bin_->data() + offset(seq) + off * int64_t(dtype_size(dtype_));
  switch (dtype_) {
    case 1: for (int64_t i = 0; i < count; ++i) out[i] = src[i]; break;
    case 2: for (int64_t i = 0; i < count; ++i) out[i] = int8_t(src[i]); break;
    case 3: for (int64_t i = 0; i < count; ++i) out[i] = load<int16_t>(src + 2 * i); break;
    case 8: for (int64_t i = 0; i < count; ++i) out[i] = load<uint16_t>(src + 2 * i); break;
    case 4: std::memcpy(out, src, size_t(count) * 4); break;
    case 5: for (int64_t i = 0; i < count; ++i) out[i] = int32_t(load<int64_t>(src + 8 * i)); break;
    case 6: for (int64_t i = 0; i < count; ++i) out[i] = int32_t(load<double>(src + 8 * i)); break;
    case 7: for (int64_t i = 0; i < count; ++i) out[i] = int32_t(load<float>(src + 4 * i)); break;
  }
}

// ------------------------------------------------------------------------------------ writer

struct IndexedDatasetWriter::Files {
  std::FILE* bin = nullptr;
  std::FILE* lengths = nullptr;
  std::FILE* docs = nullptr;
  std::string bin_tmp, lengths_tmp, docs_tmp;
  std::vector<unsigned char> buffer;
  ~Files() {
    for (std::FILE* f : {bin, lengths, docs})
      if (f) std::fclose(f);
  }
};

namespace {
std::FILE* open_write(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw DataError("cannot create '" + path + "': " + std::strerror(errno));
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);
  return f;
}
void put(std::FILE* f, const void* data, size_t bytes, const std::string& path) {
  if (bytes && std::fwrite(data, 1, bytes, f) != bytes)
    throw DataError("write to '" + path + "' failed: " + std::strerror(errno) + " (disk full?)");
}
}  // namespace

IndexedDatasetWriter::IndexedDatasetWriter(const std::string& prefix, uint8_t dtype)
    : f_(std::make_unique<Files>()), prefix_(prefix), dtype_(dtype) {
  if (dtype_size(dtype) == 0 || dtype == 6 || dtype == 7)
    throw DataError("dataset writer: dtype code " + std::to_string(int(dtype)) + " is not an integer type");
  if (const auto dir = fs::path(prefix).parent_path(); !dir.empty()) fs::create_directories(dir);
  f_->bin_tmp = prefix + ".bin.tmp";
  f_->lengths_tmp = prefix + ".lengths.tmp";
  f_->docs_tmp = prefix + ".docs.tmp";
  f_->bin = open_write(f_->bin_tmp);
  f_->lengths = open_write(f_->lengths_tmp);
  f_->docs = open_write(f_->docs_tmp);
}

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (finished_) return;
  const Files& f = *f_;
  std::error_code ec;
  for (const auto& p : {f.bin_tmp, f.lengths_tmp, f.docs_tmp}) fs::remove(p, ec);
}

void IndexedDatasetWriter::add_sequence(std::span<const int32_t> tokens) {
  if (tokens.size() > size_t(std::numeric_limits<int32_t>::max()))
    throw DataError("dataset writer: a sequence of " + std::to_string(tokens.size()) + " tokens exceeds int32 lengths");
  const size_t es = dtype_size(dtype_);
  auto& buf = f_->buffer;
  buf.resize(tokens.size() * es);
  int64_t lo = 0, hi = std::numeric_limits<int32_t>::max();
  if (dtype_ == 1) hi = 255;
  if (dtype_ == 2) lo = -128, hi = 127;
  if (dtype_ == 3) lo = -32768, hi = 32767;
  if (dtype_ == 8) hi = 65535;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t t = tokens[i];
    if (t < lo || t > hi)
      throw DataError("dataset writer: token id " + std::to_string(t) + " does not fit dtype code " +
                      std::to_string(int(dtype_)) + " of '" + prefix_ + "' (use int32 for vocabularies >= 65,500)");
    switch (es) {
      case 1: buf[i] = static_cast<unsigned char>(t); break;
      case 2: { const auto v = static_cast<uint16_t>(t); std::memcpy(&buf[2 * i], &v, 2); break; }
      case 4: { const auto v = static_cast<int32_t>(t); std::memcpy(&buf[4 * i], &v, 4); break; }
      case 8: { const auto v = static_cast<int64_t>(t); std::memcpy(&buf[8 * i], &v, 8); break; }
    }
  }
  put(f_->bin, buf.data(), buf.size(), f_->bin_tmp);
  const auto len = static_cast<int32_t>(tokens.size());
  put(f_->lengths, &len, 4, f_->lengths_tmp);
  ++sequences_;
  tokens_ += int64_t(tokens.size());
  bytes_ += int64_t(buf.size());
}

void IndexedDatasetWriter::end_document() {
  put(f_->docs, &sequences_, 8, f_->docs_tmp);
  ++documents_;
}

void IndexedDatasetWriter::finish() {
  Files& f = *f_;
  for (std::FILE** fp : {&f.bin, &f.lengths, &f.docs}) {
    if (std::fclose(*fp) != 0) throw DataError("closing '" + prefix_ + "' temporary files failed (disk full?)");
    *fp = nullptr;
  }
  const std::string idx_tmp = prefix_ + ".idx.tmp";
  {
    std::FILE* idx = open_write(idx_tmp);
    struct Closer {
      std::FILE* f;
      ~Closer() { if (f) std::fclose(f); }
    } closer{idx};
    const uint64_t version = 1, n = uint64_t(sequences_), d = uint64_t(documents_) + 1;
    put(idx, kMagic, 9, idx_tmp);
    put(idx, &version, 8, idx_tmp);
    put(idx, &dtype_, 1, idx_tmp);
    put(idx, &n, 8, idx_tmp);
    put(idx, &d, 8, idx_tmp);
    // Two streaming passes over the spooled lengths: the lengths, then their prefix sums.
    std::vector<int32_t> chunk(1 << 16);
    for (int pass = 0; pass < 2; ++pass) {
      std::FILE* in = std::fopen(f.lengths_tmp.c_str(), "rb");
      if (!in) throw DataError("cannot reopen '" + f.lengths_tmp + "'");
      int64_t offset = 0;
      size_t got;
      while ((got = std::fread(chunk.data(), 4, chunk.size(), in)) > 0) {
        if (pass == 0) {
          put(idx, chunk.data(), got * 4, idx_tmp);
        } else {
          for (size_t i = 0; i < got; ++i) {
            put(idx, &offset, 8, idx_tmp);
            offset += int64_t(chunk[i]) * int64_t(dtype_size(dtype_));
          }
        }
      }
      std::fclose(in);
    }
    const int64_t zero = 0;
    put(idx, &zero, 8, idx_tmp);
    std::FILE* in = std::fopen(f.docs_tmp.c_str(), "rb");
    if (!in) throw DataError("cannot reopen '" + f.docs_tmp + "'");
    std::vector<int64_t> dchunk(1 << 15);
    size_t got;
    while ((got = std::fread(dchunk.data(), 8, dchunk.size(), in)) > 0) put(idx, dchunk.data(), got * 8, idx_tmp);
    std::fclose(in);
    closer.f = nullptr;
    if (std::fclose(idx) != 0) throw DataError("closing '" + idx_tmp + "' failed (disk full?)");
  }
  fs::rename(f.bin_tmp, prefix_ + ".bin");
  fs::rename(idx_tmp, prefix_ + ".idx");
  fs::remove(f.lengths_tmp);
  fs::remove(f.docs_tmp);
  finished_ = true;
}

}  // namespace hokusai
