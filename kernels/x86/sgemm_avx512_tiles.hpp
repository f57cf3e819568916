// Internal: alternative AVX-512 register tiles, kept so the choice of the shipped one can be
// re-measured on a new CPU (bench_gemm --tiles: alone; --kernels: in the driver).
#pragma once

#include <string_view>

#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

struct SgemmTileCandidate {
  const char* name;
  int mr, nr;
  SgemmUkernel ukernel;
};
extern const SgemmTileCandidate kAvx512TileCandidates[];
extern const int kAvx512TileCandidateCount;
// The candidate of that name, or null.
const SgemmTileCandidate* find_tile_candidate(std::string_view name);

// A candidate as a driver kernel: `base` (the shipped AVX-512 kernel, with its packer, split and
// this CPU's blocks) with the candidate's tile and microkernel, mc and nc rounded down to it; the
// base's edge microkernel where the tile is the base's (it reads the same panels), else none.
inline SgemmKernel candidate_kernel(const SgemmTileCandidate& c, SgemmKernel base) {
  if (c.mr != base.mr || c.nr != base.nr) base.edge = nullptr;
  base.name = c.name, base.mr = c.mr, base.nr = c.nr, base.ukernel = c.ukernel;
  base.blocks = rounded_to_tile(base.blocks, c.mr, c.nr);
  return base;
}

}  // namespace hokusai::kernels
