// Block sizes of the native GEMM per microkernel and CPU: data, not code. Each entry says why.
// Measured on the development VM (Intel Xeon, AVX-512 + AVX512_BF16: 48 KiB L1D, 2 MiB L2 per
// core); docs/performance.md has the numbers and the command.
#pragma once

#include "kernels/gemm.hpp"
#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

// 14x32 fp32: the A micro-panel (14*256*4 = 14 KiB) stays in L1 across the B micro-panels
// (32 KiB each at kc = 256); the A block mc*kc*4 = 168 KiB sits in L2; the B block kc*nc*4 = 3 MiB
// is shared by the threads. A sweep of (mc, kc, nc) with HOKUSAI_GEMM_BLOCKS over
// {56..1008} x {192..768} x {320..4096} on 2048x2592x5184 (2 threads) and 2048^3 (1 thread)
// found nothing better than this point beyond the +-5% run-to-run noise of this VM.
inline constexpr SgemmKernel kSgemmAvx512{"sgemm_avx512_14x32", 14, 32, sgemm_avx512_14x32, {168, 256, 3072}};
// bf16 halves the bytes per element: kc = 512 keeps the same L1/L2 footprint.
inline constexpr SbgemmKernel kSbgemmAvx512Bf16{"sbgemm_avx512bf16_14x32", 14, 32, sbgemm_avx512bf16_14x32,
                                               {168, 512, 3072}};
// 6x16 AVX2: BLIS haswell sizes (mc 72..168, kc 256, nc 4080) scaled to 6-row panels.
inline constexpr SgemmKernel kSgemmAvx2{"sgemm_avx2_6x16", 6, 16, sgemm_avx2_6x16, {144, 256, 4080}};
inline constexpr SgemmKernel kSgemmGeneric{"sgemm_generic_4x16", 4, 16, sgemm_generic_4x16, {64, 256, 2048}};

const SgemmKernel& sgemm_kernel(GemmIsa isa);  // a resolved (not automatic) ISA

}  // namespace hokusai::kernels
