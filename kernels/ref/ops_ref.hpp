// Scalar references of kernels/ops.hpp: same signatures and contracts, serial, double
// accumulation, written for clarity. The oracle for the fast versions and for SVE/x86 kernels.
#pragma once

#include <cstdint>

#include "kernels/ops.hpp"

namespace hokusai::kernels::ref {

#include "kernels/ops_decl.inc"

}  // namespace hokusai::kernels::ref
