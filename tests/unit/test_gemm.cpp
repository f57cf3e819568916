// Every GEMM backend against the scalar reference: all four layouts, edge shapes, leading
// dimensions larger than the matrix, alpha/beta, and "beta == 0 never reads C".
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "gradcheck.hpp"
#include "kernels/gemm.hpp"
#include "kernels/ref/gemm_ref.hpp"

namespace hokusai::kernels {
namespace {

struct Shape {
  int64_t m, n, k;
};

// fp32 tolerance: |C - C_ref| <= 1e-5 * K * max|a||b| + 1e-6 (K-term rounding of fp32 sums).
void check_backend(GemmBackend backend, Op oa, Op ob, Shape s, float alpha, float beta, int64_t pad) {
  const int64_t a_rows = oa == Op::N ? s.m : s.k, a_cols = oa == Op::N ? s.k : s.m;
  const int64_t b_rows = ob == Op::N ? s.k : s.n, b_cols = ob == Op::N ? s.n : s.k;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = s.n + pad;
  const auto a = testing::random_vector<float>(std::max<int64_t>(1, a_rows * lda), 1 + s.m);
  const auto b = testing::random_vector<float>(std::max<int64_t>(1, b_rows * ldb), 2 + s.n);
  auto c = testing::random_vector<float>(std::max<int64_t>(1, s.m * ldc), 3 + s.k);
  if (beta == 0.0f)  // must never be read
    for (auto& x : c) x = std::numeric_limits<float>::quiet_NaN();
  auto c_ref = c;
  GemmContext ctx{backend, 2};
  gemm(ctx, oa, ob, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  ref::gemm<float>(oa, ob, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c_ref.data(), ldc);
  const double tol = 1e-5 * double(s.k + 1) * std::abs(alpha) + 1e-5;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      const float got = c[i * ldc + j], want = c_ref[i * ldc + j];
      ASSERT_FALSE(std::isnan(got)) << to_string(backend) << " read C with beta=0 at " << i << "," << j;
      ASSERT_NEAR(got, want, tol) << to_string(backend) << " " << (oa == Op::N ? "N" : "T")
                                  << (ob == Op::N ? "N" : "T") << " m=" << s.m << " n=" << s.n
                                  << " k=" << s.k << " at " << i << "," << j;
    }
  // Padding columns of C are outside the matrix: untouched.
  if (pad > 0 && beta != 0.0f)
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = s.n; j < ldc && i * ldc + j < int64_t(c.size()); ++j)
        ASSERT_EQ(c[i * ldc + j], c_ref[i * ldc + j]) << "wrote outside C";
}

class GemmBackends : public ::testing::TestWithParam<GemmBackend> {};

TEST_P(GemmBackends, MatchesReference) {
  const GemmBackend backend = GetParam();
  if (!gemm_backend_available(backend)) GTEST_SKIP() << to_string(backend) << " not in this build";
  const Shape shapes[] = {{0, 5, 3}, {4, 0, 3}, {3, 4, 0}, {1, 1, 1}, {1, 17, 5}, {13, 1, 7},
                          {7, 11, 13}, {31, 29, 37}, {64, 48, 96}, {97, 65, 33}, {128, 130, 257}};
  for (const auto& s : shapes)
    for (Op oa : {Op::N, Op::T})
      for (Op ob : {Op::N, Op::T}) {
        check_backend(backend, oa, ob, s, 1.0f, 0.0f, 0);
        check_backend(backend, oa, ob, s, 0.5f, 1.0f, 3);
        check_backend(backend, oa, ob, s, -1.25f, 0.0f, 5);
        check_backend(backend, oa, ob, s, 2.0f, -0.5f, 1);
      }
}

INSTANTIATE_TEST_SUITE_P(All, GemmBackends,
                         ::testing::Values(GemmBackend::reference, GemmBackend::openblas, GemmBackend::onednn),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// The reference itself against a naive triple loop on a tiny case worked out by hand.
TEST(GemmReference, HandComputed) {
  const float a[] = {1, 2, 3, 4, 5, 6};     // (2,3)
  const float b[] = {7, 8, 9, 10, 11, 12};  // (3,2)
  float c[] = {1, 1, 1, 1};
  ref::gemm<float>(Op::N, Op::N, 2, 2, 3, 1.0f, a, 3, b, 2, 2.0f, c, 2);
  EXPECT_FLOAT_EQ(c[0], 58 + 2);
  EXPECT_FLOAT_EQ(c[1], 64 + 2);
  EXPECT_FLOAT_EQ(c[2], 139 + 2);
  EXPECT_FLOAT_EQ(c[3], 154 + 2);
}

TEST(GemmBackendNames, ParseAndReject) {
  EXPECT_EQ(parse_gemm_backend("onednn"), GemmBackend::onednn);
  EXPECT_THROW(parse_gemm_backend("mkl"), std::invalid_argument);
}

}  // namespace
}  // namespace hokusai::kernels
