// libFuzzer target: the GPT sample-index cache (src/data/sample_index.cpp), a file every rank
// memory-maps and trusts. Input: the cache file; its magic and key (the first 16 bytes) are
// forced to those of a fixed dataset (fuzz_fixtures.hpp), so the fuzzer explores the arrays, not the name
// check. A cache that opens must only ever yield in-range tokens.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "fuzz_fixtures.hpp"
#include "fuzz_support.hpp"
#include "hokusai/data.hpp"

namespace {

using namespace hokusai;
using fuzz::SampleIndexFixture;
const SampleIndexFixture& fixture() {
  static const SampleIndexFixture f(fuzz::scratch());
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const SampleIndexFixture& f = fixture();
  std::vector<unsigned char> file(data, data + size);
  if (!file.empty()) std::memcpy(file.data(), f.head, std::min<size_t>(16, file.size()));
  fuzz::write_file(f.cache_file, file.data(), file.size());
  fuzz::expect_clean(f.cache_file, [&] {
    GptDataset ds(f.data, SampleIndexFixture::kFirst, SampleIndexFixture::kLast, SampleIndexFixture::kSeqLen, SampleIndexFixture::kSamples, SampleIndexFixture::kSeed, f.cache_dir);
    if (ds.built_cache()) fuzz::finding("rebuilt the cache", "the harness wrote it");
    std::vector<int32_t> out(SampleIndexFixture::kSeqLen + 1, -1);
    for (int64_t i = 0; i < ds.size(); ++i) {
      ds.sample(i, out.data());
      for (int32_t t : out)
        if (t < 0 || t >= SampleIndexFixture::kVocab) fuzz::finding("token out of range", std::to_string(t));
    }
  });
  return 0;
}
