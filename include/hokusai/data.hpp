// Training data of the foundation: the byte-level tokenizer, plain-text corpora (one document
// per line) and a deterministic sampler indexed by a consumed-samples counter. The Megatron
// indexed-dataset path replaces the text reader in the data issue; the sampler contract (sample
// i is a pure function of seed and i) stays.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace hokusai {

class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// 256 byte values plus an end-of-document token: 257 ids.
struct ByteTokenizer {
  static constexpr int32_t kEndOfDocument = 256;
  static constexpr int32_t kVocabSize = 257;
  static std::vector<int32_t> encode(std::string_view text);
  // End-of-document becomes a newline; ids outside [0, 257) become '?'.
  static std::string decode(const std::vector<int32_t>& ids);
};

// Token streams: each document's bytes followed by an end-of-document token.
struct TokenCorpus {
  std::vector<int32_t> train, valid;
  int64_t train_documents = 0, valid_documents = 0;
};

// Reads text files (one document per line, empty lines skipped); the last `valid_fraction` of
// the documents (at least one when > 0) go to `valid`. Throws DataError naming the file.
TokenCorpus load_text_corpus(const std::vector<std::string>& paths, double valid_fraction);

// Resolves a data path: as given if it exists, else relative to each of `search_dirs` in order.
// Throws DataError listing where it looked.
std::string resolve_data_path(const std::string& path, const std::vector<std::string>& search_dirs);

// Sample i = the seq_len+1 tokens starting at a position that is a pure function of (seed, i),
// split into inputs and next-token targets. A run that has consumed k samples continues at
// sample k, so a resumed run sees exactly the samples of an uninterrupted one.
class WindowSampler {
 public:
  WindowSampler(const std::vector<int32_t>& stream, int64_t seq_len, uint64_t seed);
  // Fills tokens and targets, each (count, seq_len), with samples first .. first+count-1.
  void fill(int64_t first, int64_t count, int32_t* tokens, int32_t* targets) const;

 private:
  const std::vector<int32_t>& stream_;
  int64_t seq_len_;
  uint64_t seed_;
};

}  // namespace hokusai
