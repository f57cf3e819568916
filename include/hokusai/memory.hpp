// Large buffers on transparent huge pages (kernels.huge_pages).
//
// The model's arenas (parameters, gradients, activations) and the optimizer's moments are
// gigabytes read in streams every step; on 4 KiB pages every 4 KiB of them is a TLB miss, and
// under a hypervisor each miss is a two-dimensional page walk. madvise(MADV_HUGEPAGE) asks Linux
// to back a range with huge pages (2 MiB on x86-64) where /sys/kernel/mm/transparent_hugepage/enabled
// is "madvise" (the usual default) or "always"; "never" leaves it on base pages. Values never
// change: only where the bytes live. Measured in docs/performance.md ("the arenas on huge pages").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hokusai {

// The smallest buffer assign_zeroed advises. A 4 KiB-page TLB reaches 6-8 MiB (1,536-2,048
// second-level entries); what the step streams through is far beyond that (gpt2-124m: four
// arenas of ~500 MB and one of 400-700 MB). Smaller buffers stay on 4 KiB pages: under a
// hypervisor that backs guest memory on first touch, a 2 MiB fault measured dearer per byte than
// 4 KiB ones (docs/performance.md), and a small model gains nothing for it.
inline constexpr size_t kHugePageMinBytes = size_t(64) << 20;

// Advises the part of [p, p + bytes) made of whole base pages (madvise's unit: 4 KiB on x86-64,
// 4 or 64 KiB on aarch64) for huge pages, before its first touch (pages already faulted in stay
// small until the kernel's khugepaged merges them). Linux then backs each huge-page-aligned
// stretch inside it with one huge page (huge_page_bytes(): 2 MiB with 4 KiB base pages, 512 MiB
// with 64 KiB ones). Returns the bytes advised: 0 for a range without a whole base page, where
// madvise refuses (no THP in this kernel) or off Linux.
size_t advise_huge_pages(void* p, size_t bytes);

// /sys/kernel/mm/transparent_hugepage/enabled's chosen mode ("always", "madvise", "never"), or
// "unavailable" where the file is missing (another OS, a kernel without THP).
std::string huge_page_mode();
// The transparent huge page's size (/sys/kernel/mm/transparent_hugepage/hpage_pmd_size); 0 where
// unavailable.
size_t huge_page_bytes();

// v := n zeros, with its storage advised for huge pages first when `huge_pages` and it holds at
// least kHugePageMinBytes (the buffer is allocated, advised, then zeroed: the zeroing is its first
// touch). The old storage is freed. Returns the bytes advised.
template <typename T, typename A>
size_t assign_zeroed(std::vector<T, A>& v, size_t n, bool huge_pages) {
  std::vector<T, A>().swap(v);
  v.reserve(n);
  const size_t advised =
      huge_pages && n * sizeof(T) >= kHugePageMinBytes ? advise_huge_pages(v.data(), n * sizeof(T)) : 0;
  v.assign(n, T{});
  return advised;
}

}  // namespace hokusai
