// Fixed inputs shared by the fuzz targets and the seed writer (fuzz_seeds.cpp), so the committed
// seeds match what the targets expect.
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "hokusai/data.hpp"

namespace hokusai::fuzz {

// A five-document uint16 dataset and the sample index of its first split, built in `dir`.
struct SampleIndexFixture {
  static constexpr int64_t kSeqLen = 8, kSamples = 12, kFirst = 0, kLast = 5, kVocab = 100;
  static constexpr uint64_t kSeed = 1234;
  std::shared_ptr<const IndexedDataset> data;
  std::string cache_dir, cache_file;
  unsigned char head[16] = {};  // magic and key of the cache file

  explicit SampleIndexFixture(const std::filesystem::path& dir) {
    const auto prefix = (dir / "docs").string();
    IndexedDatasetWriter w(prefix, 8);  // uint16 tokens
    for (int s = 0; s < kLast; ++s) {  // sequences of 3, 6, ..., 15 tokens
      std::vector<int32_t> tok(size_t(3 + 3 * s));
      for (size_t i = 0; i < tok.size(); ++i) tok[i] = int32_t((size_t(s) * 7 + i) % kVocab);
      w.add_sequence(tok);
      w.end_document();
    }
    w.finish();
    data = std::make_shared<IndexedDataset>(prefix);
    cache_dir = (dir / "cache").string();
    GptDataset built(data, kFirst, kLast, kSeqLen, kSamples, kSeed, cache_dir);
    cache_file = built.cache_file();
    std::ifstream in(cache_file, std::ios::binary);
    in.read(reinterpret_cast<char*>(head), sizeof head);
  }
};

}  // namespace hokusai::fuzz
