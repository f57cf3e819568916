// AMX bf16 microkernel (AMX-TILE + AMX-BF16: Sapphire Rapids and later). TDPBF16PS multiplies a
// 16x32 bf16 tile of A by a 32x16 bf16 tile of B (stored as 16 rows of 16 k-pairs, the same pair
// layout as the AVX512_BF16 kernel's B panels) into a 16x16 fp32 tile: 16,384 flops per
// instruction. Eight tile registers: C 2x2 (a 32x32 tile of C), two A tiles, two B tiles; per 32
// k values, 4 tile loads feed 4 products. One core ran 2,380 GFLOP/s on L1-resident tiles here
// (11x its fp32 FMA peak).
//
// The tile configuration is per thread: the driver calls amx_begin() in each thread before its
// first microkernel call and amx_end() after its last (SbgemmKernel::thread_begin/end). Loading
// and releasing it around every call cost ~210 ns per call, 22% of a kc = 512 call.
// With alpha = 1 and beta 0 or 1 (every product of training) C goes straight to and from the
// tiles; other alpha/beta go through a 4 KiB buffer.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "kernels/ukernel.hpp"
#include "kernels/x86/lanes.hpp"

namespace hokusai::kernels {

// GCC 12's intrinsics pass _mm512_undefined_*() as the merge source, which -Wmaybe-uninitialized
// reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

// LDTILECFG's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// Tiles 0..3: C (16 rows of 16 fp32), 4..5: A (16 rows of 32 bf16), 6..7: B (16 k-pairs of 16
// columns x 2 bf16). Every row is 64 bytes.
TileConfig make_config() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.bytes_per_row[t] = 64;
  }
  return cfg;
}
const TileConfig kConfig = make_config();

}  // namespace

bool amx_permitted() {
  // Linux keeps AMX's 8 KiB tile state off until the process asks (ARCH_REQ_XCOMP_PERM for
  // XFEATURE_XTILEDATA); without it the first tile instruction raises SIGILL.
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const bool ok = syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  return ok;
}

void amx_begin() { _tile_loadconfig(&kConfig); }

double amx_bf16_peak_flops(long iters) {
  // Operands loaded once and kept in tile registers: 4 independent TDPBF16PS chains per round,
  // no memory traffic, the most this core's tile unit does.
  alignas(64) static const uint16_t ones[16 * 32] = {};
  alignas(64) float out[16 * 16];
  amx_begin();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  for (long it = 0; it < iters; ++it) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, 64);
  amx_end();
  volatile float sink = out[0];
  (void)sink;
  return double(iters) * 4 * 2 * 16 * 16 * 32;
}
void amx_end() { _tile_release(); }

void sbgemm_amx_32x32(int64_t k, const uint16_t* ap, const uint16_t* bp, float* c, int64_t ldc, float alpha,
                      float beta) {
  constexpr int MR = 32, NR = 32;
  const bool direct = alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
  if (direct && beta == 1.0f) {
    _tile_loadd(0, c, ldc * 4);
    _tile_loadd(1, c + 16, ldc * 4);
    _tile_loadd(2, c + 16 * ldc, ldc * 4);
    _tile_loadd(3, c + 16 * ldc + 16, ldc * 4);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const int64_t a_stride = k * 2;  // bytes between rows of the A panel
  // The driver's next call updates the tile to the right of this one: its 32 rows (two lines
  // each) are prefetched over this call's k loop, so its tile loads and stores do not wait for
  // memory. Where C is far larger than the caches (gpt2's logits, 206 MB) every C tile came from
  // DRAM: the head's products went 13-35% faster, the others within noise (docs/performance.md).
  // Past the right edge of C the prefetches are wasted, never faulting.
  const float* next_c = c + NR;
  const int64_t pf_rows = (MR * 32 + k - 1) / k;  // rows per k step: all MR within the call
  int64_t pf_row = 0;
  for (int64_t p = 0; p < k; p += 32, pf_row += pf_rows) {
    for (int64_t r = pf_row; r < pf_row + pf_rows && r < MR; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(next_c + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(next_c + r * ldc + 16), _MM_HINT_T0);
    }
    // A rows 0-15 and 16-31, k values p..p+31; B k-pairs p/2..p/2+15, columns 0-15 and 16-31.
    _tile_loadd(4, ap + p, a_stride);
    _tile_loadd(5, ap + 16 * k + p, a_stride);
    _tile_loadd(6, bp + p * NR, 2 * NR * 2);
    _tile_loadd(7, bp + p * NR + 32, 2 * NR * 2);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  if (direct) {
    _tile_stored(0, c, ldc * 4);
    _tile_stored(1, c + 16, ldc * 4);
    _tile_stored(2, c + 16 * ldc, ldc * 4);
    _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
    return;
  }
  alignas(64) float acc[MR * NR];
  _tile_stored(0, acc, NR * 4);
  _tile_stored(1, acc + 16, NR * 4);
  _tile_stored(2, acc + 16 * NR, NR * 4);
  _tile_stored(3, acc + 16 * NR + 16, NR * 4);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NR; v += 16) {
      float* cp = c + i * ldc + v;
      __m512 r = _mm512_mul_ps(va, _mm512_load_ps(acc + i * NR + v));
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), r);
      _mm512_storeu_ps(cp, r);
    }
}

// Row i of the fp32 panel is a column of stride R: gather 16 of it, round to bf16 (nearest even,
// vcvtneps2bf16), store 16 contiguous values.
void rows_bf16_amx(const float* panel, int64_t kc_pad, int R, uint16_t* out) {
  const __m512i stride = _mm512_mullo_epi32(_mm512_set1_epi32(R), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                                                     11, 12, 13, 14, 15));
  for (int i = 0; i < R; ++i) {
    int64_t p = 0;
    for (; p + 16 <= kc_pad; p += 16) {
      const __m512 v = _mm512_i32gather_ps(stride, panel + p * R + i, 4);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * kc_pad + p), (__m256i)_mm512_cvtneps_pbh(v));
    }
    if (p < kc_pad) {
      const __mmask16 m = first_lanes(kc_pad - p);
      const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, stride, panel + p * R + i, 4);
      _mm256_mask_storeu_epi16(out + i * kc_pad + p, m, (__m256i)_mm512_cvtneps_pbh(v));
    }
  }
}

// fp32 rows straight into the AMX A layout, dst[(r / R) * kc_pad * R + (r % R) * kc_pad + p] =
// bf16(x(r, p)) with zeros past kc and past `rows` (a HalfPanelPacker): the bits of
// pack_panel_avx512 then rows_bf16_amx without the fp32 panel between them and its gathers
// (their two passes were 9% of a bf16 gpt2-124m step on a KVM Xeon with AMX). A row of the layout
// is the pair layout's transpose (32-bit words (row, pair) instead of (pair, row)), so the two
// source orders swap what pack_bf16_pairs_avx512bf16 does with them:
//  - k contiguous (x(r, p) = src[r * ld + p]): 32 k of a row convert (vcvtne2ps2bf16) into 64
//    bytes of that row's panel row, stored as they are;
//  - otherwise (x(r, p) = src[p * ld + r]): source rows 2pp and 2pp + 1 convert together into
//    the pairs of 16 panel rows, and a 16 x 16 word transpose turns 16 pairs of them into 32 k of
//    each of those rows.
void pack_bf16_rows_amx(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                        int R, uint16_t* dst) {
  const int64_t panels = (rows + R - 1) / R;
  const int64_t kc_data = (kc + 31) / 32 * 32;  // k written by the loops below; zeros after it
  const auto row_out = [&](int64_t q, int64_t i) { return dst + (q * R + i) * kc_pad; };
  if (k_contiguous) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* s = src + r * ld;
      uint16_t* o = row_out(r / R, r % R);
      for (int64_t p0 = 0; p0 < kc; p0 += 32) {
        const __mmask16 lo = first_lanes(kc - p0), hi = first_lanes(kc - p0 - 16);
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, s + p0 + 16), _mm512_maskz_loadu_ps(lo, s + p0));
        _mm512_storeu_si512(o + p0, (__m512i)v);
      }
    }
    for (int64_t r = rows; r < panels * R; ++r) std::memset(row_out(r / R, r % R), 0, size_t(kc_data) * 2);
  } else {
    // Word i of a converted row pair: bf16 lanes i (row 2pp) and 16 + i (row 2pp + 1).
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                                22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t q = 0; q < panels; ++q)
      for (int r0 = 0; r0 < R; r0 += 16) {
        const __mmask16 load = first_lanes(rows - q * R - r0);  // rows past `rows` load as zeros
        const float* s = src + q * R + r0;
        const int live = int(std::min<int64_t>(16, R - r0));
        for (int64_t p0 = 0; p0 < kc; p0 += 32) {
          __m512 v[16];
#pragma GCC unroll 16
          for (int t = 0; t < 16; ++t) {
            const int64_t p = p0 + 2 * t;
            const __m512 a = p < kc ? _mm512_maskz_loadu_ps(load, s + p * ld) : _mm512_setzero_ps();
            const __m512 b = p + 1 < kc ? _mm512_maskz_loadu_ps(load, s + (p + 1) * ld) : _mm512_setzero_ps();
            v[t] = (__m512)_mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(b, a));
          }
          transpose16(v);  // v[i] lane t: the pair p0 / 2 + t of panel row r0 + i
          for (int i = 0; i < live; ++i) _mm512_storeu_ps(row_out(q, r0 + i) + p0, v[i]);
        }
      }
  }
  if (kc_data < kc_pad)
    for (int64_t r = 0; r < panels * R; ++r)
      std::memset(row_out(r / R, r % R) + kc_data, 0, size_t(kc_pad - kc_data) * 2);
}

}  // namespace hokusai::kernels
