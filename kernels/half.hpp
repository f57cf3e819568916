// Internal: bf16 and fp16 rounding and their 16-bit patterns, element by element and branch-free
// (the loops that call them vectorise): round_to, narrow and widen (gemm.cpp), and the norms that
// read their kept rows as patterns (ops.cpp).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace hokusai::kernels::half {

// Branch-free (the panel loop vectorises): nearest even, inf and NaN kept.
inline float round_bf16(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  const uint32_t r = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;  // may carry into inf: correct
  return std::bit_cast<float>((b & 0x7fffffffu) > 0x7f800000u ? b : r);  // NaN stays NaN
}
inline float round_fp16(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x), a = b & 0x7fffffffu, sign = b ^ a;
  const uint32_t normal = (a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu;  // 10 of 23 mantissa bits
  // Below 2^-14 a half is a multiple of 2^-24, the ulp of floats in [0.5, 1): adding and taking
  // away 0.5 rounds to it (nearest even).
  const uint32_t subnormal = std::bit_cast<uint32_t>((std::bit_cast<float>(a) + 0.5f) - 0.5f);
  uint32_t r = a < 0x38800000u ? subnormal : normal;
  r = a >= 0x477ff000u ? 0x7f800000u : r;  // 65520 and up: nearest even lies past 65504, the largest half
  r = a > 0x7f800000u ? a : r;             // NaN
  return std::bit_cast<float>(sign | r);
}

// The 16-bit pattern of a float already rounded to half (round_fp16): sign, then a normal
// (exponent rebiased, 10 mantissa bits), a subnormal (|r| / 2^-24, exact: r is a multiple of it,
// or 0), inf or NaN. Branch-free, like half_value: narrow and widen vectorise on every ISA (the
// A64FX's SVE included, where fp16 runs keep their activations this way); with branches, widen
// alone was 4.5% of an fp16 step of the tiny config on a Zen 5.
inline uint16_t half_bits(float r) {
  const uint32_t b = std::bit_cast<uint32_t>(r), sign = (b >> 16) & 0x8000u, e = (b >> 23) & 0xffu;
  const uint32_t mant = b & 0x7fffffu;
  const uint32_t special = sign | 0x7c00u | (mant != 0 ? 0x200u : 0u);  // inf, NaN (stays one)
  const uint32_t normal = sign | ((e - 112) << 10) | (mant >> 13);
  const uint32_t subnormal = sign | uint32_t(int32_t(std::fabs(r) * 0x1p24f));  // below 2^-14
  return uint16_t(e == 0xffu ? special : e >= 113 ? normal : subnormal);
}
// Its selects are bit masks: written as ?: GCC 12 turns them back into branches and the loop
// stays scalar.
inline float half_value(uint16_t h) {
  const uint32_t x = h, sign = (x & 0x8000u) << 16, e = (x >> 10) & 0x1fu, mant = x & 0x3ffu;
  const uint32_t special = 0x7f800000u | (mant << 13);  // inf, NaN
  const uint32_t normal = ((e + 112) << 23) | (mant << 13);
  const uint32_t subnormal = std::bit_cast<uint32_t>(float(int32_t(mant)) * 0x1p-24f);  // exact
  const uint32_t is_special = 0u - uint32_t(e == 0x1fu), is_subnormal = 0u - uint32_t(e == 0);
  return std::bit_cast<float>(sign | (special & is_special) | (subnormal & is_subnormal) |
                              (normal & ~(is_special | is_subnormal)));
}

// The value of a bf16 pattern (exact).
inline float bf16_value(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

}  // namespace hokusai::kernels::half
