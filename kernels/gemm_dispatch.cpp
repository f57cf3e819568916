// Run-time choice of the native GEMM's microkernels, and the per-CPU block-size table.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <optional>
#include <stdexcept>
#include <string>

#include "kernels/gemm.hpp"
#include "kernels/gemm_tuning.hpp"
#if defined(__x86_64__)
#include "kernels/x86/sgemm_avx512_tiles.hpp"
#endif

namespace hokusai::kernels {

bool gemm_isa_supported(GemmIsa isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  switch (isa) {
    case GemmIsa::automatic:
    case GemmIsa::generic: return true;
    case GemmIsa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GemmIsa::avx512: return __builtin_cpu_supports("avx512f");
    case GemmIsa::avx512bf16: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    case GemmIsa::amx: {
      // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE (GCC 12's __builtin_cpu_supports has
      // no AMX names); then the OS must grant the tile state. Asked once: every GEMM call whose
      // context names the ISA comes here, and under a hypervisor each CPUID traps to it (on a
      // KVM Xeon that was 9.6% of a bf16 training step).
      static const bool amx = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
        return (d >> 22 & 1) && (d >> 24 & 1) && __builtin_cpu_supports("avx512bf16") && amx_permitted();
      }();
      return amx;
    }
    case GemmIsa::sve: return false;
  }
  return false;
#elif defined(__ARM_FEATURE_SVE)
  // An SVE build runs only on SVE CPUs (a fixed-length build also checks the length at start:
  // kernels/sve/vector_length.cpp).
  return isa == GemmIsa::automatic || isa == GemmIsa::generic || isa == GemmIsa::sve;
#else
  return isa == GemmIsa::automatic || isa == GemmIsa::generic;
#endif
}

GemmIsa resolve_gemm_isa(GemmIsa requested) {
  if (requested == GemmIsa::automatic) {
    // Read once: the environment does not change under a running process.
    static const GemmIsa chosen = [] {
      if (const char* env = std::getenv("HOKUSAI_GEMM_ISA"); env && *env) {
        const auto forced_or = value_named<GemmIsa>(env);
        if (!forced_or)
          throw std::invalid_argument("HOKUSAI_GEMM_ISA=" + std::string(env) + ": not one of: " + name_list<GemmIsa>());
        const GemmIsa forced = *forced_or;
        if (!gemm_isa_supported(forced))
          throw std::runtime_error("HOKUSAI_GEMM_ISA=" + std::string(env) + ": this CPU does not run it");
        return forced;
      }
      for (GemmIsa isa : {GemmIsa::amx, GemmIsa::avx512bf16, GemmIsa::avx512, GemmIsa::avx2, GemmIsa::sve})
        if (gemm_isa_supported(isa)) return isa;
      return GemmIsa::generic;
    }();
    return chosen;
  }
  if (!gemm_isa_supported(requested))
    throw std::runtime_error("GEMM ISA " + std::string(name_of(requested)) + " is not supported by this CPU");
  return requested;
}

CpuModel this_cpu_model() {
  CpuModel cpu;
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return cpu;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4), std::memcpy(vendor + 4, &d, 4), std::memcpy(vendor + 8, &c, 4);
  cpu.vendor = vendor;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return cpu;
  const int family = int(a >> 8 & 0xf), model = int(a >> 4 & 0xf);
  cpu.family = family == 0xf ? family + int(a >> 20 & 0xff) : family;
  cpu.model = family == 0x6 || family == 0xf ? model + (int(a >> 16 & 0xf) << 4) : model;
#endif
  return cpu;
}

int64_t this_cpu_l2_bytes() {
#if defined(_SC_LEVEL2_CACHE_SIZE)
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return l2 > 0 ? int64_t(l2) : 0;
#else
  return 0;
#endif
}

ChosenBlocks blocks_for_cpu(const char* kernel, BlockSizes table, int nr, int element_bytes, const CpuModel& cpu,
                            int64_t l2_bytes) {
  // A measured entry first: it may change the split too (so the rule applied to its own result
  // finds the entry again).
  for (const CpuBlocks& e : kCpuBlocks)
    if (std::strcmp(e.kernel, kernel) == 0 && cpu.vendor == e.vendor && cpu.family == e.family &&
        cpu.model >= e.model_lo && cpu.model <= e.model_hi)
      return {e.blocks, e.ukernel ? std::string(e.why) + "; microkernel " + e.ukernel : std::string(e.why), e.ukernel};
  if (table.split != ThreadSplit::columns) {
    const bool rows = table.split == ThreadSplit::rows;
    return {table, std::string("the kernel's table (its threads split ") +
                       (rows ? "the rows" : "each product along the side with more tiles") +
                       (table.private_blocks ? ", each packing its own blocks" : rows ? " and share one B block" : "") +
                       (table.a_once ? ", A packed once per k block where that saves packing" : "") + ")"};
  }
  if (l2_bytes > 0) {
    const double row = double(table.kc) * element_bytes;  // bytes per column of the B block
    const int64_t fitted = int64_t((kL2Share * double(l2_bytes) - double(table.mc) * row) / row) / nr * nr;
    if (fitted >= kMinFittedNc) {
      BlockSizes b = table;
      b.nc = fitted;
      // More column blocks than the table's: A packed once per k block, not once per column block
      // (idempotent: the rule applied to its own result gives it again).
      b.a_once = table.a_once || fitted < table.nc;
      return {b, "fitted to this CPU's " + std::to_string(l2_bytes >> 10) + " KiB L2 (B + A blocks " +
                     std::to_string(int(kL2Share * 100)) + "% of it" + (b.a_once ? ", A packed once per k block" : "") +
                     "; not measured on this CPU model)"};
    }
    return {table, "the kernel's table (this CPU's " + std::to_string(l2_bytes >> 10) +
                       " KiB L2 is too small to hold a B block: it streams from L3)"};
  }
  return {table, "the kernel's table (this CPU's L2 size is unknown)"};
}

#if defined(__x86_64__)
// Here, not beside the table: kernels/x86/sgemm_avx512.cpp is compiled for AVX-512, and this runs
// on any x86 CPU (bench_gemm looks a name up before it checks the ISA).
const SgemmTileCandidate* find_tile_candidate(std::string_view name) {
  for (int i = 0; i < kAvx512TileCandidateCount; ++i)
    if (name == kAvx512TileCandidates[i].name) return &kAvx512TileCandidates[i];
  return nullptr;
}

namespace {

// A kernel of the table with its blocks chosen for this CPU (blocks_for_cpu; only the x86
// kernels split the columns), and the microkernel its entry names, if any (a candidate of the
// same tile: the same bits). `name` stays the tile's: it is what the entries are found by.
SgemmKernel on_this_cpu(SgemmKernel k) {
  const ChosenBlocks chosen = blocks_for_cpu(k.name, k.blocks, k.nr, 4, this_cpu_model(), this_cpu_l2_bytes());
  k.blocks = chosen.blocks;
  if (chosen.ukernel) {
    const SgemmTileCandidate* c = find_tile_candidate(chosen.ukernel);
    if (!c || c->mr != k.mr || c->nr != k.nr)  // a table error: caught by test_gemm on every x86 CPU
      throw std::logic_error(std::string("kCpuBlocks: the entry for ") + k.name + " names microkernel " +
                             chosen.ukernel + ", not a candidate of its tile");
    k.ukernel = c->ukernel;
  }
  return k;
}
SbgemmKernel on_this_cpu(SbgemmKernel k) {  // 16-bit panels: 2 bytes per element
  k.blocks = blocks_for_cpu(k.name, k.blocks, k.nr, 2, this_cpu_model(), this_cpu_l2_bytes()).blocks;
  return k;
}

}  // namespace
#endif

const char* blocks_variable(bool half) { return half ? "HOKUSAI_GEMM_HALF_BLOCKS" : "HOKUSAI_GEMM_BLOCKS"; }

const char* blocks_variable_value(bool half) {
  // Read once: the environment does not change under a running process, and every product asks.
  static const char* const fp32 = std::getenv(blocks_variable(false));
  static const char* const half16 = std::getenv(blocks_variable(true));
  const char* v = half ? half16 : fp32;
  return v && *v ? v : nullptr;
}

BlockSizes blocks_from_environment(bool half, BlockSizes table, const char* kernel, int mr, int nr, int k_step) {
  const char* const value = blocks_variable_value(half);
  if (!value) return table;
  BlockSizes b = table;
  // Three integers, then nothing or a comma and a split name: the whole value, nothing after it.
  char split[16] = "";
  int used = -1, used_split = -1;
  const int got = std::sscanf(value, "%ld,%ld,%ld%n,%15[a-z]%n", &b.mc, &b.kc, &b.nc, &used, split, &used_split);
  const size_t length = std::strlen(value);
  const bool whole = (got == 3 && used >= 0 && size_t(used) == length) ||
                     (got == 4 && used_split >= 0 && size_t(used_split) == length);
  const std::optional<ThreadSplit> how = got == 4 ? value_named<ThreadSplit>(split) : table.split;
  const int64_t min_kc = std::max(2, k_step);
  if (!whole || b.mc < mr || b.kc < min_kc || b.nc < nr || !how)
    throw std::runtime_error(std::string(blocks_variable(half)) + "='" + value + "': expected mc,kc,nc or mc,kc,nc,SPLIT with mc >= " +
                             std::to_string(mr) + ", kc >= " + std::to_string(min_kc) + ", nc >= " + std::to_string(nr) +
                             " for " + kernel + ", and SPLIT one of " + name_list<ThreadSplit>() +
                             "; unset it for this CPU's own blocks");
  b.split = *how;
  return rounded_to_tile(b, mr, nr);
}

namespace {
// The table's choice for a kernel, or the environment's (named, with the table's after it).
ChosenBlocks chosen(bool half, const char* name, BlockSizes blocks, int mr, int nr, int k_step, int element_bytes) {
  // The kernel's blocks are already this CPU's; the rule gives them again (only nc was fitted).
  ChosenBlocks c = blocks_for_cpu(name, blocks, nr, element_bytes, this_cpu_model(), this_cpu_l2_bytes());
  if (const char* value = blocks_variable_value(half)) {
    const BlockSizes own = c.blocks;
    c.blocks = blocks_from_environment(half, own, name, mr, nr, k_step);
    c.why = std::string("set by ") + blocks_variable(half) + "=" + value + " (this CPU's own: mc " +
            std::to_string(own.mc) + ", kc " + std::to_string(own.kc) + ", nc " + std::to_string(own.nc) + ", " + c.why +
            ")";
  }
  return c;
}
}  // namespace

ChosenBlocks sgemm_blocks(GemmIsa isa) {
  const SgemmKernel& k = sgemm_kernel(isa);
  return chosen(false, k.name, k.blocks, k.mr, k.nr, 1, 4);
}

ChosenBlocks sbgemm_blocks(GemmIsa isa) {
  const SbgemmKernel& k = sbgemm_kernel(isa);
  return chosen(true, k.name, k.blocks, k.mr, k.nr, k.k_step, 2);
}

const SgemmKernel& sgemm_kernel(GemmIsa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case GemmIsa::avx512:
    case GemmIsa::avx512bf16:
    case GemmIsa::amx: {
      static const SgemmKernel k = on_this_cpu(kSgemmAvx512);
      return k;
    }
    case GemmIsa::avx2: {
      static const SgemmKernel k = on_this_cpu(kSgemmAvx2);
      return k;
    }
#endif
#if defined(__ARM_FEATURE_SVE)
    case GemmIsa::sve: {  // NR = 2 vectors: the tile and its name follow the vector length
      static const std::string name = "sgemm_sve_10x" + std::to_string(2 * sve_vector_bits() / 32);
      static const SgemmKernel kern{name.c_str(), 10, 2 * sve_vector_bits() / 32,
                                    sgemm_sve_10x2v, kSveBlocks};
      return kern;
    }
#endif
    default: return kSgemmGeneric;
  }
}

const SbgemmKernel& sbgemm_kernel(GemmIsa isa) {
#if defined(__x86_64__)
  if (isa == GemmIsa::amx) return kSbgemmAmx;
  if (isa == GemmIsa::avx512bf16) {
    static const SbgemmKernel k = on_this_cpu(kSbgemmAvx512Bf16);
    return k;
  }
  throw std::runtime_error("gemm_bf16 needs isa amx or avx512bf16; this context resolves to " +
                           std::string(name_of(isa)));
#else
  (void)isa;
  throw std::runtime_error("gemm_bf16: this build has no bf16 kernel (x86 only: AMX or AVX512_BF16)");
#endif
}

std::string_view sgemm_kernel_name(GemmIsa isa) { return sgemm_kernel(resolve_gemm_isa(isa)).name; }

}  // namespace hokusai::kernels
