// Block sizes of the native GEMM per microkernel and CPU: data, not code. Each entry says why.
#pragma once

#include <string>

#include "kernels/gemm.hpp"
#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

#if defined(__x86_64__)
// Measured on the development VM (Intel Xeon, AVX-512 + AVX512_BF16: 48 KiB L1D, 2 MiB L2 per
// core); docs/performance.md has the numbers and the command.
//
// 14x32 fp32: the A micro-panel (14*256*4 = 14 KiB) stays in L1 across the B micro-panels
// (32 KiB each at kc = 256), which stream from L2; the A block mc*kc*4 = 168 KiB sits in L2 and
// so must the B block kc*nc*4: nc = 1792 is 1.75 MiB of the 2 MiB L2 (the driver evens the
// blocks out, so n = 5184 runs as 3 x 1728). Measured (median of 3 alternating runs, 1 thread):
// (2048, 5184, 3456) NN 154 -> 159 GFLOP/s and (2048, 2592, 5184) 152 -> 161 against nc = 3072
// (a 2.5-3 MiB B block read from L3); 2048^3 and (1024, 3072, 768) unchanged. mc 112..336,
// kc 384/512 and nc 512/1024 were no better.
//
// Threads split the columns (ThreadSplit::columns: each its own B block, no barriers): every
// core has a private L2 here. Measured 2026-12-03 (Intel Xeon, 2 vCPUs, all 30 fp32 shapes of
// bench_gemm at 2 threads, the two splits and oneDNN timed call by call in turn, median of 9,
// `bench_gemm --threads 2 --backends hokusai,onednn --splits rows,columns --reps 9`, twice):
// columns / rows median 1.038 and 1.013 (faster on 26 and 19 of 30 shapes); against oneDNN
// median 0.903 -> 0.948 and 0.920 -> 0.952.
inline constexpr SgemmKernel kSgemmAvx512{"sgemm_avx512_14x32", 14, 32, sgemm_avx512_14x32,
                                           {168, 256, 1792, ThreadSplit::columns}, pack_panel_avx512,
                                           sgemm_avx512_14x32_rows, pack_panel_avx512_bf16, pack_panel_avx512_fp16,
                                           pack_panel_avx512_from_bf16, pack_panel_avx512_from_fp16};
// bf16 halves the bytes per element: kc = 512 keeps the same L1/L2 footprint. Threads split the
// columns as for fp32. Measured 2026-12-03 on the Intel Xeon (vdpbf16ps at half the fp32 FMA
// rate there), all 30 shapes at 2 threads, the splits and oneDNN's bf16 matmul in turn, median of
// 9, twice (`bench_gemm --threads 2 --backends onednn --splits rows,columns --reps 9`): columns /
// rows median 1.023 and 1.018 (faster on 21 and 20 of 30); against oneDNN 0.943 -> 0.964 and
// 0.959 -> 0.976. Its nc comes from blocks_for_cpu like the fp32 kernel's (1792 on this L2).
inline constexpr SbgemmKernel kSbgemmAvx512Bf16{"sbgemm_avx512bf16_14x32", 14, 32, sbgemm_avx512bf16_14x32,
                                               {168, 512, 1792, ThreadSplit::columns}, interleave_bf16_avx512bf16,
                                               pack_panel_avx512, 2, nullptr, nullptr, nullptr,
                                               pack_bf16_pairs_avx512bf16, nullptr,
                                               pack_bf16_pairs_from_bf16_avx512bf16, sbgemm_avx512bf16_14x32_rows};
// AMX 32x32 (bf16): kc = 256 keeps an A and a B micro-panel (16 KiB each) together in L1; the
// kernel alone on L1 panels ran 1,530-1,600 GFLOP/s at k = 256 against 1,350-1,380 at 512, and
// (2048, 2592, 5184) NN went 546 -> 778 GFLOP/s (1 thread) from (192, 512, 1792). B block
// 256 x 3584 x 2 = 1.75 MiB of L2 like the fp32 kernel's; mc 96 or 384 and nc 7168 were no better.
// Threads split per product along the side with more tiles (ThreadSplit::larger; every AMX CPU is a
// Xeon with private L2s): on a KVM Xeon with AMX (family 6 model 167), 2 threads, `bench_gemm
// --shapes gpt2 --splits rows,larger` twice, larger / rows median 1.064 and 1.046 (faster on 13 and
// 12 of 15; the head's and the MLP's wide N 1.07-1.40), gpt2-train 1.007. Each thread packs its
// own B block (private_blocks: no barriers): `--sharing shared,private` there, private / shared
// median 1.014 and 1.036 (gpt2, twice), 1.033 (gpt2-train). A is packed once per k block where a
// thread has more than one column block (the driver's rule; 2026-12-05, same Xeon, `bench_gemm
// --shapes gpt2|gpt2-train --threads 1,2 --backends hokusai --a-packing mc,once`): once ÷ per mc
// block median 1.020 / 1.010 (gpt2, 1 / 2 threads), 1.004 / 1.004 (gpt2-train); where the rule
// applies at 2 threads — the head's (1024, 50304, 768), N split in two — 1.04-1.09.
inline constexpr SbgemmKernel kSbgemmAmx{"sbgemm_amx_32x32", 32, 32, sbgemm_amx_32x32,
                                        {192, 256, 3584, ThreadSplit::larger, true, true},
                                        interleave_bf16_avx512bf16, pack_panel_avx512, 32, rows_bf16_amx,
                                        amx_begin, amx_end, pack_bf16_pairs_avx512bf16, pack_bf16_rows_amx,
                                        pack_bf16_pairs_from_bf16_avx512bf16};
// 6x16 AVX2: BLIS haswell sizes (mc 72..168, kc 256, nc 4080) scaled to 6-row panels.
// Columns like the AVX-512 kernel: x86 cores have private L2s (not measured on an AVX2-only CPU).
inline constexpr SgemmKernel kSgemmAvx2{"sgemm_avx2_6x16", 6, 16, sgemm_avx2_6x16,
                                         {144, 256, 4080, ThreadSplit::columns}};
#endif

#if defined(__ARM_FEATURE_SVE)
// A64FX (per core: 64 KiB 4-way L1D with 256-byte lines; per CMG of 12 cores: 8 MiB 16-way L2,
// shared). Reasoning, not a sweep (no A64FX here; re-tune on a node with HOKUSAI_GEMM_BLOCKS):
//   kc = 256: one B micro-panel kc*NR*4 = 256*32*4 = 32 KiB streams through half of L1 while the
//     A micro-panel (10*256*4 = 10 KiB) stays resident in the other half (the driver runs ir
//     outside jr); 4-way L1 leaves a way for C.
//   nc = 4096: the B block kc*nc*4 = 4 MiB, shared by the 12 threads of a CMG, fills half of L2.
//   mc = 120 (12 micro-panels): each thread's A block mc*kc*4 = 120 KiB; 12 of them = 1.4 MiB,
//     so B block + A blocks (5.4 MiB) stay inside the 8 MiB L2 with room for C lines.
// For other SVE lengths NR scales with the vector, the same kc keeps the B micro-panel at
// kc*NR*4 (16 KiB at 256 bits, 8 KiB at 128 bits): smaller than L1 on every SVE core we know.
// ThreadSplit::rows: a CMG's 12 cores share its L2, so one B block serves them all.
inline constexpr BlockSizes kSveBlocks{120, 256, 4096, ThreadSplit::rows};
#endif

inline constexpr SgemmKernel kSgemmGeneric{"sgemm_generic_4x16", 4, 16, sgemm_generic_4x16, {64, 256, 2048}};

// Per CPU, for kernels whose threads split the columns (each core packs its own B block into its
// private L2: the x86 kernels). The table above is measured on one CPU; this workplace's machines
// differ (Intel Xeon with 2 MiB of L2 per core, AMD Zen 4 and Zen 5 with 1 MiB), so the sizes a
// kernel runs with are chosen by what this CPU reports, as BLIS keeps a block-size set per CPU:
//  1. an entry of kCpuBlocks for this CPU model and kernel (measured there);
//  2. else nc fitted to this CPU's L2 (sysconf): the B block kc x nc plus the A block mc x kc
//     filling kL2Share of it — the share the measured Xeon entry uses (1792 x 256 + 168 x 256
//     floats = 96% of 2 MiB) — when that leaves nc >= kMinFittedNc (a smaller L2 keeps the table's
//     nc, its B block read from L3 as before); a fitted nc below the table's also packs A once per
//     k block (BlockSizes::a_once: a narrower nc means more column blocks, each repacking A). On
//     the Xeon with nc = 800 forced (`bench_gemm --blocks 168,256,800 --a-packing mc,once`, all 30
//     shapes, median of 7): a_once / per mc block 1.034 at 1 thread (faster on 25), 1.005 at 2;
//     at its own nc = 1792, 1.005 and 0.988 — hence only with the narrower block;
//  3. else the table's sizes.
// Only nc, a_once and (a measured entry) the thread split change: mc and kc — and so the order
// of every sum, hence the bits of C — stay the kernel's on every CPU. Kernels whose table splits
// the rows (A64FX, AMX until its split is measured) keep it unless an entry names them. HOKUSAI_GEMM_BLOCKS overrides all of it (tuning on a new CPU;
// `bench_gemm --blocks` times candidates side by side).
struct CpuModel {
  std::string vendor;  // CPUID's vendor string ("GenuineIntel", "AuthenticAMD"); empty off x86
  int family = 0, model = 0;  // with the extended fields folded in (Zen 4: 0x19, Zen 5: 0x1a)
};
CpuModel this_cpu_model();
int64_t this_cpu_l2_bytes();  // per core, from sysconf; 0 when the system does not say

struct CpuBlocks {
  const char* vendor;
  int family, model_lo, model_hi;
  const char* kernel;
  BlockSizes blocks;
  const char* why;
  // The microkernel that runs the kernel's tile on this CPU when it is not the kernel's own: a
  // candidate of the same MR x NR whose k loop is scheduled otherwise (kAvx512TileCandidates,
  // kernels/x86/sgemm_avx512_tiles.hpp) — the same sums in the same order, so the same bits.
  const char* ukernel = nullptr;
};
// AMD family 26 model 2 (Zen 5 EPYC, 1 MiB L2 per core, the L3 shared by a CCX): the fitted nc
// and A once per k block, measured against the table's (1792, A per mc block) and against nc
// 1792 with A once (`bench_gemm --blocks 168,256,800 168,256,1792 --a-packing mc,once`, and
// `--half-blocks 168,512,800 168,512,1792` for bf16; all 30 shapes, median of 5, 2026-12-03):
// fp32 800/once ÷ 1792/per mc 1.021 (1 thread), 0.998 (2); bf16 1.023, 1.017. Both kernels split
// whichever of M and N has more tiles (ThreadSplit::larger), sharing the narrower operand: on a
// gpt2-124m step's shapes (`bench_gemm --shapes gpt2 --threads 2 --splits rows,columns,larger`,
// and `--shapes gpt2-train`, 2026-12-03) bf16 columns lost 6-12% to rows wherever N is the small
// side (n = 768: every input- and weight-gradient product) and won 5% on the head (n = 50304);
// fp32 rows lost 5-9% on the head and 3% on (768, 3072, 1024), level elsewhere. Each thread packs
// its own blocks (BlockSizes::private_blocks; `bench_gemm --threads 2 --sharing shared,private`,
// all 30 shapes twice and gpt2-train, 2026-12-04): where the rows split shares B, private ÷ shared
// 1.019 fp32 and 1.016 bf16 (medians, faster on 21 and 18 of 23 rows); where the columns split
// shares A, level (1.000 for both). Its fp32 k loop stays the per-step one: the hand-scheduled u8
// loop of the Xeon model 167 (`bench_gemm --kernels shipped,sgemm_avx512_14x32_asm --backends
// hokusai --reps 5 --csv --no-bf16 --threads 1,2`, all 30 shapes, 2026-12-05) ran 0.989 / 0.996 of
// it here (1 / 2 threads; faster on 7 and 13 of 30). Its fp32 nc is 384, not the fitted 800
// (2026-12-06, nineteenth session): beside the B block each thread streams A's whole rows of the
// k block (A once: 0.5-2 MiB) and each row panel's C through the same 1 MiB L2, so the fitted
// block did not stay there. `bench_gemm --blocks 168,256,800 168,256,384 ... --backends hokusai
// --no-bf16`, nc 384 ÷ 800: gpt2 shapes 1.030 and 1.012 (1 thread), 1.014, 1.020 (2; faster on 13
// of 15 each), the head's (1024, 50304, 768) NT and NN +3-6% at both; 13B shapes 1.022 (1 thread,
// 11 of 12), 0.992 and 1.015 (2); gpt2-train 1.002 / 1.023 and 1.006. The gpt2-124m fp32 step
// (4 x 256, 2 threads, HOKUSAI_GEMM_BLOCKS=168,256,384 against none, eight alternating runs): faster
// in 7 of 8, median ratio 1.044. The bf16 kernel keeps 800: HOKUSAI_GEMM_HALF_BLOCKS=168,512,384
// was slower in 4 of 4 (0.90-1.00). nc only sets the column blocks: the same bits.
// Intel family 6 model 167 as KVM reports it (a Xeon with AMX, 2 MiB L2 per core): threads split
// the larger side, each packs its own blocks, A is packed once per k block where a thread has more
// than one column block (the driver's rule), and nc = 1024, measured 2026-12-05 on all 30 shapes at
// 1 and 2 threads (`bench_gemm --backends hokusai,onednn --no-bf16 --reps 5 ...`): A once ÷ per
// mc block (`--a-packing mc,once`, nc 1792) median 1.008 / 1.013, min 0.96 / 0.98 (shapes where
// the rule leaves the code unchanged: this VM's noise); larger + private ÷ columns + shared, 2
// threads with A once (`--splits columns,larger --sharing shared,private`) 1.011 (faster on 26 of
// 30); then nc 1024 ÷ 1792 with all of that (`--blocks 168,256,1792 168,256,1024 168,256,768`)
// 1.024 / 1.017 on the gpt2 shapes and 1.019 / 1.021 on the 13B and square ones (min 0.99 / 0.98;
// nc 768 level with 1024): A's whole rows (1 to 2 MiB) now share L2 with the B block, which the
// fitted nc (the A block mc x kc beside it) does not count. Its k loop runs unrolled by 8
// (sgemm_avx512_14x32_u8: the next tile's C rows prefetched once per 8 steps, not a test per
// step), measured 2026-12-05 (eleventh session) in the driver with the shipped blocks on all 30
// shapes, median of 7 (`bench_gemm --kernels shipped,sgemm_avx512_14x32_u8 --backends
// hokusai,onednn --no-bf16 --reps 7`): u8 ÷ the per-step loop 1.020 at 1 thread (faster on 29 of
// 30), 1.017 at 2 (28 of 30); on the Xeon model 207 the same unrolling lost 4% (2026-12-03), so it
// is this CPU's choice only. That +2% was the timing order's: the first contender ran right after
// oneDNN, 2% slower for that alone. With each timed call after one of its own (twelfth session,
// `--kernels sgemm_avx512_14x32,shipped --edge with,without --backends hokusai --reps 7`): u8 ÷
// the per-step loop 1.005 / 1.002 (1 / 2 threads, with the edge microkernel), 1.002 / 0.997
// without — level; kept (the same bits). Every in-process ratio above measured with
// `--backends hokusai,onednn` carries up to that bias for its first contender
// (docs/performance.md, twelfth session); the splits re-measured fairly on all 30 shapes at 2
// threads: columns ÷ rows 0.990, larger ÷ rows 0.997 (1.09 on (1024, 768, 768) TN, 1.03 on the
// head) — larger stays; nc 1024 ÷ 1792 1.012 / 1.005, A once ÷ per mc 1.028 / 1.022, private ÷
// shared 1.016 (2 threads): every choice of this entry holds. The u8 loop runs as written by hand
// (sgemm_avx512_14x32_asm: the same prefetches, the same sums in the same order, so the same bits;
// thirteenth session, `--kernels shipped,sgemm_avx512_14x32_asm --backends hokusai --reps 5 --csv
// --no-bf16 --threads 1,2`, all 30 shapes, twice): asm ÷ u8 1.006 / 1.006 and 1.010 / 1.009 (1 /
// 2 threads; faster on 18, 22, 25, 23 of 30), 1.008 on the gpt2 shapes alone at 1 thread, twice.
inline constexpr CpuBlocks kCpuBlocks[] = {
    {"GenuineIntel", 6, 167, 167, "sgemm_avx512_14x32", {168, 256, 1024, ThreadSplit::larger, true, true},
     "measured on Intel family 6 model 167 (Xeon with AMX): threads split the larger of M and N, each its own "
     "packed blocks, A packed once per k block where that saves packing (docs/performance.md)",
     "sgemm_avx512_14x32_asm"},
    {"GenuineIntel", 6, 207, 207, "sgemm_avx512_14x32", {168, 256, 1792, ThreadSplit::columns},
     "measured on Intel family 6 model 207 (docs/performance.md)"},
    {"AuthenticAMD", 26, 2, 2, "sgemm_avx512_14x32", {168, 256, 384, ThreadSplit::larger, true, true},
     "measured on AMD family 26 model 2, Zen 5: threads split the larger of M and N, A packed once per k block, "
     "each thread its own packed blocks (docs/performance.md)"},
    {"AuthenticAMD", 26, 2, 2, "sbgemm_avx512bf16_14x32", {168, 512, 800, ThreadSplit::larger, true, true},
     "measured on AMD family 26 model 2, Zen 5: threads split the larger of M and N, A packed once per k block, "
     "each thread its own packed blocks (docs/performance.md)"},
};
inline constexpr double kL2Share = 0.96;
inline constexpr int64_t kMinFittedNc = 512;

struct ChosenBlocks {
  BlockSizes blocks;
  std::string why;  // e.g. "measured on Intel family 6 model 207 (docs/performance.md)"; names `ukernel`
  const char* ukernel = nullptr;  // the measured entry's microkernel (CpuBlocks::ukernel), if it names one
};
// The rule above for a kernel (its name, table sizes, NR, bytes per packed element).
ChosenBlocks blocks_for_cpu(const char* kernel, BlockSizes table, int nr, int element_bytes, const CpuModel& cpu,
                            int64_t l2_bytes);
// HOKUSAI_GEMM_BLOCKS=mc,kc,nc[,SPLIT] replaces the fp32 kernel's block sizes and thread split for
// the process, HOKUSAI_GEMM_HALF_BLOCKS the 16-bit (bf16) kernel's: tuning on a new CPU (A packing
// and block sharing stay the table's). `table` where the variable is unset or empty; mc and nc are
// rounded down to whole tiles. A malformed value, or one below the kernel's tile (mc < mr, nc < nr,
// kc < max(2, k_step)), throws std::runtime_error: one line naming the variable, its value, the
// kernel and its limits. The variables are read once per process.
BlockSizes blocks_from_environment(bool half, BlockSizes table, const char* kernel, int mr, int nr, int k_step);
const char* blocks_variable(bool half);  // "HOKUSAI_GEMM_BLOCKS" or "HOKUSAI_GEMM_HALF_BLOCKS"
const char* blocks_variable_value(bool half);  // its value, or null where unset or empty

// The blocks an ISA's fp32 kernel runs with on this CPU, and why (printed by `hokusai peak` and
// bench_gemm): the table's, or HOKUSAI_GEMM_BLOCKS' (then `why` says so and gives the table's).
ChosenBlocks sgemm_blocks(GemmIsa isa);
// The bf16 kernel's (amx or avx512bf16; throws otherwise), or HOKUSAI_GEMM_HALF_BLOCKS'.
ChosenBlocks sbgemm_blocks(GemmIsa isa);

const SgemmKernel& sgemm_kernel(GemmIsa isa);  // a resolved (not automatic) ISA
// The bf16 storage kernels (amx or avx512bf16); throws std::runtime_error in a build without them.
// fp16 has none: see half_kernel (kernels/gemm_native.cpp).
const SbgemmKernel& sbgemm_kernel(GemmIsa isa);

}  // namespace hokusai::kernels
