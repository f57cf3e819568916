// AVX-512 fp32 microkernels. Rows of C are vectors along N (C is row-major): per k step, NR/16
// vector loads of the B panel, MR broadcasts of A, MR*NR/16 FMAs.
// The shipped tile, 14x32, was chosen by measurement (bench_gemm --tiles; docs/performance.md):
// 28 accumulators + 2 B vectors + 1 broadcast = 31 of 32 zmm registers; 28 independent FMAs
// cover 2 FMA pipes x 4 cycles of latency 3.5 times over.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "kernels/ukernel.hpp"
#include "kernels/x86/lanes.hpp"
#include "kernels/x86/sgemm_avx512_tiles.hpp"

namespace hokusai::kernels {

// Candidates (bench_gemm --kernels; docs/performance.md has their measurements): Unroll8 runs the
// k loop in chunks of 8 steps (the next tile's C rows prefetched once per chunk instead of a test
// per step); Fold also folds each broadcast into its FMA as an embedded memory operand
// (vfmadd231ps m32{1to16}: 28 FMAs and 2 loads per k step issue as 30 fused uops instead of 44,
// at 28 loads instead of 16). Every variant makes the same sums in the same order: the same bits.
// sgemm_avx512_14x32_asm (below) is the Unroll8 loop scheduled by hand. A CPU's entry in
// kCpuBlocks (kernels/gemm_tuning.hpp) may name one to run instead of the per-step loop: the Xeon
// with AMX (family 6 model 167) runs the hand-scheduled one (0.6-1.0% faster than Unroll8 there).
// Rows < MR: an edge tile's first Rows rows only, from the same MR-wide A panel (each row the same
// sums in the same order as in the full tile).
template <int MR, int NV, bool Unroll8 = false, bool Fold = false, int Rows = MR>
void sgemm_avx512_tile(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int NR = 16 * NV;
  static_assert(!Fold || NV == 2, "the folded step is written for two B vectors");
  static_assert(Rows >= 1 && Rows <= MR);
  __m512 acc[Rows][NV];
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // One k step: NV vector loads of B (the B panel streams from L2: fetch both lines of the step
  // 8 ahead), MR broadcasts of A, MR*NV FMAs.
  auto step = [&](int64_t p) __attribute__((always_inline)) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(bp + p * NR + 16 * v);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(bp + (p + 8) * NR + 16 * v), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i) {
      if constexpr (Fold) {
        asm("vfmadd231ps %[x]%{1to16%}, %[b0], %[c0]\n\tvfmadd231ps %[x]%{1to16%}, %[b1], %[c1]"
            : [c0] "+v"(acc[i][0]), [c1] "+v"(acc[i][1])
            : [b0] "v"(b[0]), [b1] "v"(b[1]), [x] "m"(ap[p * MR + i]));
      } else {
        const __m512 a = _mm512_set1_ps(ap[p * MR + i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
      }
    }
  };
  // C: this tile's rows into L1 over the first steps, the next tile's into L2 (lanes.hpp).
  k_loop_prefetching_c<NR, Unroll8>(k, Rows, c, ldc, step);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), r);
      _mm512_storeu_ps(cp, r);
    }
}

// The u8 loop of the 14 x 32 tile written in assembly (a candidate: bench_gemm --kernels
// shipped,sgemm_avx512_14x32_asm): the same prefetches (this tile's C rows into L1 one per step
// over the first 14 steps, the next tile's rows into L2 one per 8-step chunk, B two lines 8 steps
// ahead), the same sums in the same order (each accumulator's FMAs in k order; alpha, then beta
// times C fused, as the C++ epilogue): the same bits. Registers: accumulators zmm0-27 (row i in
// zmm2i, zmm2i+1), B's two vectors zmm28-29, A's broadcasts alternating zmm30-31 — the schedule
// GCC cannot be told. SysV: rdi k, rsi ap, rdx bp, rcx c, r8 ldc (floats), xmm0 alpha, xmm1 beta.
extern "C" void hokusai_sgemm_avx512_14x32_asm(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc,
                                               float alpha, float beta);
asm(R"(
  .macro HK_ROW u, i, lo, hi, bc
    vbroadcastss \u*56+\i*4(%rsi), %zmm\bc
    vfmadd231ps %zmm28, %zmm\bc, %zmm\lo
    vfmadd231ps %zmm29, %zmm\bc, %zmm\hi
  .endm
  .macro HK_STEP u
    vmovaps \u*128(%rdx), %zmm28
    vmovaps \u*128+64(%rdx), %zmm29
    prefetcht0 \u*128+1024(%rdx)
    prefetcht0 \u*128+1088(%rdx)
    HK_ROW \u, 0, 0, 1, 30
    HK_ROW \u, 1, 2, 3, 31
    HK_ROW \u, 2, 4, 5, 30
    HK_ROW \u, 3, 6, 7, 31
    HK_ROW \u, 4, 8, 9, 30
    HK_ROW \u, 5, 10, 11, 31
    HK_ROW \u, 6, 12, 13, 30
    HK_ROW \u, 7, 14, 15, 31
    HK_ROW \u, 8, 16, 17, 30
    HK_ROW \u, 9, 18, 19, 31
    HK_ROW \u, 10, 20, 21, 30
    HK_ROW \u, 11, 22, 23, 31
    HK_ROW \u, 12, 24, 25, 30
    HK_ROW \u, 13, 26, 27, 31
  .endm
  .macro HK_STORE lo, hi, fused
    vmulps %zmm\lo, %zmm28, %zmm\lo
    vmulps %zmm\hi, %zmm28, %zmm\hi
    .if \fused
      vfmadd231ps (%r11), %zmm29, %zmm\lo
      vfmadd231ps 64(%r11), %zmm29, %zmm\hi
    .endif
    vmovups %zmm\lo, (%r11)
    vmovups %zmm\hi, 64(%r11)
    add %r8, %r11
  .endm
  .macro HK_STORE_ROWS fused
    HK_STORE 0, 1, \fused
    HK_STORE 2, 3, \fused
    HK_STORE 4, 5, \fused
    HK_STORE 6, 7, \fused
    HK_STORE 8, 9, \fused
    HK_STORE 10, 11, \fused
    HK_STORE 12, 13, \fused
    HK_STORE 14, 15, \fused
    HK_STORE 16, 17, \fused
    HK_STORE 18, 19, \fused
    HK_STORE 20, 21, \fused
    HK_STORE 22, 23, \fused
    HK_STORE 24, 25, \fused
    HK_STORE 26, 27, \fused
  .endm
  .text
  .p2align 6
  .globl hokusai_sgemm_avx512_14x32_asm
  .type hokusai_sgemm_avx512_14x32_asm, @function
hokusai_sgemm_avx512_14x32_asm:
  .cfi_startproc
  endbr64
  shl $2, %r8
  vmovss %xmm0, -4(%rsp)
  vmovss %xmm1, -8(%rsp)
  vmovd %xmm1, %r10d
  and $0x7fffffff, %r10d
  .irp r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27
    vpxord %zmm\r, %zmm\r, %zmm\r
  .endr
  mov $14, %rax
  cmp %rax, %rdi
  cmovl %rdi, %rax
  sub %rax, %rdi
  mov %rax, %r9
  mov %rcx, %r11
  test %rax, %rax
  jz 2f
1:
  prefetcht0 (%r11)
  prefetcht0 64(%r11)
  add %r8, %r11
  HK_STEP 0
  add $56, %rsi
  add $128, %rdx
  dec %rax
  jnz 1b
2:
  mov $14, %rax
  sub %r9, %rax
  jz 4f
3:
  prefetcht0 (%r11)
  prefetcht0 64(%r11)
  add %r8, %r11
  dec %rax
  jnz 3b
4:
  lea 128(%rcx), %r11
  mov $14, %rax
  cmp $8, %rdi
  jl 7f
  .p2align 4
5:
  test %rax, %rax
  jz 6f
  prefetcht1 (%r11)
  prefetcht1 64(%r11)
  add %r8, %r11
  dec %rax
6:
  HK_STEP 0
  HK_STEP 1
  HK_STEP 2
  HK_STEP 3
  HK_STEP 4
  HK_STEP 5
  HK_STEP 6
  HK_STEP 7
  add $448, %rsi
  add $1024, %rdx
  sub $8, %rdi
  cmp $8, %rdi
  jge 5b
7:
  test %rdi, %rdi
  jz 9f
8:
  HK_STEP 0
  add $56, %rsi
  add $128, %rdx
  dec %rdi
  jnz 8b
9:
  vbroadcastss -4(%rsp), %zmm28
  vbroadcastss -8(%rsp), %zmm29
  mov %rcx, %r11
  test %r10d, %r10d
  jz 10f
  HK_STORE_ROWS 1
  vzeroupper
  ret
10:
  HK_STORE_ROWS 0
  vzeroupper
  ret
  .cfi_endproc
  .size hokusai_sgemm_avx512_14x32_asm, .-hokusai_sgemm_avx512_14x32_asm
  .purgem HK_ROW
  .purgem HK_STEP
  .purgem HK_STORE
  .purgem HK_STORE_ROWS
)");

void sgemm_avx512_14x32(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  sgemm_avx512_tile<14, 2>(k, ap, bp, c, ldc, alpha, beta);
}

namespace {
template <int MR, int NV, int... R>
constexpr auto edge_tiles(std::integer_sequence<int, R...>) {
  return std::array<SgemmUkernel, sizeof...(R)>{sgemm_avx512_tile<MR, NV, false, false, R + 1>...};
}
}  // namespace

void sgemm_avx512_14x32_rows(int rows, int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
                             float beta) {
  static constexpr auto kRows = edge_tiles<14, 2>(std::make_integer_sequence<int, 14>{});
  kRows[size_t(rows - 1)](k, ap, bp, c, ldc, alpha, beta);
}

// GCC 12's unpack/shuffle intrinsics pass _mm512_undefined_ps() as the merge source, which
// -Wmaybe-uninitialized reports once inlined into the packer (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

// What the packer applies to each vector of values before it stores it: nothing, or the rounding
// of the emulated 16-bit products (half::round_bf16 / round_fp16, bit for bit: nearest even, inf
// kept, NaN kept as it is — the conversions would quiet it and cut its payload, so its lanes are
// put back).
struct Keep {
  __m512 operator()(__m512 v) const { return v; }
};
struct RoundBf16 {
  __m512 operator()(__m512 v) const {
    const __m512i b = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb),
                                       _mm512_set1_epi32(int(0xffff0000u)));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_castsi512_ps(r), v);
  }
};
struct RoundFp16 {
  __m512 operator()(__m512 v) const {
    const __m512 r = _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, v);
  }
};

// How the packer reads up to 16 consecutive source elements (the masked lanes zero, nothing read
// past them): fp32 values, or bf16 / fp16 patterns widened (half::bf16_value / half_value, bit for
// bit — vcvtph2ps would quiet a signalling NaN, so NaN lanes are rebuilt from the pattern).
struct Values {
  using Source = float;
  __m512 operator()(const float* p, __mmask16 m) const { return _mm512_maskz_loadu_ps(m, p); }
};
struct Bf16Patterns {
  using Source = uint16_t;
  __m512 operator()(const uint16_t* p, __mmask16 m) const {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  }
};
struct Fp16Patterns {
  using Source = uint16_t;
  __m512 operator()(const uint16_t* p, __mmask16 m) const {
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    const __m512 v = _mm512_cvtph_ps(h);
    const __m512i x = _mm512_cvtepu16_epi32(h);
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x8000)), 16);
    const __m512i payload = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x3ff)), 13);
    const __m512i nan = _mm512_or_si512(_mm512_or_si512(sign, payload), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v, _mm512_castsi512_ps(nan));
  }
};

// The generic packer moves a value at a time: with it packing cost ~12% of (2048, 2592, 5184),
// with this one ~3% (docs/performance.md). Here the transposing case goes through 16x16 register transposes,
// a panel at a time (16 source rows advance together: 16 prefetch streams); the other case
// copies whole source rows across all panels, so each row is read from start to end.
// Templated over how it reads a source (Values, Bf16Patterns, Fp16Patterns) and what it applies
// before storing (Keep, RoundBf16, RoundFp16): pack_panel_avx512 and its variants below.
template <class Load, class Round>
void pack_panel_avx512_with(Load load_lanes, Round round, const typename Load::Source* src, int64_t ld,
                            bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad, int R, float* dst) {
  const int64_t panels = (rows + R - 1) / R, panel_size = kc_pad * R;
  if (k_contiguous) {
    for (int64_t q = 0; q < panels; ++q) {
      float* d = dst + q * panel_size;
      for (int r0 = 0; r0 < R; r0 += 16) {
        const int64_t live = std::min<int64_t>(R, rows - q * R) - r0;  // <= 0: all padding
        const typename Load::Source* s = src + (q * R + r0) * ld;
        const __mmask16 store = first_lanes(R - r0);
        for (int64_t p0 = 0; p0 < kc; p0 += 16) {
          const int64_t steps = std::min<int64_t>(16, kc - p0);
          const __mmask16 load = first_lanes(steps);
          __m512 v[16];
#pragma GCC unroll 16
          for (int i = 0; i < 16; ++i)
            v[i] = i < live ? load_lanes(s + i * ld + p0, load) : _mm512_setzero_ps();
          transpose16(v);
          for (int64_t j = 0; j < steps; ++j) _mm512_mask_storeu_ps(d + (p0 + j) * R + r0, store, round(v[j]));
        }
      }
    }
  } else {
    // kRowBlock source rows at a time across every panel, each panel's share stored in one
    // contiguous run (as the bf16 packer, pack_bf16_pairs_avx512bf16).
    // A row of 8 to 15 values (the A panels' 14) is stored as a whole vector: its extra lanes land
    // in the next row of the panel, which is stored after it (or is padding, zeroed below); only
    // the panel's last row is stored masked. Below 8 the extra lanes would reach two rows on; above
    // 16 a part-vector chunk would land on the next row's first chunk, already stored (r0 runs
    // outside p): masked there.
    // Against masked stores in a loop with p outside r0: 1.56x on a 256 x 256 A panel block at
    // R = 14, 1.35x on a 64-column B block at R = 32 (docs/performance.md).
    constexpr int64_t kRowBlock = 16;
    for (int64_t pb = 0; pb < kc; pb += kRowBlock) {
      const int64_t pe = std::min(kc, pb + kRowBlock);
      for (int64_t q = 0; q < panels; ++q) {
        float* d = dst + q * panel_size;
        const typename Load::Source* s = src + q * R;
        for (int r0 = 0; r0 < R; r0 += 16) {
          const __mmask16 load = first_lanes(rows - q * R - r0), store = first_lanes(R - r0);
          for (int64_t p = pb; p < pe; ++p) {
            const __m512 v = round(load_lanes(s + p * ld + r0, load));
            if (store == 0xffff || (R >= 8 && R < 16 && p + 1 < kc_pad))
              _mm512_storeu_ps(d + p * R + r0, v);
            else
              _mm512_mask_storeu_ps(d + p * R + r0, store, v);
          }
        }
      }
    }
  }
  for (int64_t q = 0; q < panels; ++q)
    for (int64_t i = kc * R; i < panel_size; ++i) dst[q * panel_size + i] = 0.0f;
}

}  // namespace

void pack_panel_avx512(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                       int R, float* dst) {
  pack_panel_avx512_with(Values{}, Keep{}, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}
void pack_panel_avx512_bf16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                            int R, float* dst) {
  pack_panel_avx512_with(Values{}, RoundBf16{}, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}
void pack_panel_avx512_fp16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                            int R, float* dst) {
  pack_panel_avx512_with(Values{}, RoundFp16{}, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}
void pack_panel_avx512_from_bf16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                 int64_t kc_pad, int R, float* dst) {
  pack_panel_avx512_with(Bf16Patterns{}, Keep{}, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}
void pack_panel_avx512_from_fp16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                 int64_t kc_pad, int R, float* dst) {
  pack_panel_avx512_with(Fp16Patterns{}, Keep{}, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}

// Candidates measured against the shipped tile (bench_gemm --tiles).
const SgemmTileCandidate kAvx512TileCandidates[] = {
    {"sgemm_avx512_14x32", 14, 32, sgemm_avx512_tile<14, 2>},
    {"sgemm_avx512_14x32_u8", 14, 32, sgemm_avx512_tile<14, 2, true>},
    {"sgemm_avx512_14x32_fold", 14, 32, sgemm_avx512_tile<14, 2, true, true>},
    {"sgemm_avx512_14x32_asm", 14, 32, hokusai_sgemm_avx512_14x32_asm},
    {"sgemm_avx512_12x32", 12, 32, sgemm_avx512_tile<12, 2>},
    {"sgemm_avx512_8x48", 8, 48, sgemm_avx512_tile<8, 3>},
    {"sgemm_avx512_6x64", 6, 64, sgemm_avx512_tile<6, 4>},
    {"sgemm_avx512_28x16", 28, 16, sgemm_avx512_tile<28, 1>},
};
const int kAvx512TileCandidateCount = sizeof(kAvx512TileCandidates) / sizeof(kAvx512TileCandidates[0]);

}  // namespace hokusai::kernels
