// Run-time choice of the native GEMM's microkernels, and the per-CPU block-size table.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/gemm.hpp"
#include "kernels/gemm_tuning.hpp"

namespace hokusai::kernels {

GemmIsa parse_gemm_isa(std::string_view name) {
  if (name == "automatic") return GemmIsa::automatic;
  if (name == "generic") return GemmIsa::generic;
  if (name == "avx2") return GemmIsa::avx2;
  if (name == "avx512") return GemmIsa::avx512;
  if (name == "avx512bf16") return GemmIsa::avx512bf16;
  throw std::invalid_argument("unknown GEMM ISA '" + std::string(name) +
                              "': expected automatic, generic, avx2, avx512 or avx512bf16");
}

std::string_view to_string(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::automatic: return "automatic";
    case GemmIsa::generic: return "generic";
    case GemmIsa::avx2: return "avx2";
    case GemmIsa::avx512: return "avx512";
    case GemmIsa::avx512bf16: return "avx512bf16";
  }
  return "?";
}

bool gemm_isa_supported(GemmIsa isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  switch (isa) {
    case GemmIsa::automatic:
    case GemmIsa::generic: return true;
    case GemmIsa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GemmIsa::avx512: return __builtin_cpu_supports("avx512f");
    case GemmIsa::avx512bf16: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return isa == GemmIsa::automatic || isa == GemmIsa::generic;
#endif
}

GemmIsa resolve_gemm_isa(GemmIsa requested) {
  if (requested == GemmIsa::automatic) {
    // Read once: the environment does not change under a running process.
    static const GemmIsa chosen = [] {
      if (const char* env = std::getenv("HOKUSAI_GEMM_ISA"); env && *env) {
        const GemmIsa forced = parse_gemm_isa(env);
        if (!gemm_isa_supported(forced))
          throw std::runtime_error("HOKUSAI_GEMM_ISA=" + std::string(env) + ": this CPU does not run it");
        return forced;
      }
      for (GemmIsa isa : {GemmIsa::avx512bf16, GemmIsa::avx512, GemmIsa::avx2})
        if (gemm_isa_supported(isa)) return isa;
      return GemmIsa::generic;
    }();
    return chosen;
  }
  if (!gemm_isa_supported(requested))
    throw std::runtime_error("GEMM ISA " + std::string(to_string(requested)) + " is not supported by this CPU");
  return requested;
}

const SgemmKernel& sgemm_kernel(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::avx512:
    case GemmIsa::avx512bf16: return kSgemmAvx512;
    case GemmIsa::avx2: return kSgemmAvx2;
    default: return kSgemmGeneric;
  }
}

std::string_view sgemm_kernel_name(GemmIsa isa) { return sgemm_kernel(resolve_gemm_isa(isa)).name; }

}  // namespace hokusai::kernels
