// Element types of the collectives: fp32 and bf16 (the upper half of an fp32, as A64FX-era
// mixed-precision training exchanges gradients). Reductions of bf16 add in fp32 and round the
// result to bf16 (nearest even) once per step; averages scale in fp32 and round once.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <string_view>

namespace hokusai::comm {

struct bf16 {
  uint16_t bits = 0;
};

inline float to_float(bf16 x) {
  const uint32_t u = uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // NaN stays a (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                                 // round to nearest even
  return bf16{uint16_t(u >> 16)};
}

// What the algorithms need of an element type: its MPI datatype for transfers, the in-place
// sum and scaling. Specialised for float and bf16 only.
template <class T>
struct Elem;

template <>
struct Elem<float> {
  static constexpr std::string_view name = "fp32";
  static MPI_Datatype mpi() { return MPI_FLOAT; }
  static void add(float* dst, const float* src, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  }
  static void scale(float* p, int64_t n, float s) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] *= s;
  }
};

template <>
struct Elem<bf16> {
  static constexpr std::string_view name = "bf16";
  static MPI_Datatype mpi() { return MPI_UINT16_T; }
  static void add(bf16* dst, const bf16* src, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = to_bf16(to_float(dst[i]) + to_float(src[i]));
  }
  static void scale(bf16* p, int64_t n, float s) {
    for (int64_t i = 0; i < n; ++i) p[i] = to_bf16(to_float(p[i]) * s);
  }
};

}  // namespace hokusai::comm
