// Central finite differences in double precision, and the comparison metric shared by the
// gradient tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace hokusai::testing {

// max(a, b) that keeps NaN. std::max(err, NaN) returns err, so an error maximum built with it lets
// a NaN result pass every tolerance; with this one a NaN anywhere makes the maximum NaN, and
// EXPECT_LE / EXPECT_LT (NaN, tolerance) fail.
inline double max_nan(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }

struct GradCheck {
  double max_err = 0.0;  // max over checked entries of |a - n| / max(|a| + |n|, floor)
  int64_t worst = -1;
  double analytic = 0.0, numeric = 0.0;
};

// Compares analytic[i] with (f(x + h e_i) - f(x - h e_i)) / 2h for the given indices of x.
// h = 1e-5 in double: truncation ~h^2 f''' ~ 1e-10, rounding ~|f|*1e-16/h ~ 1e-10. The floor
// (1e-4) judges gradients smaller than that by their absolute error, which FD noise dominates.
inline GradCheck check_gradient(const std::function<double()>& f, double* x, const double* analytic,
                                const std::vector<int64_t>& indices, double floor = 1e-4,
                                double h = 1e-5) {
  GradCheck r;
  for (int64_t i : indices) {
    const double saved = x[i];
    x[i] = saved + h;
    const double fp = f();
    x[i] = saved - h;
    const double fm = f();
    x[i] = saved;
    const double num = (fp - fm) / (2 * h);
    const double err = std::abs(analytic[i] - num) / std::max(std::abs(analytic[i]) + std::abs(num), floor);
    if (!(err <= r.max_err)) r = {err, i, analytic[i], num};  // a NaN is the worst: it must fail the check
  }
  return r;
}

inline std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Up to `count` indices of [0, n), spread evenly (all of them when n <= count).
inline std::vector<int64_t> sample_indices(int64_t n, int64_t count) {
  if (n <= count) return all_indices(n);
  std::vector<int64_t> v;
  for (int64_t j = 0; j < count; ++j) v.push_back(j * n / count);
  return v;
}

template <typename T>
std::vector<T> random_vector(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = T(u(rng));
  return v;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace hokusai::testing
