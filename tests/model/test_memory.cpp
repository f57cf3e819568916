// kernels.huge_pages (hokusai/memory.hpp): a range's whole base pages are advised and nothing
// else, zeroed arenas land on huge pages where Linux's transparent huge pages are in madvise mode
// (read back from /proc/self/smaps) and on base pages without the advice, and a model built
// either way computes the same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "comm/grid.hpp"
#include "hokusai/memory.hpp"
#include "hokusai/model.hpp"

namespace hokusai {
namespace {

// kB of AnonHugePages over the mappings of /proc/self/smaps that overlap [p, p + bytes) (-1:
// none does). madvise splits a mapping at the advised range's edges, so a buffer spans several.
long anon_huge_kb(const void* p, size_t bytes) {
  std::ifstream in("/proc/self/smaps");
  const auto begin = reinterpret_cast<uintptr_t>(p), end = begin + bytes;
  std::string line;
  bool inside = false;
  long total = -1;
  while (std::getline(in, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < line.find(' ')) {
      inside = lo < end && begin < hi;
      continue;
    }
    if (inside && line.rfind("AnonHugePages:", 0) == 0) total = std::max(total, 0L) + std::stol(line.substr(14));
  }
  return total;
}

TEST(HugePages, AdviceCoversTheWholeBasePagesOnly) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  void* raw = std::aligned_alloc(page, 8 * page);
  ASSERT_NE(raw, nullptr);
  char* base = static_cast<char*>(raw);
  if (advise_huge_pages(base, 8 * page) == 0) {
    std::free(raw);
    GTEST_SKIP() << "madvise(MADV_HUGEPAGE) refused: no transparent huge pages in this kernel";
  }
  EXPECT_EQ(advise_huge_pages(base, 8 * page), 8 * page);
  // Starting 16 bytes in and ending 16 bytes short: the six whole pages between.
  EXPECT_EQ(advise_huge_pages(base + 16, 7 * page), 6 * page);
  EXPECT_EQ(advise_huge_pages(base + 16, page), 0u) << "no whole page in [16, page + 16)";
  EXPECT_EQ(advise_huge_pages(base, page - 1), 0u);
  EXPECT_EQ(advise_huge_pages(nullptr, 8 * page), 0u);
  std::free(raw);
}

TEST(HugePages, ZeroedArenasLandOnHugePagesOnlyWhenAdvised) {
  const std::string mode = huge_page_mode();
  if (mode != "madvise")
    GTEST_SKIP() << "transparent huge pages are '" << mode << "' here; the advice is only observable in madvise mode";
  const size_t huge_page = huge_page_bytes();
  if (huge_page != (size_t(2) << 20))
    GTEST_SKIP() << "huge pages of " << huge_page << " bytes: a 64 MiB arena may hold none";
  // A positive control first: 8 MiB advised by a direct madvise. Where even that shows no huge
  // page (an emulator that takes madvise as a no-op, no free 2 MiB page), this process cannot see
  // the advice work, so the arenas below are not judged.
  void* control = std::aligned_alloc(huge_page, 4 * huge_page);
  ASSERT_NE(control, nullptr);
  const bool advised_control = madvise(control, 4 * huge_page, MADV_HUGEPAGE) == 0;
  std::memset(control, 1, 4 * huge_page);
  const long control_kb = anon_huge_kb(control, 4 * huge_page);
  std::free(control);
  if (!advised_control || control_kb <= 0)
    GTEST_SKIP() << "a directly advised buffer got no huge page here (" << control_kb
                 << " kB in /proc/self/smaps): an emulator, or no free 2 MiB page";
  const size_t n = kHugePageMinBytes / sizeof(float) + 4096;  // the smallest advised arena and 16 KiB
  std::vector<float> advised, plain;
  const size_t bytes = assign_zeroed(advised, n, true);
  assign_zeroed(plain, n, false);
  ASSERT_GE(bytes, kHugePageMinBytes);
  // Below the threshold: not advised.
  std::vector<float> small;
  EXPECT_EQ(assign_zeroed(small, kHugePageMinBytes / sizeof(float) - 1, true), 0u);
  ASSERT_EQ(advised.size(), n);
  for (size_t i = 0; i < n; i += 4096) ASSERT_EQ(advised[i], 0.0f);
  const long huge = anon_huge_kb(advised.data(), n * sizeof(float)), none = anon_huge_kb(plain.data(), n * sizeof(float));
  ASSERT_GE(huge, 0) << "the arena's mapping is not in /proc/self/smaps";
  EXPECT_GE(huge, long(kHugePageMinBytes >> 11)) << "the advised arena is on 4 KiB pages";
  EXPECT_EQ(none, 0) << "an arena without the advice is on huge pages in madvise mode";
}

// Where the bytes live changes no value: a gpt2's logits and gradients bit for bit. Narrow and
// short but with a wide vocabulary, so its parameter and gradient arenas (~70 MB) pass
// kHugePageMinBytes while its products stay cheap (4 rows).
TEST(HugePages, ModelComputesTheSameBits) {
  ModelConfig cfg;
  cfg.family = Family::gpt2;
  cfg.layers = 2;
  cfg.hidden = 16;
  cfg.heads = 2;
  cfg.ffn_hidden = 64;
  cfg.vocab_size = 1100000;
  cfg.max_seq_len = 4;
  const ModelDims d = ModelDims::from(cfg, comm::ParallelGrid::single());
  const int64_t B = 1, T = 4;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int64_t i = 0; i < B * T; ++i) tokens[i] = int32_t(i * 370001 % 1100000), targets[i] = int32_t(i * 110017 % 1100000);
  Model<float> small(d, B, T, 1, Recompute::none, Attention::flash, kernels::Precision::fp32, false);
  Model<float> huge(d, B, T, 1, Recompute::none, Attention::flash, kernels::Precision::fp32, true);
  EXPECT_EQ(small.huge_page_bytes(), 0);
  if (huge_page_mode() != "unavailable") {
    EXPECT_GE(huge.huge_page_bytes(), 2 * int64_t(kHugePageMinBytes)) << "huge_pages = true advised too little";
  }
  const ComputeContext ctx{};
  std::vector<float> logits[2], grads[2];
  Model<float>* models[2] = {&small, &huge};
  for (int i = 0; i < 2; ++i) {
    models[i]->init(5);
    models[i]->zero_grads();
    models[i]->forward(ctx, tokens.data(), targets.data(), B, T);
    logits[i].assign(models[i]->logits(), models[i]->logits() + B * T * d.Vl);
    models[i]->backward(ctx, tokens.data(), targets.data(), 1.0f / float(B * T));
    grads[i].assign(models[i]->grads().begin(), models[i]->grads().end());
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  EXPECT_EQ(0, std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)));
  ASSERT_EQ(grads[0].size(), grads[1].size());
  EXPECT_EQ(0, std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)));
}

}  // namespace
}  // namespace hokusai
