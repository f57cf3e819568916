// libFuzzer target: the Megatron indexed dataset reader (.idx + .bin, src/data/indexed_dataset.cpp).
// Input: u32 little-endian L, then L bytes of .idx, then the .bin.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_support.hpp"
#include "hokusai/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hokusai;
  if (size < 4) return 0;
  uint32_t idx_len = 0;
  std::memcpy(&idx_len, data, 4);
  idx_len = std::min<uint32_t>(idx_len, uint32_t(size - 4));
  const auto prefix = fuzz::scratch() / "corpus";
  fuzz::write_file(prefix.string() + ".idx", data + 4, idx_len);
  fuzz::write_file(prefix.string() + ".bin", data + 4 + idx_len, size - 4 - idx_len);
  fuzz::expect_clean(prefix.string(), [&] {
    IndexedDataset ds(prefix.string());
    std::vector<int32_t> buf;
    int64_t seen = 0;
    for (int64_t s = 0; s < ds.sequences() && s < 4096; ++s) {
      const int64_t len = ds.length(s);
      if (len < 0 || ds.offset(s) < 0) fuzz::finding("accepted a negative length or offset", std::to_string(s));
      const int64_t take = std::min<int64_t>(len, 1 << 16);
      buf.resize(size_t(take));
      ds.read(s, 0, take, buf.data());
      if (len > 0) ds.read(s, len - 1, 1, buf.data());  // the last token
      seen += len;
    }
    if (ds.sequences() <= 4096 && seen != ds.total_tokens()) fuzz::finding("total_tokens disagrees", std::to_string(seen));
    for (int64_t d = 0; d <= ds.documents(); ++d) (void)ds.document_start(d);
  });
  return 0;
}
