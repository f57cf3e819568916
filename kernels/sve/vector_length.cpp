// A fixed-length SVE build (the aarch64-a64fx preset: -msve-vector-bits=512) bakes the vector
// length into every auto-vectorised loop; on a CPU with another length it would compute wrong
// results silently. This check runs before main() in every program that links hokusai::kernels
// (the library forces this object in with --undefined) and refuses to start instead.
#include <unistd.h>

#include <cstdio>

#include "kernels/ukernel.hpp"

extern "C" void hokusai_sve_vector_length_check() {}

#if defined(__ARM_FEATURE_SVE_BITS) && __ARM_FEATURE_SVE_BITS > 0
namespace {
// Priority 101: before every ordinary static initialiser, which may already run vectorised code.
__attribute__((constructor(101))) void refuse_other_vector_lengths() {
  const int have = hokusai::kernels::sve_vector_bits();
  if (have == __ARM_FEATURE_SVE_BITS) return;
  std::fprintf(stderr,
               "hokusai: this binary was built for %d-bit SVE (-msve-vector-bits=%d, preset aarch64-a64fx) but "
               "this CPU's SVE vectors are %d bits: rebuild with the vector-length-agnostic preset aarch64-sve\n",
               __ARM_FEATURE_SVE_BITS, __ARM_FEATURE_SVE_BITS, have);
  _exit(1);
}
}  // namespace
#endif
