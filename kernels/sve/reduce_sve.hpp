// SVE versions of the two elementwise loops that sum float terms into a double: the squared
// gradient norm and the softmax denominator. Written with intrinsics because GCC 12's
// `omp simd reduction` miscompiles exactly this widening pattern for fixed-length SVE (see
// kernels/ops.cpp); the scalar references in kernels/ref/ are the oracle (tests/unit/test_ops).
//
// Each float is loaded into the low half of a 64-bit lane (ld1w into .d containers) and widened
// there (fcvt z.d, z.s), so one double vector takes svcntd() terms; four accumulators per
// iteration (these loops are bound by loads and the exp polynomial more than by the adds).
#pragma once

#include <arm_sve.h>

#include <cstdint>

namespace hokusai::kernels::sve {

// Cephes expf, the same steps as the scalar vexp in kernels/ops.cpp (range reduction by ln 2,
// degree-6 polynomial, 2^n through the exponent bits), on one vector.
inline svfloat32_t exp_f32(svbool_t pg, svfloat32_t x) {
  x = svmin_n_f32_x(pg, svmax_n_f32_x(pg, x, -87.3365447504f), 88.3762626647949f);
  const svfloat32_t n = svrintn_f32_x(pg, svmul_n_f32_x(pg, x, 1.44269504088896341f));
  const svfloat32_t r = svmla_n_f32_x(pg, svmls_n_f32_x(pg, x, n, 0.693359375f), n, 2.12194440e-4f);
  svfloat32_t p = svdup_n_f32(1.9875691500e-4f);
  p = svmad_n_f32_x(pg, p, r, 1.3981999507e-3f);
  p = svmad_n_f32_x(pg, p, r, 8.3334519073e-3f);
  p = svmad_n_f32_x(pg, p, r, 4.1665795894e-2f);
  p = svmad_n_f32_x(pg, p, r, 1.6666665459e-1f);
  p = svmad_n_f32_x(pg, p, r, 5.0000001201e-1f);
  p = svmla_f32_x(pg, svadd_f32_x(pg, r, svdup_n_f32(1.0f)), svmul_f32_x(pg, p, r), r);
  const svint32_t bits = svlsl_n_s32_x(pg, svadd_n_s32_x(pg, svcvt_s32_f32_x(pg, n), 127), 23);
  return svmul_f32_x(pg, p, svreinterpret_f32_s32(bits));
}

// Loads floats x[i .. i + svcntd()) into the low halves of 64-bit lanes (inactive lanes zero).
inline svfloat32_t load_low_halves(svbool_t pd, const float* x) {
  return svreinterpret_f32_u64(svld1uw_u64(pd, reinterpret_cast<const uint32_t*>(x)));
}

// sum over i of g(pd, x[i .. ]) where g returns one svfloat64_t of terms per svcntd() floats;
// four independent accumulators per iteration (SVE vectors cannot live in arrays).
template <typename G>
inline double widening_sum(const float* x, int64_t n, G g) {
  const int64_t step = int64_t(svcntd());
  svfloat64_t a0 = svdup_n_f64(0.0), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < n; i += 4 * step) {
    const svbool_t p0 = svwhilelt_b64_s64(i, n), p1 = svwhilelt_b64_s64(i + step, n);
    const svbool_t p2 = svwhilelt_b64_s64(i + 2 * step, n), p3 = svwhilelt_b64_s64(i + 3 * step, n);
    a0 = svadd_f64_m(p0, a0, g(p0, x + i));
    a1 = svadd_f64_m(p1, a1, g(p1, x + i + step));
    a2 = svadd_f64_m(p2, a2, g(p2, x + i + 2 * step));
    a3 = svadd_f64_m(p3, a3, g(p3, x + i + 3 * step));
  }
  const svbool_t all = svptrue_b64();
  return svaddv_f64(all, svadd_f64_x(all, svadd_f64_x(all, a0, a1), svadd_f64_x(all, a2, a3)));
}

// sum_i double(x[i])^2: widened first, squared in double (exact products, as the scalar code).
inline double sum_squares(const float* x, int64_t n) {
  return widening_sum(x, n, [](svbool_t pd, const float* p) {
    const svfloat64_t xd = svcvt_f64_f32_x(pd, load_low_halves(pd, p));
    return svmul_f64_x(pd, xd, xd);
  });
}

// sum_j exp(x[j] - shift)
inline double sum_exp(const float* x, int64_t n, float shift) {
  return widening_sum(x, n, [shift](svbool_t pd, const float* p) {
    const svbool_t all = svptrue_b32();
    const svfloat32_t e = exp_f32(all, svsub_n_f32_x(all, load_low_halves(pd, p), shift));
    return svcvt_f64_f32_x(pd, e);
  });
}

}  // namespace hokusai::kernels::sve
