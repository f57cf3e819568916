// Run-time choice of the native GEMM's microkernels, and the per-CPU block-size table.
#include <cstdlib>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <stdexcept>
#include <string>

#include "kernels/gemm.hpp"
#include "kernels/gemm_tuning.hpp"

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
      // no AMX names); then the OS must grant the tile state.
      unsigned a = 0, b = 0, c = 0, d = 0;
      if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
      return (d >> 22 & 1) && (d >> 24 & 1) && __builtin_cpu_supports("avx512bf16") && amx_permitted();
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

const SgemmKernel& sgemm_kernel(GemmIsa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case GemmIsa::avx512:
    case GemmIsa::avx512bf16:
    case GemmIsa::amx: return kSgemmAvx512;
    case GemmIsa::avx2: return kSgemmAvx2;
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
  if (isa == GemmIsa::avx512bf16) return kSbgemmAvx512Bf16;
  throw std::runtime_error("gemm_bf16 needs isa amx or avx512bf16; this context resolves to " +
                           std::string(name_of(isa)));
#else
  (void)isa;
  throw std::runtime_error("gemm_bf16: this build has no bf16 kernel (x86 only: AMX or AVX512_BF16)");
#endif
}

const SbgemmKernel& shgemm_kernel(GemmIsa isa) {
#if defined(__ARM_FEATURE_SVE)
  if (isa != GemmIsa::sve)
    throw std::runtime_error("gemm_fp16 needs isa sve; this context resolves to " + std::string(name_of(isa)));
  static const std::string name = "shgemm_sve_10x" + std::to_string(2 * sve_vector_bits() / 32);
  static const SbgemmKernel kern{name.c_str(), 10, 2 * sve_vector_bits() / 32, shgemm_sve_10x2v, kSveFp16Blocks,
                                 pack_fp16_sve};
  return kern;
#else
  (void)isa;
  throw std::runtime_error("gemm_fp16: this build has no fp16 kernel (SVE builds only)");
#endif
}

std::string_view sgemm_kernel_name(GemmIsa isa) { return sgemm_kernel(resolve_gemm_isa(isa)).name; }

}  // namespace hokusai::kernels
