// The GEMM microkernel contract. Every ISA's microkernel implements exactly this; the portable
// driver (kernels/gemm_native.cpp) does blocking, packing, threading and edge tiles.
//
//   C(MR x NR) := alpha * Ap · Bp + beta * C        (C row-major, row stride ldc)
//
// fp32 kernels (SgemmUkernel):
//   Ap: packed A micro-panel, k steps of MR values:  Ap[p*MR + i] = A(i, p)
//   Bp: packed B micro-panel, k steps of NR values:  Bp[p*NR + j] = B(p, j)
// 16-bit storage kernels (SbgemmUkernel: uint16_t panels, fp32 accumulation and output):
//   bf16 (AVX512_BF16 vdpbf16ps): k is even (the driver pads with zeros); pairs of consecutive
//     k are interleaved: Ap[(p/2)*2*MR + 2*i + p%2] = A(i, p),  Bp[(p/2)*2*NR + 2*j + p%2] = B(p, j)
//   bf16 (AMX): k is a multiple of 32; Bp as above, Ap row by row: Ap[i*k + p] = A(i, p).
//   A 16-bit kernel comes with its PanelConverter: packed fp32 panel (kc_pad x R) -> its layout.
// Both: Ap and Bp are 64-byte aligned; k >= 0 (k == 0 gives C := beta*C); beta == 0 never
// reads C (C may hold NaN); the tile is always full — the driver runs edge tiles through an
// MR x NR buffer — so a kernel has no edge code. Names: <dtype>gemm_<isa>_<MR>x<NR>.
// A kernel may come with an edge microkernel (SgemmEdgeUkernel, SbgemmEdgeUkernel): the same tile's first
// `rows` rows only (1 <= rows <= MR; Ap still k steps of MR values, C rows past `rows` untouched),
// each value the same sum in the same order as the full kernel's: the same bits. The driver runs
// a tile with fewer than MR live rows on it instead of computing the zero rows of the padding (M =
// 1024 on a 14-row tile: 74 tiles, the last with 2 live rows — 1.2% of the products were padding).
#pragma once

#include "hokusai/names.hpp"

#include <cstdint>

namespace hokusai::kernels {

using SgemmUkernel = void (*)(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
                              float beta);
using SgemmEdgeUkernel = void (*)(int rows, int64_t k, const float* ap, const float* bp, float* c, int64_t ldc,
                                  float alpha, float beta);
using SbgemmUkernel = void (*)(int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc,
                               float alpha, float beta);
using SbgemmEdgeUkernel = void (*)(int rows, int64_t k, const uint16_t* ap, const uint16_t* bp, float* c,
                                   int64_t ldc, float alpha, float beta);  // a 16-bit kernel's, likewise

// Cache blocking of the five-loop driver: B blocks are kc x nc (shared by the threads, L3),
// A blocks mc x kc (per thread, L2), a B micro-panel kc x NR stays in L1.
// How the threads of one product divide it. rows: they split M and share one packed B block
// (each packs a share of its panels; a barrier before and after its use) — for cores that share
// an L2, where the block is read from the one cache (A64FX: 12 cores per CMG L2). columns: each
// thread packs its own B block of a column range and runs without barriers, A packed by every
// thread — for cores with private L2s (x86), where a shared block is copied into each core's L2
// anyway. larger: per product, whichever of M (in MR rows) and N (in NR columns) has more tiles
// (columns sharing A when N has more, rows sharing B otherwise) — the shared operand is then the
// narrower side, measured on Zen 5 (docs/performance.md). columns falls back
// to rows when n has fewer NR panels than threads. Every split runs the same tiles with the same
// k order: the same bits.
enum class ThreadSplit { rows, columns, larger };

struct BlockSizes {
  int64_t mc, kc, nc;
  ThreadSplit split = ThreadSplit::rows;
  // A packed once per k block for all of a thread's column blocks (columns: the threads pack a
  // share of the rows each into one buffer, a barrier before and after its use), instead of an
  // mc block at a time inside every column block. Same tiles, same sums: the same bits. The
  // driver applies it only where it saves packing — a thread's columns span more than one column
  // block — and while the whole-rows buffer is at most kMaxAOnceBytes (kernels/gemm_native.cpp).
  bool a_once = false;
  // Each thread packs the whole block of the operand the threads would otherwise share — B under
  // the rows split, A (packed once per k block) under the columns split — into its own buffer:
  // no barriers, that operand packed once per thread. For cores with private L2s, where a shared
  // block is copied into every core's L2 anyway; cores sharing an L2 (A64FX's CMG) keep one
  // block. Same tiles, same sums: the same bits.
  bool private_blocks = false;
};
// mc and nc rounded down to whole MR x NR tiles (at least one).
inline BlockSizes rounded_to_tile(BlockSizes b, int mr, int nr) {
  b.mc = (b.mc / mr > 0 ? b.mc / mr : 1) * mr;
  b.nc = (b.nc / nr > 0 ? b.nc / nr : 1) * nr;
  return b;
}

// Packing of fp32 micro-panels of width R (A panels: R = MR rows of op(A); B panels: R = NR
// columns of op(B)). `rows` (any count) elements x(r, p), p < kc, fill ceil(rows / R) consecutive
// panels of kc_pad * R values:
//   dst[(r / R)*kc_pad*R + p*R + r % R] = x(r, p);   zero for the last panel's rows past `rows`
//   and for kc <= p < kc_pad
//   x(r, p) = src[r*ld + p] when k_contiguous (A with op N, B with op T), else src[p*ld + r].
// dst is 64-byte aligned. A whole block at once, so a packer can read each source row once from
// start to end (what the hardware prefetchers follow) instead of panel by panel. Every kernel
// names the packer of its ISA (kernels/x86/sgemm_avx512.cpp has the vector one).
using PanelPacker = void (*)(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                             int64_t kc_pad, int R, float* dst);
void pack_panel_generic(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                        int R, float* dst);
void pack_panel_avx512(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                       int R, float* dst);
// The same panels with every value rounded to bf16 / fp16 as round_to does it (kernels/gemm.hpp:
// nearest even, inf and NaN kept), in the one pass: the packers of the emulated 16-bit products
// (fp16 on every CPU, bf16 where there is no bf16 kernel), which used to pack and then round the
// block in a second pass.
void pack_panel_generic_bf16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                             int64_t kc_pad, int R, float* dst);
void pack_panel_generic_fp16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                             int64_t kc_pad, int R, float* dst);
void pack_panel_avx512_bf16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                            int R, float* dst);
void pack_panel_avx512_fp16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                            int R, float* dst);
// fp32 panels from a source of bf16 / fp16 patterns (a 16-bit operand on an emulated path,
// kernels/gemm.hpp GemmOperand): the panels `pack` makes from the widened values (widen_rows),
// without the pass that widened them.
using WideningPanelPacker = void (*)(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                     int64_t kc_pad, int R, float* dst);
void pack_panel_generic_from_bf16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                  int64_t kc_pad, int R, float* dst);
void pack_panel_generic_from_fp16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                  int64_t kc_pad, int R, float* dst);
void pack_panel_avx512_from_bf16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                 int64_t kc_pad, int R, float* dst);
void pack_panel_avx512_from_fp16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                 int64_t kc_pad, int R, float* dst);

struct SgemmKernel {
  const char* name;
  int mr, nr;
  SgemmUkernel ukernel;
  BlockSizes blocks;
  PanelPacker pack = pack_panel_generic;
  SgemmEdgeUkernel edge = nullptr;  // tiles with fewer than MR live rows (null: the full kernel)
  // `pack`'s panels rounded to bf16 / fp16 while packed (the emulated 16-bit products' inputs).
  PanelPacker pack_bf16 = pack_panel_generic_bf16;
  PanelPacker pack_fp16 = pack_panel_generic_fp16;
  // `pack`'s panels from bf16 / fp16 patterns (the same values widened while packed).
  WideningPanelPacker pack_from_bf16 = pack_panel_generic_from_bf16;
  WideningPanelPacker pack_from_fp16 = pack_panel_generic_from_fp16;
};

using PanelConverter = void (*)(const float* panel, int64_t kc_pad, int R, uint16_t* out);
// A PanelPacker whose panels are in a 16-bit kernel's layout: the same panels, in one pass, as
// the kernel's `pack` then `convert` (what the driver does without one).
using HalfPanelPacker = void (*)(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                 int64_t kc_pad, int R, uint16_t* dst);

// A HalfPanelPacker reading 16-bit patterns instead of fp32 values (a source already rounded).
using HalfSourcePacker = void (*)(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                  int64_t kc_pad, int R, uint16_t* dst);

// 16-bit kernels pack fp32 with `pack`, then `convert` that panel to their layout (`convert_a`
// for A panels when their layout differs); k is padded with zeros to a multiple of k_step.
// `pack_direct`, where the kernel has one, replaces pack + convert for every panel in the
// `convert` layout; pack + convert stay its reference (test_gemm compares the two).
struct SbgemmKernel {
  const char* name;
  int mr, nr;
  SbgemmUkernel ukernel;
  BlockSizes blocks;
  PanelConverter convert;
  PanelPacker pack = pack_panel_generic;
  int k_step = 1;
  PanelConverter convert_a = nullptr;
  // Per-thread set-up and tear-down around a thread's microkernel calls (AMX tile configuration).
  void (*thread_begin)() = nullptr;
  void (*thread_end)() = nullptr;
  HalfPanelPacker pack_direct = nullptr;
  // The same for A panels in the `convert_a` layout (pack + convert_a stay its reference).
  HalfPanelPacker pack_direct_a = nullptr;
  // Panels in the `convert` layout from a source of bf16 patterns (a 16-bit operand, kernels/gemm.hpp:
  // GemmOperand): the same panels as pack_direct makes from those values widened — half the bytes
  // read. For B, and for A where its layout is the same. Null: the driver widens the block first.
  HalfSourcePacker pack_from_bf16 = nullptr;
  SbgemmEdgeUkernel edge = nullptr;  // tiles with fewer than MR live rows (null: the full kernel)
};

// Per-ISA kernels (kernels/ref/sgemm_generic.cpp, kernels/x86/*.cpp, kernels/sve/*.cpp). Each
// x86 entry point is compiled for its ISA only and must be called only when the CPU has it (see
// gemm_dispatch); the SVE ones exist only in aarch64 builds with SVE enabled.
void sgemm_generic_4x16(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta);
void sgemm_avx2_6x16(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta);
void sgemm_avx512_14x32(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta);
void sgemm_avx512_14x32_rows(int rows, int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
                             float beta);
void sbgemm_avx512bf16_14x32(int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc, float alpha,
                             float beta);
void sbgemm_avx512bf16_14x32_rows(int rows, int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc,
                                  float alpha, float beta);
// AMX (AMX-TILE + AMX-BF16, kernels/x86/sbgemm_amx.cpp): a 32x32 tile of C as 2x2 16x16 tile
// registers, 32 k values per TDPBF16PS. k is a multiple of 32. B panels: the bf16 pair layout
// above (NR = 32); A panels row by row: Ap[i*k + p] = A(i, p).
void sbgemm_amx_32x32(int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc, float alpha,
                      float beta);
// Loads the tile configuration of sbgemm_amx_32x32 in this thread / releases the tiles.
void amx_begin();
void amx_end();
// `iters` rounds of 4 independent register-resident TDPBF16PS; returns the flops done (peak probe).
double amx_bf16_peak_flops(long iters);
// A packed fp32 panel (kc_pad x R) -> out[i*kc_pad + p] = bf16(panel[p*R + i]).
void rows_bf16_amx(const float* panel, int64_t kc_pad, int R, uint16_t* out);
// fp32 rows straight into that layout, panel after panel (a HalfPanelPacker; kc_pad a multiple
// of 32): the same bits as pack_panel_avx512 then rows_bf16_amx, one pass.
void pack_bf16_rows_amx(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                        int R, uint16_t* dst);
// Asks Linux for the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM); false when refused.
bool amx_permitted();
// fp32 -> bf16 (round to nearest even) of n values, AVX512_BF16 (vcvtneps2bf16).
void convert_to_bf16_avx512bf16(const float* in, uint16_t* out, int64_t n);
// A packed fp32 panel (kc_pad x R, kc_pad even) -> the pair-interleaved bf16 layout of the
// contract: out[(pp*R + i)*2 + s] = bf16(panel[(2pp + s)*R + i]). Vectorised packing for the
// bf16 microkernel (the scalar version cost more than the products: 40% of fp32 peak).
void interleave_bf16_avx512bf16(const float* panel, int64_t kc_pad, int R, uint16_t* out);
// fp32 rows straight into that layout (a HalfPanelPacker): the same bits as pack_panel_avx512
// then interleave_bf16_avx512bf16, one pass.
void pack_bf16_pairs_avx512bf16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                int64_t kc_pad, int R, uint16_t* dst);
// bf16 patterns into that layout (a HalfSourcePacker): the same bits as pack_bf16_pairs_avx512bf16
// of the widened values, reading half the bytes.
void pack_bf16_pairs_from_bf16_avx512bf16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows,
                                          int64_t kc, int64_t kc_pad, int R, uint16_t* dst);


// SVE (kernels/sve/sgemm_sve.cpp): MR = 10, NR = 2 * (vector length in floats), read at run time.
void sgemm_sve_10x2v(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta);
int sve_vector_bits();  // this CPU's SVE vector length in bits

}  // namespace hokusai::kernels

// Names (hokusai/names.hpp): HOKUSAI_GEMM_BLOCKS' fourth field, bench_gemm --splits.
template <>
struct hokusai::Names<hokusai::kernels::ThreadSplit> {
  using E = kernels::ThreadSplit;
  static constexpr std::array<std::pair<E, std::string_view>, 3> table = {
      {{E::rows, "rows"}, {E::columns, "columns"}, {E::larger, "larger"}}};
};
