// Training data: tokenizers, Megatron's indexed dataset (.bin/.idx, read and written), the GPT
// sample index, blending, and the loader that gives each data-parallel rank its slice.
//
// The position in the data is one number, the count of consumed samples: global sample i is a
// pure function of (datasets, weights, split, seq_len, seed, i). Step s, micro-batch m of
// data-parallel rank r reads samples  s*G + r*(G/dp) + m*B ... + B-1  (G global batch, B
// micro-batch), so the ranks' slices tile the global batch and a resumed run continues exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "hokusai/config.hpp"

namespace hokusai {


class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------- tokenizers
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t end_of_document() const = 0;
  virtual std::string name() const = 0;  // "byte" or "sentencepiece:<file>"
};

// 256 byte values plus an end-of-document token: 257 ids.
class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kEndOfDocument = 256;
  static constexpr int32_t kVocabSize = 257;
  std::vector<int32_t> encode(std::string_view text) const override;
  // End-of-document becomes a newline; ids outside [0, 257) become '?'.
  std::string decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return kVocabSize; }
  int32_t end_of_document() const override { return kEndOfDocument; }
  std::string name() const override { return "byte"; }
};

// kind: byte or sentencepiece (model_path: a SentencePiece .model file; its </s> id, or the
// vocabulary size when it has none, is the end-of-document token). Throws DataError.
std::unique_ptr<Tokenizer> make_tokenizer(TokenizerKind kind, const std::string& model_path);

// ------------------------------------------------------------------ Megatron indexed dataset
// Layout (little-endian): .idx = "MMIDIDX\0\0", u64 version 1, u8 dtype, u64 N sequences,
// u64 D (= documents + 1), i32 lengths[N], i64 byte offsets[N], i64 document_index[D];
// .bin = the token arrays back to back. dtype codes: 1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f64,
// 7 f32, 8 u16.
size_t dtype_size(uint8_t code);  // 0 for an unknown code
uint8_t dtype_for_vocab(int64_t vocab_size);  // 8 (uint16) below 65,500, else 4 (int32)

class MappedFile;  // read-only mmap, src/data/mapped_file.hpp

class IndexedDataset {
 public:
  // Opens prefix.idx and prefix.bin, memory-maps both, validates every field against the file
  // sizes. Throws DataError naming the file, the field and the expected value.
  explicit IndexedDataset(const std::string& prefix);
  ~IndexedDataset();
  IndexedDataset(IndexedDataset&&) noexcept;

  const std::string& prefix() const { return prefix_; }
  uint8_t dtype() const { return dtype_; }
  int64_t sequences() const { return n_; }
  int64_t documents() const { return d_ - 1; }
  // The arrays sit at unaligned offsets of the mapped .idx (34 + 4N ...): read through memcpy.
  int64_t length(int64_t seq) const;
  int64_t offset(int64_t seq) const;
  int64_t document_start(int64_t doc) const;  // first sequence of document doc; doc <= documents()
  int64_t total_tokens() const { return total_tokens_; }
  // Copies tokens [offset, offset+count) of sequence `seq` into out, converted to int32.
  void read(int64_t seq, int64_t offset, int64_t count, int32_t* out) const;
  // Identifies the file contents for caches: hash of the .idx header and sizes.
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  std::string prefix_;
  std::unique_ptr<MappedFile> idx_, bin_;
  uint8_t dtype_ = 0;
  int64_t n_ = 0, d_ = 0, total_tokens_ = 0;
  const unsigned char* lengths_ = nullptr;  // i32[N]
  const unsigned char* offsets_ = nullptr;  // i64[N]
  const unsigned char* doc_index_ = nullptr;  // i64[D]
  uint64_t fingerprint_ = 0;
};

// Streams a dataset to prefix.bin/.idx in constant memory (lengths and document boundaries are
// spooled to temporary files). Files appear under their final names only after finish().
class IndexedDatasetWriter {
 public:
  IndexedDatasetWriter(const std::string& prefix, uint8_t dtype);
  ~IndexedDatasetWriter();  // removes the temporary files when finish() was not reached
  void add_sequence(std::span<const int32_t> tokens);  // throws DataError if a token does not fit dtype
  void end_document();
  void finish();
  int64_t tokens() const { return tokens_; }
  int64_t documents() const { return documents_; }
  int64_t bytes() const { return bytes_; }

 private:
  struct Files;
  std::unique_ptr<Files> f_;
  std::string prefix_;
  uint8_t dtype_;
  int64_t sequences_ = 0, tokens_ = 0, documents_ = 0, bytes_ = 0;
  bool finished_ = false;
};

// ------------------------------------------------------------------------------ preprocessing
struct PreprocessOptions {
  std::vector<std::string> inputs;  // .txt (one document per line) or .jsonl/.json (one object per line)
  std::string output_prefix;
  std::string format = "auto";      // auto (by extension) | text | jsonl
  std::string json_key = "text";
  bool progress = true;             // a live line on a terminal, periodic lines otherwise
};
struct PreprocessStats {
  int64_t input_bytes = 0, documents = 0, tokens = 0;
  double seconds = 0;
};
PreprocessStats preprocess(const PreprocessOptions& opts, const Tokenizer& tok);

// ------------------------------------------------------------------------------ sample index
// Megatron's GPT dataset over sequences [first, last) of one indexed dataset: each epoch the
// sequences are shuffled (seeded Fisher-Yates) and concatenated; sample j covers stream tokens
// [j*T, j*T + T + 1); sample i of the dataset is sample shuffle[i], where shuffle permutes each
// block of one epoch's worth of samples (tokens per epoch / T) within itself. The index holds
// whole blocks, at least num_samples (size() says how many): sample i does not depend on
// num_samples, so longer runs and resumed runs read the same order. The three arrays are built
// once into one cache file and memory-mapped by every reader.
class GptDataset {
 public:
  GptDataset(std::shared_ptr<const IndexedDataset> data, int64_t first_seq, int64_t last_seq,
             int64_t seq_len, int64_t num_samples, uint64_t seed, const std::string& cache_dir);
  ~GptDataset();
  int64_t size() const { return num_samples_; }
  int64_t epochs() const { return epochs_; }
  const std::string& cache_file() const { return cache_file_; }
  bool built_cache() const { return built_; }  // this process wrote the cache file
  void sample(int64_t i, int32_t* out) const;  // seq_len + 1 tokens

 private:
  std::shared_ptr<const IndexedDataset> data_;
  int64_t seq_len_, num_samples_, epochs_ = 0;
  std::unique_ptr<MappedFile> cache_;
  // A column of the cache file: 4-byte entries when every value fits (12 bytes per sample, as
  // Megatron's int32 index), else 8.
  struct Column {
    const unsigned char* data = nullptr;
    size_t size = 0;
    int width = 8;
    int64_t operator[](size_t i) const;
  };
  [[noreturn]] void corrupt(int64_t i, const std::string& why) const;
  Column order_, starts_, shuffle_;  // starts_: (num_samples+1) x (order pos, offset)
  int64_t first_ = 0, last_ = 0;
  std::string cache_file_;
  bool built_ = false;
};

// ---------------------------------------------------------------------------------- blending
// Sample i comes from dataset k(i) chosen greedily so that every prefix of the sample stream
// keeps each dataset's count within one sample of weight*prefix (Megatron's blending rule).
class BlendedDataset {
 public:
  BlendedDataset(std::vector<std::shared_ptr<GptDataset>> parts, std::vector<double> weights,
                 int64_t num_samples, const std::string& cache_dir);
  ~BlendedDataset();
  int64_t size() const { return num_samples_; }
  int dataset_of(int64_t i) const;  // throws DataError naming the cache file when it is corrupt
  void sample(int64_t i, int32_t* out) const;

 private:
  std::vector<std::shared_ptr<GptDataset>> parts_;
  int64_t num_samples_;
  std::unique_ptr<MappedFile> cache_;
  std::span<const int16_t> dataset_;
  std::span<const int64_t> index_;
  std::string cache_file_;
};

// ------------------------------------------------------------------------------------ loader
// Everything the trainer needs: the tokenizer and the blended train/valid/test streams.
class DataLoader {
 public:
  enum Split { train = 0, valid = 1, test = 2 };
  // Resolves and (for .txt/.jsonl inputs) preprocesses data.paths into the cache, then builds or
  // maps the sample indexes for `samples[split]` samples of each split. Throws DataError.
  DataLoader(const Config& cfg, const std::vector<std::string>& search_dirs,
             const int64_t (&samples)[3], const std::function<void(const std::string&)>& log);
  ~DataLoader();
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  bool has(Split s) const { return bool(splits_[s]); }
  int64_t size(Split s) const;
  // Samples first .. first+count-1 of a split, as (count, seq_len) inputs and next-token
  // targets. Throws DataError when a token id is outside [0, model.vocab_size).
  void fill(Split s, int64_t first, int64_t count, int32_t* tokens, int32_t* targets) const;
  // Micro-batch `micro` for data-parallel rank `dp_rank` of the optimizer step whose global batch
  // starts at training sample `step_first_sample` (the samples consumed before it: step *
  // train.global_batch when the batch never changed).
  void fill_micro_batch(int64_t step_first_sample, int micro, int dp_rank, int32_t* tokens, int32_t* targets) const;

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::shared_ptr<const IndexedDataset>> datasets_;
  std::unique_ptr<BlendedDataset> splits_[3];
  int64_t seq_len_, micro_batch_, global_batch_, dp_, vocab_size_;
};

// Resolves a data path: as given if it exists, else relative to each of `search_dirs` in order.
// Throws DataError listing where it looked.
std::string resolve_data_path(const std::string& path, const std::vector<std::string>& search_dirs);

}  // namespace hokusai
