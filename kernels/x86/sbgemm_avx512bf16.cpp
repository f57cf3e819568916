// AVX512_BF16 microkernel: vdpbf16ps multiplies pairs of bf16 (consecutive k) and accumulates
// both products into one fp32 lane, so one instruction does 32 multiply-adds where an fp32 FMA
// does 16. Same 14x32 tile and register budget as sgemm_avx512_14x32 (per k *pair*: 2 B loads,
// 14 broadcasts of an A pair, 28 dot-products).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/ukernel.hpp"
#include "kernels/x86/lanes.hpp"

namespace hokusai::kernels {

// GCC 12's intrinsics pass _mm512_undefined_*() as the merge source, which -Wmaybe-uninitialized
// reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {
// Rows < MR: an edge tile's first Rows rows only, from the same MR-wide A panel (each row the same
// sums in the same order as in the full tile: the same bits), as sgemm_avx512_tile's.
template <int Rows>
void sbgemm_tile(int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int MR = 14, NR = 32;
  static_assert(Rows >= 1 && Rows <= MR);
  __m512 acc[Rows][2];
#pragma GCC unroll 14
  for (int i = 0; i < Rows; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  // One k pair: 2 B loads (the B panel streams from L2: both lines of the pair 8 pairs ahead
  // fetched), Rows broadcasts of an A pair, 2 * Rows dot products.
  const auto step = [&](int64_t pp) __attribute__((always_inline)) {
    const uint16_t* b = bp + pp * 2 * NR;
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 32);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * 2 * NR), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * 2 * NR + 32), _MM_HINT_T0);
    const uint16_t* a = ap + pp * 2 * MR;
#pragma GCC unroll 14
    for (int i = 0; i < Rows; ++i) {
      int32_t pair;
      std::memcpy(&pair, a + 2 * i, 4);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
    }
  };
  // C: the fp32 kernel's prefetches (lanes.hpp). Without them C's lines arrive from L3 or memory
  // when the tile stores: 0.95 of this in the driver's loop on gpt2-124m's shapes (Zen 5,
  // docs/performance.md).
  k_loop_prefetching_c<NR, false>(k / 2, Rows, c, ldc, step);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int i = 0; i < Rows; ++i)
    for (int v = 0; v < 2; ++v) {
      float* cp = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), r);
      _mm512_storeu_ps(cp, r);
    }
}

template <int... R>
constexpr auto edge_tiles(std::integer_sequence<int, R...>) {
  return std::array<SbgemmUkernel, sizeof...(R)>{sbgemm_tile<R + 1>...};
}
}  // namespace

void sbgemm_avx512bf16_14x32(int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc, float alpha,
                             float beta) {
  sbgemm_tile<14>(k, ap, bp, c, ldc, alpha, beta);
}

void sbgemm_avx512bf16_14x32_rows(int rows, int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc,
                                  float alpha, float beta) {
  static constexpr auto kRows = edge_tiles(std::make_integer_sequence<int, 14>{});
  kRows[size_t(rows - 1)](k, ap, bp, c, ldc, alpha, beta);
}

void interleave_bf16_avx512bf16(const float* panel, int64_t kc_pad, int R, uint16_t* out) {
  // Row pair (2pp, 2pp+1) of R values -> R 32-bit words (bf16(r0[i]) | bf16(r1[i]) << 16).
  for (int64_t pp = 0; pp < kc_pad / 2; ++pp) {
    const float* r0 = panel + 2 * pp * R;
    const float* r1 = r0 + R;
    uint16_t* o = out + pp * R * 2;
    int i = 0;
    for (; i + 16 <= R; i += 16) {
      const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r0 + i)));
      const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r1 + i)));
      _mm512_storeu_si512(o + 2 * i, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
    if (i < R) {
      const __mmask16 m = first_lanes(R - i);
      const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r0 + i)));
      const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r1 + i)));
      _mm512_mask_storeu_epi32(o + 2 * i, m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

// Sources straight into the pair-interleaved bf16 panels, fp32 values (rounded here) or bf16
// patterns: what pack_panel_avx512 followed by interleave_bf16_avx512bf16 makes of the values (or
// of the patterns widened), bit for bit, without the fp32 panel in between (that way cost a
// quarter of the bf16 GEMM time at gpt2-124m's shapes: every value stored and loaded twice, and a
// 16 x 16 transpose per 16 k). A pair of bf16 (consecutive k) is one 32-bit word of the panel:
// word (pp, r) of panel q sits at q * kc_pad * R / 2 + pp * R + r % R.
//  - k contiguous (x(r, p) = src[r * ld + p]): 32 k of a row are 16 pair words in one register
//    (fp32: two loads and vcvtne2ps2bf16; bf16: one load), so one 16 x 16 word transpose places
//    32 k of 16 rows.
//  - otherwise (x(r, p) = src[p * ld + r]): rows 2pp and 2pp + 1 of the source side by side (fp32:
//    converted together; bf16: the two halves of a register) and one word permute interleaves them.
// A bf16 source is half the bytes: from memory 1.2-1.8x the fp32 source's rate (docs/performance.md).
namespace {

// A source's loads. KMask: which of 32 consecutive k are inside kc (k_mask(kc - p0)); words: those
// 32 k of a row at `at` as 16 pair words, k past kc zero; side_by_side: 16 columns (load: the live
// ones) of source rows a and b (zeros unless `second`) as 32 bf16, a's first.
struct Fp32Source {
  struct KMask {
    __mmask16 lo, hi;
  };
  static KMask k_mask(int64_t left) { return {first_lanes(left), first_lanes(left - 16)}; }
  static __m512 words(const float* at, KMask m) {
    return (__m512)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m.hi, at + 16), _mm512_maskz_loadu_ps(m.lo, at));
  }
  static __m512i side_by_side(const float* a, const float* b, bool second, __mmask16 load) {
    const __m512 lo = _mm512_maskz_loadu_ps(load, a);
    const __m512 hi = second ? _mm512_maskz_loadu_ps(load, b) : _mm512_setzero_ps();
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
  }
};
struct Bf16Source {
  using KMask = __mmask32;
  static KMask k_mask(int64_t left) { return left >= 32 ? ~__mmask32(0) : (__mmask32(1) << left) - 1; }
  static __m512 words(const uint16_t* at, KMask m) { return (__m512)_mm512_maskz_loadu_epi16(m, at); }
  static __m512i side_by_side(const uint16_t* a, const uint16_t* b, bool second, __mmask16 load) {
    const __m256i lo = _mm256_maskz_loadu_epi16(load, a);
    const __m256i hi = second ? _mm256_maskz_loadu_epi16(load, b) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  }
};

template <typename Source, typename T>
void pack_pairs(const T* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad, int R,
                uint16_t* dst) {
  const int64_t panels = (rows + R - 1) / R, panel_words = kc_pad * R / 2;
  const int64_t pairs = (kc + 1) / 2;  // pair rows holding data; the rest up to kc_pad / 2 are zero
  const auto words = [&](int64_t q, int64_t pp, int64_t r0) { return dst + 2 * (q * panel_words + pp * R + r0); };
  if (k_contiguous) {
    for (int64_t q = 0; q < panels; ++q)
      for (int r0 = 0; r0 < R; r0 += 16) {
        const int64_t live = std::min<int64_t>(R, rows - q * R) - r0;  // <= 0: all padding
        const T* s = src + (q * R + r0) * ld;
        const __mmask16 store = first_lanes(R - r0);
        for (int64_t p0 = 0; p0 < kc; p0 += 32) {
          const typename Source::KMask in_k = Source::k_mask(kc - p0);
          __m512 v[16];
#pragma GCC unroll 16
          for (int i = 0; i < 16; ++i) v[i] = i < live ? Source::words(s + i * ld + p0, in_k) : _mm512_setzero_ps();
          transpose16(v);  // v[t] lane i: the pair p0 / 2 + t of row r0 + i
          const int64_t n = std::min<int64_t>(16, pairs - p0 / 2);
          for (int64_t t = 0; t < n; ++t) _mm512_mask_storeu_ps(words(q, p0 / 2 + t, r0), store, v[t]);
        }
      }
  } else {
    // kPairBlock pair rows at a time across every panel, each panel's share of them stored in one
    // contiguous run (1 KiB at R = 32) instead of 64 bytes per panel per pair row, panels
    // kc_pad x R x 2 bytes apart (32 KiB at kc 512). This loop was half of the packer's samples in
    // a bf16 gpt2-124m step (its loads: the source arrives from memory); the blocked order
    // measured +2.5% per step (docs/performance.md); prefetching the next block's rows added
    // nothing measurable.
    constexpr int64_t kPairBlock = 8;
    // Word i of a row pair's 32 bf16: lanes i (row 2pp) and 16 + i (row 2pp + 1).
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                                22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t pb = 0; pb < pairs; pb += kPairBlock) {
      const int64_t pe = std::min(pairs, pb + kPairBlock);
      for (int64_t q = 0; q < panels; ++q)
        for (int64_t pp = pb; pp < pe; ++pp) {
          const T* s0 = src + 2 * pp * ld + q * R;
          const bool second = 2 * pp + 1 < kc;
          for (int r0 = 0; r0 < R; r0 += 16) {
            const __mmask16 load = first_lanes(rows - q * R - r0);
            const __m512i w = _mm512_permutexvar_epi16(
                interleave, Source::side_by_side(s0 + r0, s0 + ld + r0, second, load));
            _mm512_mask_storeu_epi32(words(q, pp, r0), first_lanes(R - r0), w);
          }
        }
    }
  }
  for (int64_t q = 0; q < panels; ++q)
    std::memset(dst + 2 * (q * panel_words + pairs * R), 0, size_t(2 * (panel_words - pairs * R)) * 2);
}

}  // namespace

void pack_bf16_pairs_avx512bf16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                int64_t kc_pad, int R, uint16_t* dst) {
  pack_pairs<Fp32Source>(src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}

void pack_bf16_pairs_from_bf16_avx512bf16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows,
                                          int64_t kc, int64_t kc_pad, int R, uint16_t* dst) {
  pack_pairs<Bf16Source>(src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}

void convert_to_bf16_avx512bf16(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), (__m256i)h);
  }
  if (i < n) {
    const __mmask16 m = first_lanes(n - i);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, in + i));
    _mm256_mask_storeu_epi16(out + i, m, (__m256i)h);
  }
}

}  // namespace hokusai::kernels
