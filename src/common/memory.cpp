#include "hokusai/memory.hpp"

#include <fstream>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace hokusai {

size_t advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const long base = sysconf(_SC_PAGESIZE);
  if (base <= 0) return 0;
  const auto page = uintptr_t(base), begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t first = (begin + page - 1) / page * page, last = (begin + bytes) / page * page;
  if (p == nullptr || last <= first) return 0;
  if (madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE) != 0) return 0;
  return size_t(last - first);
#else
  (void)p;
  (void)bytes;
  return 0;
#endif
}

std::string huge_page_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!in || !std::getline(in, line)) return "unavailable";
  // "always [madvise] never": the bracketed word is the mode in force.
  const size_t open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "unavailable";
  return line.substr(open + 1, close - open - 1);
}

size_t huge_page_bytes() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
  size_t bytes = 0;
  return in >> bytes ? bytes : 0;
}

}  // namespace hokusai
