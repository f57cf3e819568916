// The named portable microkernel: plain C++ the compiler vectorises for whatever the baseline
// ISA is. 4x16: 64 accumulators fit in 16 SSE registers' worth of lanes x 4; it exists for
// correctness and portability, not speed. pack_panel_generic is the portable packer (and the
// reference the vector packers are tested against), with its rounding and widening variants.
#include <algorithm>

#include "kernels/half.hpp"
#include "kernels/ukernel.hpp"

namespace hokusai::kernels {

void sgemm_generic_4x16(int64_t k, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int MR = 4, NR = 16;
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < k; ++p)
    for (int i = 0; i < MR; ++i) {
      const float a = ap[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += a * bp[p * NR + j];
    }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      c[i * ldc + j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}

namespace {

// `value` maps a source element to the float packed: the element itself, rounded, or widened.
template <class Source, class Value>
void pack_panel_generic_with(Value value, const Source* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                             int64_t kc_pad, int R, float* dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += R, dst += kc_pad * R) {
    const int64_t live = std::min<int64_t>(R, rows - r0);
    if (k_contiguous) {
      for (int64_t r = 0; r < live; ++r) {
        const Source* s = src + (r0 + r) * ld;
        for (int64_t p = 0; p < kc; ++p) dst[p * R + r] = value(s[p]);
      }
      for (int64_t r = live; r < R; ++r)
        for (int64_t p = 0; p < kc; ++p) dst[p * R + r] = 0.0f;
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        const Source* s = src + p * ld + r0;
        float* d = dst + p * R;
        for (int64_t r = 0; r < live; ++r) d[r] = value(s[r]);
        for (int64_t r = live; r < R; ++r) d[r] = 0.0f;
      }
    }
    for (int64_t i = kc * R; i < kc_pad * R; ++i) dst[i] = 0.0f;
  }
}

}  // namespace

void pack_panel_generic(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc, int64_t kc_pad,
                        int R, float* dst) {
  pack_panel_generic_with([](float x) { return x; }, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}
void pack_panel_generic_bf16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                             int64_t kc_pad, int R, float* dst) {
  pack_panel_generic_with([](float x) { return half::round_bf16(x); }, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}
void pack_panel_generic_fp16(const float* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                             int64_t kc_pad, int R, float* dst) {
  pack_panel_generic_with([](float x) { return half::round_fp16(x); }, src, ld, k_contiguous, rows, kc, kc_pad, R, dst);
}
void pack_panel_generic_from_bf16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                  int64_t kc_pad, int R, float* dst) {
  pack_panel_generic_with([](uint16_t h) { return half::bf16_value(h); }, src, ld, k_contiguous, rows, kc, kc_pad, R,
                          dst);
}
void pack_panel_generic_from_fp16(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                  int64_t kc_pad, int R, float* dst) {
  pack_panel_generic_with([](uint16_t h) { return half::half_value(h); }, src, ld, k_contiguous, rows, kc, kc_pad, R,
                          dst);
}

}  // namespace hokusai::kernels
