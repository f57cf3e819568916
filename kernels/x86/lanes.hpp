// Internal: the mask of the first n of 16 lanes (n <= 0: none, n >= 16: all), for the masked
// loads and stores at panel and row tails of the AVX-512 kernels and packers.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace hokusai::kernels {

inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n > 0 ? n : 0)) - 1);
}

}  // namespace hokusai::kernels
