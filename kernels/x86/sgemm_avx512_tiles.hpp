// Internal: alternative AVX-512 register tiles, kept so the choice of the shipped one can be
// re-measured on a new CPU (bench_gemm --tiles).
#pragma once

#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

struct SgemmTileCandidate {
  const char* name;
  int mr, nr;
  SgemmUkernel ukernel;
};
extern const SgemmTileCandidate kAvx512TileCandidates[];
extern const int kAvx512TileCandidateCount;

}  // namespace hokusai::kernels
