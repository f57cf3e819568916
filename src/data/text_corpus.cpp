#include <algorithm>
#include <filesystem>
#include <fstream>

#include "hokusai/data.hpp"
#include "hokusai/hash.hpp"

namespace hokusai {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id == kEndOfDocument)
      out += '\n';
    else if (id >= 0 && id < 256)
      out += static_cast<char>(id);
    else
      out += '?';
  }
  return out;
}

std::string resolve_data_path(const std::string& path, const std::vector<std::string>& search_dirs) {
  namespace fs = std::filesystem;
  if (fs::exists(path)) return path;
  std::string tried = "'" + path + "'";
  if (fs::path(path).is_relative()) {
    for (const auto& dir : search_dirs) {
      if (dir.empty()) continue;
      const fs::path candidate = fs::path(dir) / path;
      if (fs::exists(candidate)) return candidate.string();
      tried += ", '" + candidate.string() + "'";
    }
  }
  throw DataError("data.paths: file '" + path + "' not found (tried " + tried +
                  "): fix the path or run from the directory that holds it");
}

TokenCorpus load_text_corpus(const std::vector<std::string>& paths, double valid_fraction) {
  std::vector<std::string> docs;
  for (const auto& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw DataError("data.paths: cannot open '" + path + "' for reading");
    std::string line;
    const size_t before = docs.size();
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) docs.push_back(std::move(line));
    }
    if (in.bad()) throw DataError("data.paths: read error in '" + path + "'");
    if (docs.size() == before) throw DataError("data.paths: '" + path + "' holds no documents (empty file?)");
  }
  TokenCorpus c;
  const auto n = int64_t(docs.size());
  int64_t n_valid = valid_fraction > 0 ? std::max<int64_t>(1, int64_t(double(n) * valid_fraction)) : 0;
  if (n_valid >= n)
    throw DataError("data.valid_fraction: " + std::to_string(n) + " documents leave none for training");
  for (int64_t i = 0; i < n; ++i) {
    auto& dst = i < n - n_valid ? c.train : c.valid;
    for (unsigned char ch : docs[size_t(i)]) dst.push_back(ch);
    dst.push_back(ByteTokenizer::kEndOfDocument);
  }
  c.train_documents = n - n_valid;
  c.valid_documents = n_valid;
  return c;
}

WindowSampler::WindowSampler(const std::vector<int32_t>& stream, int64_t seq_len, uint64_t seed)
    : stream_(stream), seq_len_(seq_len), seed_(seed) {
  if (int64_t(stream.size()) < seq_len + 1)
    throw DataError("data: the token stream holds " + std::to_string(stream.size()) +
                    " tokens, fewer than train.seq_len+1 = " + std::to_string(seq_len + 1) +
                    ": add data or shorten train.seq_len");
}

void WindowSampler::fill(int64_t first, int64_t count, int32_t* tokens, int32_t* targets) const {
  const uint64_t starts = uint64_t(stream_.size()) - uint64_t(seq_len_);
  for (int64_t s = 0; s < count; ++s) {
    const uint64_t start = splitmix64(seed_ ^ splitmix64(uint64_t(first + s))) % starts;
    const int32_t* src = stream_.data() + start;
    std::copy_n(src, seq_len_, tokens + s * seq_len_);
    std::copy_n(src + 1, seq_len_, targets + s * seq_len_);
  }
}

}  // namespace hokusai
