// Internal helpers of the AVX-512 kernels and packers: the mask of the first n of 16 lanes (n <= 0:
// none, n >= 16: all) for the masked loads and stores at panel and row tails, a 16 x 16 register
// transpose, and the microkernels' k loop with its C prefetches (in an unnamed namespace: each file
// compiles its own copy with its own ISA flags).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace hokusai::kernels {

inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n > 0 ? n : 0)) - 1);
}

namespace {

// GCC 12's unpack/shuffle intrinsics pass _mm512_undefined_ps() as the merge source, which
// -Wmaybe-uninitialized reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// In-register transpose of a 16x16 block: v[i] lane j -> v[j] lane i. Four rounds of 16
// shuffles (unpack ps, unpack pd, two 128-bit lane shuffles).
inline void transpose16(__m512 v[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
  }
  // Per 128-bit lane l, u[4q + e] holds rows 4q..4q+3 of column 4l + e.
  __m512 u[16];
  for (int q = 0; q < 4; ++q) {
    const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // Gather the four row quarters of each column: lanes (0, 2) then (1, 3) of each pair.
  for (int e = 0; e < 4; ++e) {
    const __m512 lo02 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88), lo13 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xdd);
    const __m512 hi02 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88),
                 hi13 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xdd);
    v[e] = _mm512_shuffle_f32x4(lo02, hi02, 0x88);       // column e
    v[8 + e] = _mm512_shuffle_f32x4(lo02, hi02, 0xdd);   // column 8 + e
    v[4 + e] = _mm512_shuffle_f32x4(lo13, hi13, 0x88);   // column 4 + e
    v[12 + e] = _mm512_shuffle_f32x4(lo13, hi13, 0xdd);  // column 12 + e
  }
}
#pragma GCC diagnostic pop

// The k loop of the AVX-512 microkernels (fp32 and vdpbf16ps) with their C prefetches: step(p) for
// p = 0 .. steps - 1, this tile's `rows` rows of C (NR floats each) fetched into L1 one row per step
// over the first `rows` steps, then the rows of the tile to its right (c + NR: the driver's next
// call, whose C otherwise arrives from L3 only when that call stores) into L2, one row every 8
// steps. Unroll8: the steps after the first `rows` in chunks of 8, that row fetched once per chunk
// instead of a test per step. Measured: +3% on the fp32 kernel (2048 x 2592 x 5184), +5.6% on the
// vdpbf16ps kernel in the driver's loop (Zen 5, docs/performance.md) over fetching no C.
template <int NR, bool Unroll8, typename Step>
inline void k_loop_prefetching_c(int64_t steps, int rows, const float* c, int64_t ldc, Step&& step) {
  constexpr int lines = NR / 16;
  const auto into_l1 = [](const float* row) __attribute__((always_inline)) {
#pragma GCC unroll 4
    for (int v = 0; v < lines; ++v) _mm_prefetch(reinterpret_cast<const char*>(row + 16 * v), _MM_HINT_T0);
  };
  const auto into_l2 = [](const float* row) __attribute__((always_inline)) {
#pragma GCC unroll 4
    for (int v = 0; v < lines; ++v) _mm_prefetch(reinterpret_cast<const char*>(row + 16 * v), _MM_HINT_T1);
  };
  const int64_t head = steps < rows ? steps : rows;
  int64_t p = 0;
  for (; p < head; ++p) {
    into_l1(c + p * ldc);
    step(p);
  }
  for (int64_t i = head; i < rows; ++i) into_l1(c + i * ldc);
  if constexpr (Unroll8) {
    for (int row = 0; p + 8 <= steps; p += 8) {
      if (row < rows) into_l2(c + row++ * ldc + NR);
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) step(p + u);
    }
  }
  for (int row = 0; p < steps; ++p) {
    if ((p & 7) == 0 && row < rows && !Unroll8) into_l2(c + row++ * ldc + NR);
    step(p);
  }
}

}  // namespace

}  // namespace hokusai::kernels
