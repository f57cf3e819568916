// Every GEMM backend against the scalar reference: all four layouts, edge shapes, leading
// dimensions larger than the matrix, alpha/beta, and "beta == 0 never reads C".
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "gradcheck.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_backends.hpp"
#include "kernels/gemm_tuning.hpp"
#include "kernels/peak.hpp"
#include "kernels/ref/gemm_ref.hpp"
#include "kernels/ukernel.hpp"
#if defined(__x86_64__)
#include "kernels/x86/sgemm_avx512_tiles.hpp"
#endif

namespace hokusai::kernels {
namespace {

struct Shape {
  int64_t m, n, k;
};

// fp32 tolerance: |C - C_ref| <= 1e-5 * (K + 1) * |alpha| + 1e-5 for inputs in [-1, 1]
// (K-term rounding of fp32 sums). bf16 (8-bit mantissa inputs, fp32 accumulation):
// 2^-8 relative per input, so 8e-3 * sqrt(K) * |alpha| + 1e-2 (random-sign errors add like a walk).
// fp16 (11-bit mantissa inputs, fp32 accumulation): 2^-11 relative per input, so
// 1e-3 * sqrt(K) * |alpha| + 2e-3.

void check_backend(GemmBackend backend, Op oa, Op ob, Shape s, float alpha, float beta, int64_t pad,
                   GemmIsa isa = GemmIsa::automatic, Precision prec = Precision::fp32) {
  const int64_t a_rows = oa == Op::N ? s.m : s.k, a_cols = oa == Op::N ? s.k : s.m;
  const int64_t b_rows = ob == Op::N ? s.k : s.n, b_cols = ob == Op::N ? s.n : s.k;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = s.n + pad;
  const auto a = testing::random_vector<float>(std::max<int64_t>(1, a_rows * lda), 1 + s.m);
  const auto b = testing::random_vector<float>(std::max<int64_t>(1, b_rows * ldb), 2 + s.n);
  auto c = testing::random_vector<float>(std::max<int64_t>(1, s.m * ldc), 3 + s.k);
  if (beta == 0.0f)  // must never be read
    for (auto& x : c) x = std::numeric_limits<float>::quiet_NaN();
  auto c_ref = c;
  GemmContext ctx{backend, 2, isa};
  if (prec == Precision::bf16) {
    gemm_bf16(ctx, oa, ob, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  } else {
    ctx.precision = prec;  // fp16: the fp32 kernel on rounded panels, as the trainer runs it
    gemm(ctx, oa, ob, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  }
  ref::gemm<float>(oa, ob, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c_ref.data(), ldc);
  const double tol = prec == Precision::bf16   ? 8e-3 * std::sqrt(double(s.k) + 1) * std::abs(alpha) + 1e-2
                     : prec == Precision::fp16 ? 1e-3 * std::sqrt(double(s.k) + 1) * std::abs(alpha) + 2e-3
                                               : 1e-5 * double(s.k + 1) * std::abs(alpha) + 1e-5;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      const float got = c[i * ldc + j], want = c_ref[i * ldc + j];
      ASSERT_FALSE(std::isnan(got)) << name_of(backend) << " read C with beta=0 at " << i << "," << j;
      ASSERT_NEAR(got, want, tol) << name_of(backend) << "/" << name_of(isa) << " " << (oa == Op::N ? "N" : "T")
                                  << (ob == Op::N ? "N" : "T") << " m=" << s.m << " n=" << s.n
                                  << " k=" << s.k << " at " << i << "," << j;
    }
  // Padding columns of C are outside the matrix: untouched.
  if (pad > 0 && beta != 0.0f) {
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = s.n; j < ldc && i * ldc + j < int64_t(c.size()); ++j) {
        ASSERT_EQ(c[i * ldc + j], c_ref[i * ldc + j]) << "wrote outside C";
      }
  }
}

class GemmBackends : public ::testing::TestWithParam<GemmBackend> {};

TEST_P(GemmBackends, MatchesReference) {
  const GemmBackend backend = GetParam();
  if (!gemm_backend_available(backend)) GTEST_SKIP() << name_of(backend) << " not in this build";
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
                         ::testing::Values(GemmBackend::native, GemmBackend::reference, GemmBackend::openblas,
                                           GemmBackend::onednn),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// Every compiled ISA of the native backend, on shapes around its tile and block edges: 0, 1,
// primes, MR±1, NR±1, KC±1, several MC/NC blocks, leading dimensions larger than the matrix.
class NativeIsas : public ::testing::TestWithParam<GemmIsa> {};

TEST_P(NativeIsas, EdgeShapesAllLayouts) {
  const GemmIsa isa = GetParam();
  if (!gemm_isa_supported(isa)) GTEST_SKIP() << name_of(isa) << " not supported by this CPU";
  const auto kern = std::string(sgemm_kernel_name(isa));  // e.g. sgemm_avx512_14x32
  const auto x = kern.rfind('_');
  const int64_t MR = std::stoi(kern.substr(x + 1)), NR = std::stoi(kern.substr(kern.find('x', x) + 1));
  const int64_t KC = 256;
  std::vector<Shape> shapes = {{1, 1, 1}, {MR, NR, 1}, {MR - 1, NR - 1, 7}, {MR + 1, NR + 1, 13},
                               {2 * MR + 3, 3 * NR - 1, KC - 1}, {MR, NR, KC}, {MR + 2, NR, KC + 1},
                               {37, 41, 2 * KC + 3}, {401, 67, 19}, {23, 3100, 5}};
  for (const auto& s : shapes)
    for (Op oa : {Op::N, Op::T})
      for (Op ob : {Op::N, Op::T}) {
        check_backend(GemmBackend::native, oa, ob, s, 1.0f, 0.0f, 0, isa);
        check_backend(GemmBackend::native, oa, ob, s, 0.75f, 1.0f, 3, isa);
        check_backend(GemmBackend::native, oa, ob, s, -1.5f, -0.25f, 17, isa);
        if (HasFatalFailure()) return;
      }
}

INSTANTIATE_TEST_SUITE_P(All, NativeIsas,
                         ::testing::Values(GemmIsa::generic, GemmIsa::avx2, GemmIsa::avx512, GemmIsa::avx512bf16,
                                           GemmIsa::amx, GemmIsa::sve),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// Both bf16 kernels (vdpbf16ps 14x32 with k in pairs; AMX 32x32 with k in 32s and A panels row
// by row) around their tiles, k granularity and kc = 512, several mc blocks, two threads.
// An edge microkernel (SgemmKernel::edge, SbgemmKernel::edge) against its full kernel on the same
// panels (k steps of MR and NR elements, 64-byte aligned): every row count gives the full tile's
// first rows bit for bit, alpha and beta applied, and leaves the rows past them untouched.
template <typename Kernel, typename P>
void expect_edge_rows_match(const Kernel& kern, int64_t k, const P* a, const P* b) {
  const int MR = kern.mr, NR = kern.nr;
  const auto c0 = testing::random_vector<float>(size_t(MR * NR), 33);
  for (const float beta : {0.0f, 0.5f}) {
    std::vector<float> full = c0;
    kern.ukernel(k, a, b, full.data(), NR, 0.75f, beta);
    for (int rows = 1; rows <= MR; ++rows) {
      std::vector<float> part = c0;
      kern.edge(rows, k, a, b, part.data(), NR, 0.75f, beta);
      ASSERT_EQ(0, std::memcmp(part.data(), full.data(), sizeof(float) * size_t(rows * NR)))
          << kern.name << " rows " << rows << " k " << k << " beta " << beta;
      ASSERT_EQ(0, std::memcmp(part.data() + rows * NR, c0.data() + rows * NR, sizeof(float) * size_t((MR - rows) * NR)))
          << kern.name << " rows " << rows << ": wrote past its rows";
    }
  }
}

// The driver with the kernel's edge microkernel against the driver without it, with `blocks` (a
// few tiles each), where the last tile has 1 to MR - 1 live rows: bit for bit, at 1 and 2 threads.
template <typename Kernel, typename Run>
void expect_edge_driver_matches(const Kernel& kern, BlockSizes blocks, int64_t k, GemmIsa isa, Run run) {
  const int MR = kern.mr, NR = kern.nr;
  Kernel without = kern;
  without.edge = nullptr;
  without.blocks = blocks;
  Kernel with = without;
  with.edge = kern.edge;
  for (int64_t m = 3 * MR + 1; m < 4 * MR; ++m)
    for (int threads : {1, 2})
      for (Op oa : {Op::N, Op::T}) {
        const int64_t n = 2 * NR + 3, lda = oa == Op::N ? k : m;
        const auto a = testing::random_vector<float>(size_t(m * k), 41), b = testing::random_vector<float>(size_t(k * n), 42);
        const auto c0 = testing::random_vector<float>(size_t(m * n), 43);
        std::vector<float> got = c0, want = c0;
        const GemmContext ctx{GemmBackend::native, threads, isa};
        run(ctx, with, oa, Op::N, m, n, k, 0.75f, a.data(), lda, b.data(), n, 0.5f, got.data(), n);
        run(ctx, without, oa, Op::N, m, n, k, 0.75f, a.data(), lda, b.data(), n, 0.5f, want.data(), n);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << kern.name << " m " << m << ", " << threads << " thread(s)";
      }
}

class NativeBf16 : public ::testing::TestWithParam<GemmIsa> {};

TEST_P(NativeBf16, MatchesReferenceWithinBf16Tolerance) {
  const GemmIsa isa = GetParam();
  if (!gemm_isa_supported(isa)) GTEST_SKIP() << name_of(isa) << " not supported by this CPU";
  const Shape shapes[] = {{1, 1, 1},      {13, 31, 3},    {15, 33, 511},  {14, 32, 512},   {29, 65, 513},
                          {31, 33, 31},   {33, 31, 33},   {32, 32, 32},   {64, 64, 1024},  {100, 70, 1030},
                          {401, 67, 95}};
  for (const auto& s : shapes)
    for (Op oa : {Op::N, Op::T})
      for (Op ob : {Op::N, Op::T}) {
        check_backend(GemmBackend::native, oa, ob, s, 1.0f, 0.0f, 0, isa, Precision::bf16);
        check_backend(GemmBackend::native, oa, ob, s, 0.5f, 1.0f, 9, isa, Precision::bf16);
        if (HasFatalFailure()) return;
      }
}

// bf16 really rounds: an input needing more than 8 mantissa bits loses them.
TEST_P(NativeBf16, RoundsInputsToBf16) {
  const GemmIsa isa = GetParam();
  if (!gemm_isa_supported(isa)) GTEST_SKIP() << name_of(isa) << " not supported by this CPU";
  const float a = 1.0f + 1.0f / 512, b = 1.0f;  // 1 + 2^-9 rounds to 1 in bf16 (nearest even)
  float c = 0;
  gemm_bf16(GemmContext{GemmBackend::native, 1, isa}, Op::N, Op::N, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
  EXPECT_EQ(c, 1.0f);
}

// The kernel's direct packer (fp32 straight into its panels) against its reference, pack +
// convert, through the whole driver: the same bits on every layout, odd k, kc blocks, several
// panels and both thread counts.
TEST_P(NativeBf16, DirectPackingGivesTheSameBits) {
  const GemmIsa isa = GetParam();
  if (!gemm_isa_supported(isa)) GTEST_SKIP() << name_of(isa) << " not supported by this CPU";
  const SbgemmKernel& kern = sbgemm_kernel(isa);
  ASSERT_NE(kern.pack_direct, nullptr) << kern.name;
  // A kernel whose A panels have a layout of their own packs them directly too (AMX: row by row).
  if (kern.convert_a) {
    ASSERT_NE(kern.pack_direct_a, nullptr) << kern.name;
  }
  SbgemmKernel two_pass = kern;
  two_pass.pack_direct = nullptr;
  two_pass.pack_direct_a = nullptr;
  const Shape shapes[] = {{15, 33, 511}, {29, 65, 513}, {100, 70, 1030}, {45, 97, 37}, {64, 64, 64}, {17, 40, 32}};
  for (const auto& s : shapes)
    for (int threads : {1, 2})
      for (Op oa : {Op::N, Op::T})
        for (Op ob : {Op::N, Op::T}) {
          const int64_t lda = oa == Op::N ? s.k : s.m, ldb = ob == Op::N ? s.n : s.k;
          const auto a = testing::random_vector<float>(size_t(s.m * s.k), 5);
          const auto b = testing::random_vector<float>(size_t(s.k * s.n), 6);
          std::vector<float> want(size_t(s.m * s.n), 0.25f), got = want;
          const GemmContext ctx{GemmBackend::native, threads, isa};
          detail::gemm_half_kernel(ctx, two_pass, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.5f,
                                   want.data(), s.n);
          detail::gemm_half_kernel(ctx, kern, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.5f,
                                   got.data(), s.n);
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
              << kern.name << " (" << s.m << ", " << s.n << ", " << s.k << ") " << (oa == Op::N ? "N" : "T")
              << (ob == Op::N ? "N" : "T") << ", " << threads << " thread(s)";
        }
}

// The 16-bit kernel's edge microkernel (SbgemmKernel::edge), as the fp32 one's test below: a
// tile's first `rows` rows are the full kernel's bits for every row count, rows past them
// untouched; the driver with it gives the driver's bits without it where the last tile has 1 to
// MR - 1 live rows, at 1 and 2 threads (the rows split: the edge tile on the second thread).
TEST_P(NativeBf16, EdgeRowsGiveTheFullTilesBits) {
  const GemmIsa isa = GetParam();
  if (!gemm_isa_supported(isa)) GTEST_SKIP() << name_of(isa) << " not supported by this CPU";
  const SbgemmKernel& kern = sbgemm_kernel(isa);
  if (!kern.edge) GTEST_SKIP() << kern.name << " has no edge microkernel";
  const int MR = kern.mr, NR = kern.nr;
  for (const int64_t k : {2, 6, 14, 38, 64}) {  // the kernel's k: whole pairs (k_step 2)
    ASSERT_EQ(k % kern.k_step, 0);
    const auto av = testing::random_vector<float>(size_t(k * MR), 31), bv = testing::random_vector<float>(size_t(k * NR), 32);
    GemmWorkspace ws;  // the panels 64-byte aligned, as the driver's
    uint16_t* const a = ws.halves(0, av.size());
    uint16_t* const b = ws.halves(1, bv.size());
    narrow(Precision::bf16, av.data(), a, int64_t(av.size()));
    narrow(Precision::bf16, bv.data(), b, int64_t(bv.size()));
    expect_edge_rows_match(kern, k, a, b);
    if (HasFatalFailure()) return;
  }
  expect_edge_driver_matches(kern, BlockSizes{3 * MR, 62, 4 * NR, ThreadSplit::rows}, 71, isa, detail::gemm_half_kernel);
}

INSTANTIATE_TEST_SUITE_P(All, NativeBf16, ::testing::Values(GemmIsa::avx512bf16, GemmIsa::amx),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// fp16 on this build's fp32 kernel (the A64FX's 512-bit SVE one under qemu): edge shapes around
// its tile, k around its k block (256), both layouts, with and without C. No CPU has an fp16 unit
// that accumulates in fp32, so fp16 is never a kernel of its own (kernels/gemm_native.cpp).
TEST(NativeFp16, RunsOnTheFp32KernelWithinFp16Tolerance) {
  const GemmIsa isa = resolve_gemm_isa(GemmIsa::automatic);
  const auto kern = std::string(sgemm_kernel_name(isa));
  const int64_t MR = std::stoi(kern.substr(kern.rfind('_') + 1)), NR = std::stoi(kern.substr(kern.rfind('x') + 1));
  const Shape shapes[] = {{1, 1, 1}, {MR - 1, NR + 1, 3}, {MR + 1, NR - 1, 255}, {MR, NR, 256}, {29, 65, 257},
                          {130, 70, 1030}};
  for (const auto& s : shapes)
    for (Op oa : {Op::N, Op::T})
      for (Op ob : {Op::N, Op::T}) {
        check_backend(GemmBackend::native, oa, ob, s, 1.0f, 0.0f, 0, isa, Precision::fp16);
        check_backend(GemmBackend::native, oa, ob, s, 0.5f, 1.0f, 9, isa, Precision::fp16);
        if (HasFatalFailure()) return;
      }
  GemmContext ctx{GemmBackend::native, 1, isa};
  ctx.precision = Precision::fp16;
  EXPECT_FALSE(gemm_precision_native(ctx)) << gemm_precision_path(ctx);
  EXPECT_NE(gemm_precision_path(ctx).find(kern), std::string::npos) << gemm_precision_path(ctx);
}

// fp16 really rounds: 1 + 2^-12 needs 12 mantissa bits and rounds to 1 (nearest even).
TEST(NativeFp16, RoundsInputsToFp16) {
  const float a = 1.0f + 1.0f / 4096, b = 1.0f;
  float c = 0;
  GemmContext ctx{GemmBackend::native, 1, GemmIsa::automatic};
  ctx.precision = Precision::fp16;
  gemm(ctx, Op::N, Op::N, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
  EXPECT_EQ(c, 1.0f);
}

// Each 16-bit path says clearly where it does not exist.
TEST(NativeHalf, UnavailablePathsThrow) {
  float a = 1, b = 1, c = 0;
  const GemmContext ctx{GemmBackend::native, 1, GemmIsa::automatic};
  if (!gemm_isa_supported(GemmIsa::avx512bf16)) {
    EXPECT_THROW(gemm_bf16(ctx, Op::N, Op::N, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1), std::runtime_error);
  }
  // An ISA without a bf16 kernel, asked for one.
  EXPECT_THROW(gemm_bf16(GemmContext{GemmBackend::native, 1, GemmIsa::generic}, Op::N, Op::N, 1, 1, 1, 1.0f, &a, 1,
                         &b, 1, 0.0f, &c, 1),
               std::runtime_error);
}

// round_to against independent references: fp16 against the compiler's half conversion
// (IEEE nearest even), bf16 against nearest-even arithmetic on the 8-bit significand in double.
float bf16_reference(float x) {
  if (!std::isfinite(x) || x == 0) return x;
  const double q = std::ldexp(1.0, std::ilogb(x) - 7);  // ulp of an 8-bit significand (normals)
  const double r = std::nearbyint(double(x) / q) * q;      // nearest even (default rounding mode)
  return std::fabs(r) >= 0x1p128 ? std::copysign(INFINITY, x) : float(r);
}

#if defined(__aarch64__)
using CompilerHalf = __fp16;  // g++ 12 has no _Float16 in C++ on aarch64; __fp16 is IEEE half there
#else
using CompilerHalf = _Float16;
#endif

TEST(RoundTo, MatchesIndependentReferences) {
  std::vector<float> xs = {0.0f, -0.0f, 1.0f, 1.0f + 0x1p-9f, 1.0f + 0x1p-8f + 0x1p-9f, 65504.0f, 65519.99f,
                           65520.0f, -65520.0f, 0x1p-14f, 0x1p-24f, 0x1p-25f, 3 * 0x1p-26f, 0x1p-26f, 0x1.ffep-15f,
                           3.4e38f, INFINITY, -INFINITY, std::numeric_limits<float>::denorm_min()};
  uint32_t state = 12345;
  for (int i = 0; i < 200000; ++i) {  // random bit patterns: every exponent, both signs
    state = state * 1664525u + 1013904223u;
    float x;
    std::memcpy(&x, &state, 4);
    if (!std::isnan(x)) xs.push_back(x);
  }
  for (float x : xs) {
    const float h = float(CompilerHalf(x));
    const float got = round_to(Precision::fp16, x);
    ASSERT_TRUE(got == h && std::signbit(got) == std::signbit(h)) << "fp16 " << x << ": " << got << " vs " << h;
    if (std::fpclassify(x) == FP_NORMAL || !std::isfinite(x) || x == 0) {  // (float subnormals: below bf16's range)
      const float b = round_to(Precision::bf16, x);
      ASSERT_TRUE(b == bf16_reference(x)) << "bf16 " << x << ": " << b << " vs " << bf16_reference(x);
    }
    ASSERT_EQ(round_to(Precision::fp32, x), x);
  }
  EXPECT_TRUE(std::isnan(round_to(Precision::fp16, NAN)));
  EXPECT_TRUE(std::isnan(round_to(Precision::bf16, NAN)));
}

// 16-bit storage of activations: widen(narrow(x)) is round_to(x) bit for bit for every float
// (the model keeps GEMM-only activations this way and must train identically), and fp16's bit
// patterns are the compiler's half's.
TEST(RoundTo, NarrowThenWidenIsTheRounding) {
  std::vector<float> xs = {0.0f, -0.0f, 1.0f, 65504.0f, 65520.0f, -65520.0f, 0x1p-14f, 0x1.ff8p-15f, 0x1p-24f,
                           -0x1p-24f, 0x1p-25f, 3 * 0x1p-26f, 0x1p-26f, 3.4e38f, INFINITY, -INFINITY, NAN,
                           std::numeric_limits<float>::denorm_min()};
  uint32_t state = 777;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    float x;
    std::memcpy(&x, &state, 4);
    xs.push_back(x);
  }
  const int64_t n = int64_t(xs.size());
  std::vector<uint16_t> bits(xs.size());
  std::vector<float> back(xs.size());
  for (Precision p : {Precision::bf16, Precision::fp16}) {
    narrow(p, xs.data(), bits.data(), n);
    widen(p, bits.data(), back.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const float want = round_to(p, xs[size_t(i)]);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(back[size_t(i)])) << name_of(p) << " NaN lost";
        continue;
      }
      ASSERT_EQ(std::bit_cast<uint32_t>(back[size_t(i)]), std::bit_cast<uint32_t>(want))
          << name_of(p) << " " << xs[size_t(i)] << ": " << back[size_t(i)] << " vs " << want;
      if (p == Precision::fp16) {
        const CompilerHalf h(xs[size_t(i)]);
        uint16_t hb;
        std::memcpy(&hb, &h, 2);
        ASSERT_EQ(bits[size_t(i)], hb) << "fp16 bits of " << xs[size_t(i)];
      }
    }
  }
  EXPECT_THROW(narrow(Precision::fp32, xs.data(), bits.data(), 1), std::invalid_argument);
}

// A context's precision: gemm rounds every input, then multiplies in fp32 (its 16-bit unit,
// the emulated path on the fp32 kernel, or the reference): equal to an fp32 product of the
// rounded inputs to fp32 accumulation error, and visibly different from the unrounded product.
TEST(GemmPrecision, RoundsInputsOnEveryPath) {
  const Shape s{37, 45, 300};
  for (Precision p : {Precision::bf16, Precision::fp16})
    for (GemmBackend backend : {GemmBackend::native, GemmBackend::reference})
      for (GemmIsa isa : {GemmIsa::automatic, GemmIsa::generic})
        for (Op oa : {Op::N, Op::T})
          for (Op ob : {Op::N, Op::T}) {
            if (backend == GemmBackend::reference && isa != GemmIsa::automatic) continue;
            const int64_t lda = (oa == Op::N ? s.k : s.m) + 3, ldb = (ob == Op::N ? s.n : s.k) + 5;
            const auto a = testing::random_vector<float>((oa == Op::N ? s.m : s.k) * lda, 7);
            const auto b = testing::random_vector<float>((ob == Op::N ? s.k : s.n) * ldb, 8);
            auto ra = a, rb = b;
            round_to(p, ra.data(), int64_t(ra.size()));
            round_to(p, rb.data(), int64_t(rb.size()));
            std::vector<float> c(s.m * s.n), want(s.m * s.n), unrounded(s.m * s.n);
            GemmContext ctx{backend, 2, isa};
            ctx.precision = p;
            gemm(ctx, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
            ref::gemm<float>(oa, ob, s.m, s.n, s.k, 1.0f, ra.data(), lda, rb.data(), ldb, 0.0f, want.data(), s.n);
            ref::gemm<float>(oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, unrounded.data(), s.n);
            double worst = 0, moved = 0;
            for (size_t i = 0; i < c.size(); ++i) {
              worst = testing::max_nan(worst, double(std::fabs(c[i] - want[i])));
              moved = testing::max_nan(moved, double(std::fabs(want[i] - unrounded[i])));
            }
            const std::string what = std::string(name_of(p)) + " " + gemm_precision_path(ctx);
            // fp32 sums of 300 products in [-1, 1]: errors ~1e-6; rounding the inputs moves C by ~1e-3 (fp16)
            // to ~1e-2 (bf16).
            EXPECT_LE(worst, 2e-5) << what;
            EXPECT_GT(moved, 5e-4) << what << ": rounding to " << name_of(p) << " changed nothing";
          }
}

// An operand given as 16-bit patterns gives the bits of the same product on the widened values, on
// every path (the native bf16 kernel's packers read the patterns; the emulated paths and the
// reference widen them), A, B or both in 16 bits, every layout, edge shapes, padded leading
// dimensions, beta = 0 and 1, shapes that take either thread split.
TEST(GemmPrecision, SixteenBitOperandsGiveTheWidenedValuesBits) {
  // (30, 1800, 70): split by columns with A packed once per k block (N past nc); (300, 40, 96): by rows.
  // Small enough for the emulated A64FX suite, where the reference backend runs under qemu.
  const Shape shapes[] = {{1, 1, 1}, {37, 45, 300}, {14, 32, 2}, {100, 70, 33}, {30, 1800, 70}, {300, 40, 96}};
  for (Precision p : {Precision::bf16, Precision::fp16})
    for (GemmBackend backend : {GemmBackend::native, GemmBackend::reference})
      for (GemmIsa isa : {GemmIsa::automatic, GemmIsa::avx512, GemmIsa::generic}) {
        if ((backend == GemmBackend::reference && isa != GemmIsa::automatic) || !gemm_isa_supported(isa)) continue;
        for (const Shape& s : shapes)
          for (Op oa : {Op::N, Op::T})
            for (Op ob : {Op::N, Op::T})
              for (int sixteen : {1, 2, 3})  // bit 0: A in 16 bits, bit 1: B
                for (float beta : {0.0f, 1.0f}) {
                  const int64_t lda = (oa == Op::N ? s.k : s.m) + 3, ldb = (ob == Op::N ? s.n : s.k) + 5;
                  const auto a = testing::random_vector<float>((oa == Op::N ? s.m : s.k) * lda, 11);
                  const auto b = testing::random_vector<float>((ob == Op::N ? s.k : s.n) * ldb, 12);
                  std::vector<uint16_t> ha(a.size()), hb(b.size());
                  std::vector<float> wa(a.size()), wb(b.size());
                  narrow(p, a.data(), ha.data(), int64_t(a.size()));
                  narrow(p, b.data(), hb.data(), int64_t(b.size()));
                  widen(p, ha.data(), wa.data(), int64_t(a.size()));
                  widen(p, hb.data(), wb.data(), int64_t(b.size()));
                  const auto c0 = testing::random_vector<float>(size_t(s.m * s.n), 13);
                  auto want = c0, got = c0;
                  GemmContext ctx{backend, 2, isa};
                  ctx.precision = p;
                  gemm(ctx, oa, ob, s.m, s.n, s.k, 0.5f, wa.data(), lda, wb.data(), ldb, beta, want.data(), s.n);
                  const GemmOperand A = sixteen & 1 ? GemmOperand{nullptr, ha.data(), lda} : GemmOperand{wa.data(), nullptr, lda};
                  const GemmOperand B = sixteen & 2 ? GemmOperand{nullptr, hb.data(), ldb} : GemmOperand{wb.data(), nullptr, ldb};
                  gemm(ctx, oa, ob, s.m, s.n, s.k, 0.5f, A, B, beta, got.data(), s.n);
                  for (size_t i = 0; i < got.size(); ++i)
                    ASSERT_EQ(std::bit_cast<uint32_t>(want[i]), std::bit_cast<uint32_t>(got[i]))
                        << gemm_precision_path(ctx) << " " << name_of(backend) << (oa == Op::N ? " N" : " T")
                        << (ob == Op::N ? "N" : "T") << " m=" << s.m << " n=" << s.n << " k=" << s.k
                        << " 16-bit operands " << sixteen << " beta " << beta << " at " << i;
                }
      }
}

TEST(GemmPrecision, SixteenBitOperandsAreChecked) {
  const std::vector<float> x(16, 1.0f);
  const std::vector<uint16_t> h(16, 0x3f80);  // bf16 1.0
  std::vector<float> c(16);
  GemmContext ctx;
  ctx.precision = Precision::bf16;
  const GemmOperand values{x.data(), nullptr, 4}, patterns{nullptr, h.data(), 4}, neither{nullptr, nullptr, 4},
      both{x.data(), h.data(), 4};
  gemm(ctx, Op::N, Op::N, 4, 4, 4, 1.0f, patterns, patterns, 0.0f, c.data(), 4);
  for (float v : c) EXPECT_EQ(v, 4.0f);
  EXPECT_THROW(gemm(ctx, Op::N, Op::N, 4, 4, 4, 1.0f, neither, values, 0.0f, c.data(), 4), std::invalid_argument);
  EXPECT_THROW(gemm(ctx, Op::N, Op::N, 4, 4, 4, 1.0f, values, both, 0.0f, c.data(), 4), std::invalid_argument);
  ctx.precision = Precision::fp32;
  EXPECT_THROW(gemm(ctx, Op::N, Op::N, 4, 4, 4, 1.0f, values, patterns, 0.0f, c.data(), 4), std::invalid_argument);
  if (gemm_backend_available(GemmBackend::openblas)) {
    ctx.backend = GemmBackend::openblas;
    ctx.precision = Precision::bf16;
    EXPECT_THROW(gemm(ctx, Op::N, Op::N, 4, 4, 4, 1.0f, values, patterns, 0.0f, c.data(), 4), std::runtime_error);
  }
}

TEST(GemmPrecision, PathsAreNamedAndLibrariesRefuse) {
  GemmContext ctx{GemmBackend::native, 1, GemmIsa::generic};
  ctx.precision = Precision::bf16;
  EXPECT_NE(gemm_precision_path(ctx).find("emulated"), std::string::npos) << gemm_precision_path(ctx);
  EXPECT_FALSE(gemm_precision_native(ctx));
  if (gemm_isa_supported(GemmIsa::avx512bf16)) {
    ctx.isa = GemmIsa::avx512bf16;
    EXPECT_TRUE(gemm_precision_native(ctx));
    EXPECT_EQ(gemm_precision_path(ctx), "bf16 on sbgemm_avx512bf16_14x32");
  }
  float a = 1, b = 1, c = 0;
  for (GemmBackend lib : {GemmBackend::openblas, GemmBackend::onednn}) {
    if (!gemm_backend_available(lib)) continue;
    GemmContext l{lib, 1};
    l.precision = Precision::fp16;
    EXPECT_THROW(gemm(l, Op::N, Op::N, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1), std::runtime_error);
    EXPECT_THROW(gemm_precision_path(l), std::runtime_error);
  }
}

// The unit for bf16 follows the probe: a 16-bit unit slower than the fp32 FMAs is not used.
TEST(GemmPrecision, FastestIsaFollowsTheProbe) {
  if (std::getenv("HOKUSAI_GEMM_ISA")) GTEST_SKIP() << "HOKUSAI_GEMM_ISA decides";
  PeakFlops slow_dot{"avx512f", 178, 350, 2, 88, 0}, fast_dot{"avx512f", 267, 520, 2, 527, 0};
  EXPECT_EQ(fastest_isa(Precision::fp32, fast_dot), GemmIsa::automatic);
  EXPECT_EQ(fastest_isa(Precision::fp16, fast_dot), GemmIsa::automatic);
  if (gemm_isa_supported(GemmIsa::avx512)) {
    EXPECT_EQ(fastest_isa(Precision::bf16, slow_dot), GemmIsa::avx512);
  }
  if (gemm_isa_supported(GemmIsa::avx512bf16)) {
    EXPECT_EQ(fastest_isa(Precision::bf16, fast_dot), GemmIsa::avx512bf16);
  }
  GemmContext ctx{GemmBackend::native, 1, fastest_isa(Precision::bf16, slow_dot)};
  ctx.precision = Precision::bf16;
  if (gemm_isa_supported(GemmIsa::avx512)) {
    EXPECT_FALSE(gemm_precision_native(ctx)) << gemm_precision_path(ctx);
  }
}

TEST(NativeGemm, WorkspaceReuseGivesTheSameResult) {
  GemmWorkspace ws;
  const GemmContext ctx{GemmBackend::native, 2, GemmIsa::automatic, &ws};
  const auto a = testing::random_vector<float>(300 * 200, 1), b = testing::random_vector<float>(200 * 150, 2);
  std::vector<float> c1(300 * 150), c2(300 * 150), c3(300 * 150);
  gemm(ctx, Op::N, Op::N, 300, 150, 200, 1.0f, a.data(), 200, b.data(), 150, 0.0f, c1.data(), 150);
  gemm(ctx, Op::N, Op::N, 50, 150, 200, 1.0f, a.data(), 200, b.data(), 150, 0.0f, c3.data(), 150);  // smaller
  gemm(ctx, Op::N, Op::N, 300, 150, 200, 1.0f, a.data(), 200, b.data(), 150, 0.0f, c2.data(), 150);
  EXPECT_EQ(c1, c2);
}

// The two thread splits (kernels/ukernel.hpp: ThreadSplit) run the same MR x NR tiles over the
// same k blocks, so C is the same bit for bit at any thread count: shapes with edge tiles, several
// blocks of every size (small blocks), every layout, beta 0 and not, and fewer column panels than
// threads (columns falls back to rows); larger picks rows in the first case below and columns in
// the others. Against the reference too, so equal-but-wrong fails.
// Every thread split and A packing (per mc block or once per k block) gives the one-thread bits:
// the same tiles, the same k blocks in the same order. fp32 over every layout, beta and variant;
// each 16-bit kernel this CPU runs (`all` false) on fewer — the driver is the same code, and under
// qemu each variant costs seconds.
struct DriverVariant {
  int threads;
  ThreadSplit split;
  bool a_once;
  bool private_blocks;
};
template <typename Kernel, typename Run>
void expect_layouts_give_the_same_bits(const Kernel& kern, int64_t kc, float tolerance, bool all, Run driver) {
  // One thread splits nothing: only its A packing varies. More threads: every split, packing and
  // sharing of the packed blocks (all), or a subset covering each code path once (A shared between
  // barriers at 2, every thread its own blocks at 3).
  std::vector<DriverVariant> variants{{1, ThreadSplit::rows, true, false}};
  for (const int threads : {2, 3})
    for (const ThreadSplit split : {ThreadSplit::rows, ThreadSplit::columns, ThreadSplit::larger})
      for (const bool a_once : {false, true})
        for (const bool own : {false, true})
          if (all || (a_once == (threads == 2) && own == (threads == 3)))
            variants.push_back({threads, split, a_once, own});
  using Layout = std::pair<Op, Op>;
  const std::vector<Layout> layouts =
      all ? std::vector<Layout>{{Op::N, Op::N}, {Op::N, Op::T}, {Op::T, Op::N}, {Op::T, Op::T}}
          : std::vector<Layout>{{Op::N, Op::N}, {Op::T, Op::T}};
  const int64_t MR = kern.mr, NR = kern.nr;
  struct Case {
    int64_t m, n, k;
  };
  for (const Case s : {Case{100, 203, 77}, Case{3 * MR + 1, 7 * NR + 5, 130}, Case{50, NR + 3, 20}, Case{7, 500, 9}})
    for (const auto& [oa, ob] : layouts)
      for (const float beta : {0.0f, 0.5f}) {
        if (!all && beta == 0.0f) continue;
        const int64_t lda = oa == Op::N ? s.k : s.m, ldb = ob == Op::N ? s.n : s.k;
        const auto a = testing::random_vector<float>(s.m * s.k, 11), b = testing::random_vector<float>(s.k * s.n, 12);
        const auto c0 = testing::random_vector<float>(s.m * s.n, 13);
        const auto run = [&](int threads, ThreadSplit split, bool a_once, bool own) {
          std::vector<float> c = c0;
          Kernel small = kern;
          small.blocks = BlockSizes{2 * MR, kc, 3 * NR, split, a_once, own};
          driver(GemmContext{GemmBackend::native, threads}, small, oa, ob, s.m, s.n, s.k, 0.75f, a.data(), lda,
                 b.data(), ldb, beta, c.data(), s.n);
          return c;
        };
        const std::vector<float> one = run(1, ThreadSplit::rows, false, false);
        std::vector<float> want = c0;
        ref::gemm(oa, ob, s.m, s.n, s.k, 0.75f, a.data(), lda, b.data(), ldb, beta, want.data(), s.n);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_NEAR(one[i], want[i], tolerance * (1.0f + std::abs(want[i]))) << kern.name << " element " << i;
        for (const DriverVariant& v : variants)
          ASSERT_EQ(run(v.threads, v.split, v.a_once, v.private_blocks), one)
              << kern.name << " " << s.m << "x" << s.n << "x" << s.k << " " << (oa == Op::N ? "N" : "T")
              << (ob == Op::N ? "N" : "T") << " beta " << beta << " " << v.threads << " threads, split "
              << name_of(v.split) << (v.a_once ? ", A once" : ", A per mc")
              << (v.private_blocks ? ", private blocks" : ", shared blocks");
      }
}

TEST(NativeGemm, ThreadSplitsGiveTheSameBits) {
  expect_layouts_give_the_same_bits(sgemm_kernel(resolve_gemm_isa(GemmIsa::automatic)), 48, 1e-4f, true,
                                    detail::gemm_native_kernel);
  // The 16-bit kernels (inputs rounded: the reference is fp32, hence the wider tolerance).
  for (const GemmIsa isa : {GemmIsa::avx512bf16, GemmIsa::amx}) {
    if (!gemm_isa_supported(isa)) continue;
    expect_layouts_give_the_same_bits(sbgemm_kernel(isa), 64, 3e-2f, false, detail::gemm_half_kernel);
  }
}

// Every AVX-512 register-tile candidate (bench_gemm --tiles / --kernels) in the driver: against
// the reference on shapes with edge tiles and several k blocks (k steps not a multiple of the
// unrolled kernels' 8, k below MR), and the candidates of the shipped tile give its bits (the same
// sums in the same order).
TEST(NativeGemm, TileCandidatesMatchTheShippedKernel) {
#if defined(__x86_64__)
  if (!gemm_isa_supported(GemmIsa::avx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  const SgemmKernel& shipped = sgemm_kernel(GemmIsa::avx512);
  struct Case {
    int64_t m, n, k;
  };
  for (int i = 0; i < kAvx512TileCandidateCount; ++i) {
    const SgemmTileCandidate& cand = kAvx512TileCandidates[i];
    SgemmKernel kern = candidate_kernel(cand, shipped);
    kern.blocks = BlockSizes{3 * cand.mr, 61, 4 * cand.nr, ThreadSplit::columns};
    SgemmKernel same_blocks = shipped;
    same_blocks.blocks = BlockSizes{3 * shipped.mr, 61, 4 * shipped.nr, ThreadSplit::columns};
    for (const Case s : {Case{100, 203, 150}, Case{31, 70, 9}, Case{14, 32, 1}, Case{45, 129, 8}})
      for (Op oa : {Op::N, Op::T})
        for (const float beta : {0.0f, 0.5f}) {
          const int64_t lda = oa == Op::N ? s.k : s.m;
          const auto a = testing::random_vector<float>(s.m * s.k, 21), b = testing::random_vector<float>(s.k * s.n, 22);
          const auto c0 = testing::random_vector<float>(s.m * s.n, 23);
          std::vector<float> got = c0, want = c0, mine = c0;
          detail::gemm_native_kernel(GemmContext{GemmBackend::native, 2}, kern, oa, Op::N, s.m, s.n, s.k, 0.75f,
                                     a.data(), lda, b.data(), s.n, beta, got.data(), s.n);
          ref::gemm(oa, Op::N, s.m, s.n, s.k, 0.75f, a.data(), lda, b.data(), s.n, beta, want.data(), s.n);
          for (size_t e = 0; e < want.size(); ++e)
            ASSERT_NEAR(got[e], want[e], 1e-4f * (1.0f + std::abs(want[e])))
                << cand.name << " " << s.m << "x" << s.n << "x" << s.k << " element " << e;
          if (cand.mr != shipped.mr || cand.nr != shipped.nr) continue;
          detail::gemm_native_kernel(GemmContext{GemmBackend::native, 2}, same_blocks, oa, Op::N, s.m, s.n, s.k,
                                     0.75f, a.data(), lda, b.data(), s.n, beta, mine.data(), s.n);
          ASSERT_EQ(got, mine) << cand.name << " " << s.m << "x" << s.n << "x" << s.k;
        }
  }
#else
  GTEST_SKIP() << "x86 only";
#endif
}

// The edge microkernel (SgemmKernel::edge): a tile's first `rows` rows are the full kernel's bits
// for every row count (alpha and beta applied, k below and above MR, not a multiple of 8), rows
// past `rows` untouched; and the driver with it gives the driver's bits without it on shapes whose
// last tile has 1 to MR - 1 live rows.
TEST(NativeGemm, EdgeRowsGiveTheFullTilesBits) {
  const SgemmKernel& kern = sgemm_kernel(resolve_gemm_isa(GemmIsa::automatic));
  if (!kern.edge) GTEST_SKIP() << kern.name << " has no edge microkernel";
  const int MR = kern.mr, NR = kern.nr;
  for (const int64_t k : {1, 5, 13, 37, 64}) {
    const auto ap = testing::random_vector<float>(size_t(k * MR), 31), bp = testing::random_vector<float>(size_t(k * NR), 32);
    GemmWorkspace ws;  // the panels 64-byte aligned, as the driver's
    float* const a = ws.floats(0, ap.size());
    float* const b = ws.floats(1, bp.size());
    std::copy(ap.begin(), ap.end(), a), std::copy(bp.begin(), bp.end(), b);
    expect_edge_rows_match(kern, k, a, b);
    if (HasFatalFailure()) return;
  }
  expect_edge_driver_matches(kern, BlockSizes{3 * MR, 61, 4 * NR, ThreadSplit::columns}, 70, GemmIsa::automatic,
                             detail::gemm_native_kernel);
}

// A CPU entry's microkernel (CpuBlocks::ukernel) is a candidate of its kernel's tile, and the
// kernel this process runs is the one its entry names (the same bits: TileCandidatesMatch...).
TEST(GemmTuning, MicrokernelFollowsTheCpu) {
#if defined(__x86_64__)
  for (const CpuBlocks& e : kCpuBlocks) {
    if (!e.ukernel) continue;
    const SgemmTileCandidate* c = find_tile_candidate(e.ukernel);
    ASSERT_NE(c, nullptr) << e.ukernel;
    EXPECT_STREQ(e.kernel, kSgemmAvx512.name) << e.ukernel;
    EXPECT_EQ(c->mr, kSgemmAvx512.mr) << e.ukernel;
    EXPECT_EQ(c->nr, kSgemmAvx512.nr) << e.ukernel;
  }
  if (!gemm_isa_supported(GemmIsa::avx512)) GTEST_SKIP() << "no AVX-512";
  const ChosenBlocks here = sgemm_blocks(GemmIsa::avx512);
  const SgemmUkernel expected = here.ukernel ? find_tile_candidate(here.ukernel)->ukernel : kSgemmAvx512.ukernel;
  EXPECT_EQ(sgemm_kernel(GemmIsa::avx512).ukernel, expected) << (here.ukernel ? here.ukernel : "the kernel's own");
  EXPECT_STREQ(sgemm_kernel(GemmIsa::avx512).name, kSgemmAvx512.name);
#else
  GTEST_SKIP() << "x86 only";
#endif
}

// Per-CPU block sizes (kernels/gemm_tuning.hpp): a measured entry for its CPU model, else nc
// fitted to the CPU's L2 (Zen 4/5: 1 MiB), else the table; only nc ever changes (the bits of C
// depend on mc-independent, kc-blocked sums), and kernels sharing an L2 keep their table.
TEST(GemmTuning, BlocksFollowTheCpu) {
  const BlockSizes table{168, 256, 3072, ThreadSplit::columns};
  const CpuModel xeon{"GenuineIntel", 6, 207}, zen5{"AuthenticAMD", 0x1a, 0x44}, other{"GenuineIntel", 6, 143};
  const ChosenBlocks measured = blocks_for_cpu("sgemm_avx512_14x32", table, 32, 4, xeon, int64_t(2) << 20);
  EXPECT_EQ(measured.blocks.nc, 1792);
  EXPECT_NE(measured.why.find("measured"), std::string::npos) << measured.why;
  // The fitted rule reproduces the measured entry from the same L2 ...
  EXPECT_EQ(blocks_for_cpu("sgemm_avx512_14x32", table, 32, 4, other, int64_t(2) << 20).blocks.nc, 1792);
  // ... and fits a 1 MiB L2: (0.96 * 1 MiB - 168 * 256 * 4 B) / (256 * 4 B) = 815 -> 800 columns.
  const ChosenBlocks fitted = blocks_for_cpu("sgemm_avx512_14x32", table, 32, 4, zen5, int64_t(1) << 20);
  EXPECT_EQ(fitted.blocks.nc, 800);
  EXPECT_EQ(fitted.blocks.mc, table.mc);
  EXPECT_EQ(fitted.blocks.kc, table.kc);
  EXPECT_EQ(fitted.blocks.split, table.split);
  EXPECT_TRUE(fitted.blocks.a_once) << "a narrower nc than the table's packs A once per k block";
  EXPECT_FALSE(measured.blocks.a_once);
  // The rule applied to its own result gives it again (sgemm_blocks reports what the kernel runs).
  const ChosenBlocks again = blocks_for_cpu("sgemm_avx512_14x32", fitted.blocks, 32, 4, zen5, int64_t(1) << 20);
  EXPECT_EQ(again.blocks.nc, 800);
  EXPECT_TRUE(again.blocks.a_once);
  EXPECT_EQ(again.why, fitted.why);
  EXPECT_NE(fitted.why.find("1024 KiB L2"), std::string::npos) << fitted.why;
  // The measured Zen 5 EPYC entry (family 26 model 2) changes the split and nc (384: measured, not
  // fitted), and is found again from its own result (what sgemm_blocks does).
  const CpuModel epyc5{"AuthenticAMD", 26, 2};
  const ChosenBlocks zen5_measured = blocks_for_cpu("sgemm_avx512_14x32", table, 32, 4, epyc5, int64_t(1) << 20);
  EXPECT_EQ(zen5_measured.blocks.split, ThreadSplit::larger);
  EXPECT_EQ(zen5_measured.blocks.nc, 384);
  EXPECT_TRUE(zen5_measured.blocks.a_once);
  EXPECT_NE(zen5_measured.why.find("measured"), std::string::npos) << zen5_measured.why;
  EXPECT_EQ(blocks_for_cpu("sgemm_avx512_14x32", zen5_measured.blocks, 32, 4, epyc5, int64_t(1) << 20).why,
            zen5_measured.why);
  // The measured entry of the Xeon with AMX (family 6 model 167): its own split, packing and sharing.
  const CpuModel xeon_amx{"GenuineIntel", 6, 167};
  const ChosenBlocks amx_host = blocks_for_cpu("sgemm_avx512_14x32", table, 32, 4, xeon_amx, int64_t(2) << 20);
  EXPECT_EQ(amx_host.blocks.split, ThreadSplit::larger);
  EXPECT_EQ(amx_host.blocks.nc, 1024);
  EXPECT_TRUE(amx_host.blocks.a_once);
  EXPECT_TRUE(amx_host.blocks.private_blocks);
  EXPECT_NE(amx_host.why.find("model 167"), std::string::npos) << amx_host.why;
  ASSERT_NE(amx_host.ukernel, nullptr);
  EXPECT_STREQ(amx_host.ukernel, "sgemm_avx512_14x32_asm");
  EXPECT_EQ(measured.ukernel, nullptr) << "model 207 runs the kernel's own k loop";
  // A small L2 (256 KiB: no room for a B block) or an unknown one keeps the table.
  EXPECT_EQ(blocks_for_cpu("sgemm_avx2_6x16", table, 16, 4, other, 256 << 10).blocks.nc, table.nc);
  EXPECT_EQ(blocks_for_cpu("sgemm_avx512_14x32", table, 32, 4, zen5, 0).blocks.nc, table.nc);
  // Threads sharing an L2 (rows: A64FX) keep the table whatever the cache.
  const BlockSizes shared{120, 256, 4096, ThreadSplit::rows};
  EXPECT_EQ(blocks_for_cpu("sgemm_sve_10x32", shared, 32, 4, CpuModel{}, int64_t(8) << 20).blocks.nc, 4096);
  // What this process runs: the rule applied to this CPU.
  const GemmIsa isa = resolve_gemm_isa(GemmIsa::automatic);
  EXPECT_EQ(sgemm_blocks(isa).blocks.nc, sgemm_kernel(isa).blocks.nc);
  // Another nc gives the same bits (edge columns and k blocks do not move), at 1 and 2 threads.
  const int64_t m = 50, n = 2 * 1792 + 37, k = 300;
  const auto a = testing::random_vector<float>(m * k, 31), b = testing::random_vector<float>(k * n, 32);
  const auto c0 = testing::random_vector<float>(m * n, 33);
  for (const int threads : {1, 2}) {
    std::vector<std::vector<float>> got;
    for (const int64_t nc : {int64_t(800), int64_t(1792), sgemm_kernel(isa).blocks.nc}) {
      SgemmKernel kern = sgemm_kernel(isa);
      kern.blocks.nc = nc / kern.nr * kern.nr;
      got.push_back(c0);
      detail::gemm_native_kernel(GemmContext{GemmBackend::native, threads}, kern, Op::N, Op::N, m, n, k, 1.0f,
                                 a.data(), k, b.data(), n, 0.5f, got.back().data(), n);
    }
    EXPECT_EQ(got[0], got[1]) << threads << " thread(s)";
    EXPECT_EQ(got[0], got[2]) << threads << " thread(s)";
  }
}

// The vector packer against the generic one, bit for bit, on every edge: rows below, at and above
// a 16-lane group and a panel, several panels with a partial last one, partial 16-step k blocks,
// padded k, both orientations, leading dimensions larger than the block. The destination starts
// as NaN so a value the packer skips shows.
// Every tile width, row count, kc and padded kc the packer tests use, both orientations, leading
// dimensions larger than the block: f(R, rows, kc, kc_pad, k_contiguous, ld, lines of the source).
template <class F>
void for_each_packer_shape(F f) {
  for (int R : {6, 14, 16, 28, 32, 48})
    for (int64_t rows : {0, 1, 5, 13, 14, 15, 16, 17, 31, 32, 33, 47, 100})
      for (int64_t kc : {1, 15, 16, 17, 100, 256})
        for (int64_t extra : {0, 1})
          for (bool k_contiguous : {true, false}) {
            const int64_t ld = (k_contiguous ? kc : rows) + 3, lines = k_contiguous ? rows : kc;
            f(R, rows, kc, kc + extra, k_contiguous, ld, lines);
          }
}
std::string packer_shape(int R, int64_t rows, int64_t kc, int64_t kc_pad, bool k_contiguous) {
  return "R=" + std::to_string(R) + " rows=" + std::to_string(rows) + " kc=" + std::to_string(kc) +
         " kc_pad=" + std::to_string(kc_pad) + (k_contiguous ? " k-contiguous" : " row-contiguous");
}

// `packer` against `reference` followed by round_to(round) over the panels, bit for bit, on every
// packer shape; the destination starts as NaN so a skipped value shows. `special`: the source's
// values are bit patterns spread over every float (NaNs with payloads, infinities, subnormals,
// the largest values, halfway cases) instead of random values.
void check_packer(PanelPacker packer, PanelPacker reference, Precision round, bool special) {
  for_each_packer_shape([&](int R, int64_t rows, int64_t kc, int64_t kc_pad, bool k_contiguous, int64_t ld,
                            int64_t lines) {
    auto src = testing::random_vector<float>(size_t(std::max<int64_t>(1, lines * ld)), uint32_t(R + kc));
    if (special)
      for (size_t i = 0; i < src.size(); ++i)
        src[i] = std::bit_cast<float>(uint32_t(i * 0x9E3779B1u + uint32_t(R * 7919 + kc)));
    const int64_t panels = (rows + R - 1) / R;
    std::vector<float> want(size_t(panels * kc_pad * R) + 16, std::numeric_limits<float>::quiet_NaN());
    auto got = want;
    reference(src.data(), ld, k_contiguous, rows, kc, kc_pad, R, want.data());
    round_to(round, want.data(), panels * kc_pad * R);
    packer(src.data(), ld, k_contiguous, rows, kc, kc_pad, R, got.data());
    ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
        << name_of(round) << " " << packer_shape(R, rows, kc, kc_pad, k_contiguous)
        << (special ? ", special values" : "");
  });
}

TEST(PanelPacker, Avx512MatchesGeneric) {
#if defined(__x86_64__)
  if (!gemm_isa_supported(GemmIsa::avx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  check_packer(pack_panel_avx512, pack_panel_generic, Precision::fp32, false);
  check_packer(pack_panel_avx512, pack_panel_generic, Precision::fp32, true);
#else
  GTEST_SKIP() << "x86 only";
#endif
}

// The emulated 16-bit products' packers (fp16 everywhere, bf16 without a bf16 kernel) round while
// they pack: the bits of packing, then rounding the block (the driver's two passes before). The
// halfway cases, 65504 and 65520 (fp16's largest value and where nearest even overflows), the
// subnormals and the NaN payloads come up among the special values; the generic packer is also
// every shipped kernel's on CPUs without their own (SVE, AVX2).
TEST(PanelPacker, RoundingPackersMatchPackThenRound) {
  for (bool special : {false, true}) {
    check_packer(pack_panel_generic_bf16, pack_panel_generic, Precision::bf16, special);
    check_packer(pack_panel_generic_fp16, pack_panel_generic, Precision::fp16, special);
#if defined(__x86_64__)
    if (gemm_isa_supported(GemmIsa::avx512)) {
      check_packer(pack_panel_avx512_bf16, pack_panel_generic, Precision::bf16, special);
      check_packer(pack_panel_avx512_fp16, pack_panel_generic, Precision::fp16, special);
    }
#endif
  }
  // The values round_fp16 and round_bf16 treat apart, each through every packer.
  const std::vector<uint32_t> edges = {0x477fe000u, 0x477fefffu, 0x477ff000u, 0x477ff001u, 0x33800000u, 0x33000000u,
                                       0x33400000u, 0x38800000u, 0x387fe000u, 0x387ff000u, 0x00000001u, 0x80000000u,
                                       0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffa0beefu, 0x7f7fffffu,
                                       0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7f8000u};
  std::vector<float> src(edges.size());
  for (size_t i = 0; i < edges.size(); ++i) src[i] = std::bit_cast<float>(edges[i]);
  const int64_t n = int64_t(src.size()), R = 32;
  for (Precision p : {Precision::bf16, Precision::fp16}) {
    std::vector<PanelPacker> packers = {p == Precision::bf16 ? pack_panel_generic_bf16 : pack_panel_generic_fp16};
#if defined(__x86_64__)
    if (gemm_isa_supported(GemmIsa::avx512))
      packers.push_back(p == Precision::bf16 ? pack_panel_avx512_bf16 : pack_panel_avx512_fp16);
#endif
    for (PanelPacker packer : packers) {
      std::vector<float> got(size_t(R), std::numeric_limits<float>::quiet_NaN());
      packer(src.data(), n, false, n, 1, 1, int(R), got.data());  // one row of n values: the panel's first step
      for (int64_t i = 0; i < n; ++i)
        EXPECT_EQ(std::bit_cast<uint32_t>(round_to(p, src[size_t(i)])), std::bit_cast<uint32_t>(got[size_t(i)]))
            << name_of(p) << " of 0x" << std::hex << edges[size_t(i)];
    }
  }
}

// A 16-bit operand on an emulated path (fp16 everywhere, bf16 without a bf16 kernel) is packed
// straight from its patterns: the panels of widening the block (widen_rows) and packing the values,
// bit for bit, on every packer shape and on patterns of every kind (every 16-bit value comes up:
// subnormals, infinities, NaNs quiet and signalling, which vcvtph2ps alone would quiet).
void check_widening_packer(WideningPanelPacker packer, Precision p) {
  for_each_packer_shape([&](int R, int64_t rows, int64_t kc, int64_t kc_pad, bool k_contiguous, int64_t ld,
                            int64_t lines) {
    std::vector<uint16_t> bits(size_t(std::max<int64_t>(1, lines) * ld));
    for (size_t i = 0; i < bits.size(); ++i) bits[i] = uint16_t(i * 40503u + uint32_t(R * 31 + kc));
    std::vector<float> values(bits.size());
    widen_rows(p, bits.data(), ld, std::max<int64_t>(1, lines), ld, values.data());
    const int64_t panels = (rows + R - 1) / R;
    std::vector<float> want(size_t(panels * kc_pad * R) + 16, std::numeric_limits<float>::quiet_NaN());
    auto got = want;
    pack_panel_generic(values.data(), ld, k_contiguous, rows, kc, kc_pad, R, want.data());
    packer(bits.data(), ld, k_contiguous, rows, kc, kc_pad, R, got.data());
    ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
        << name_of(p) << " patterns, " << packer_shape(R, rows, kc, kc_pad, k_contiguous);
  });
}

TEST(PanelPacker, WideningPackersMatchWidenThenPack) {
  check_widening_packer(pack_panel_generic_from_bf16, Precision::bf16);
  check_widening_packer(pack_panel_generic_from_fp16, Precision::fp16);
#if defined(__x86_64__)
  if (gemm_isa_supported(GemmIsa::avx512)) {
    check_widening_packer(pack_panel_avx512_from_bf16, Precision::bf16);
    check_widening_packer(pack_panel_avx512_from_fp16, Precision::fp16);
  }
#endif
}

#if defined(__x86_64__)
// A direct 16-bit packer against pack_panel_avx512 + `convert` (its reference), bit for bit, for
// every tile width R, row count, kc and padded kc given (kc_pad(kc, extra) for each extra), both
// orientations, leading dimensions larger than the block. The destination starts as all ones so a
// skipped value shows.
void check_direct_packer(HalfPanelPacker direct, PanelConverter convert, std::initializer_list<int> Rs,
                         std::initializer_list<int64_t> row_counts, std::initializer_list<int64_t> kcs,
                         std::initializer_list<int64_t> extras, int64_t (*kc_pad_of)(int64_t kc, int64_t extra)) {
  for (int R : Rs)
    for (int64_t rows : row_counts)
      for (int64_t kc : kcs)
        for (int64_t extra : extras)
          for (bool k_contiguous : {true, false}) {
            const int64_t kc_pad = kc_pad_of(kc, extra), pad = 3;
            const int64_t ld = (k_contiguous ? kc : rows) + pad, lines = k_contiguous ? rows : kc;
            const auto src = testing::random_vector<float>(size_t(std::max<int64_t>(1, lines * ld)), uint32_t(R + kc));
            const int64_t panels = (rows + R - 1) / R;
            std::vector<uint16_t> want(size_t(panels * kc_pad * R) + 32, 0xFFFF);
            auto got = want;
            std::vector<float> scratch(size_t(kc_pad * R));
            for (int64_t r0 = 0; r0 < rows; r0 += R) {
              pack_panel_avx512(src.data() + r0 * (k_contiguous ? ld : 1), ld, k_contiguous,
                                std::min<int64_t>(R, rows - r0), kc, kc_pad, R, scratch.data());
              convert(scratch.data(), kc_pad, R, want.data() + r0 * kc_pad);
            }
            direct(src.data(), ld, k_contiguous, rows, kc, kc_pad, R, got.data());
            ASSERT_EQ(want, got) << "R=" << R << " rows=" << rows << " kc=" << kc << " kc_pad=" << kc_pad
                                 << (k_contiguous ? " k-contiguous" : " row-contiguous");
          }
}
#endif

// The direct bf16 pair packer against pack_panel_avx512 + interleave_bf16_avx512bf16 on every
// edge: both tile widths, rows around 16-lane groups and panels, odd kc (the last pair half
// padding), k chunks of 32 partly filled, kc_pad two pairs past kc.
TEST(PanelPacker, DirectBf16MatchesPackThenInterleave) {
#if defined(__x86_64__)
  if (!gemm_isa_supported(GemmIsa::avx512bf16)) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  check_direct_packer(pack_bf16_pairs_avx512bf16, interleave_bf16_avx512bf16, {6, 14, 28, 32},
                      {0, 1, 13, 14, 15, 16, 17, 31, 32, 33, 100}, {1, 2, 15, 16, 17, 31, 32, 33, 63, 100, 512},
                      {0, 2}, [](int64_t kc, int64_t extra_pairs) { return (kc + 1) / 2 * 2 + 2 * extra_pairs; });
#else
  GTEST_SKIP() << "x86 only";
#endif
}

// The pair packer reading bf16 patterns against the one reading their widened values, bit for bit,
// on the same edges as above.
TEST(PanelPacker, FromBf16MatchesFromWidenedValues) {
#if defined(__x86_64__)
  if (!gemm_isa_supported(GemmIsa::avx512bf16)) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  for (int R : {6, 14, 28, 32})
    for (int64_t rows : {0, 1, 13, 14, 15, 16, 17, 31, 32, 33, 100})
      for (int64_t kc : {1, 2, 15, 16, 17, 31, 32, 33, 63, 100, 512})
        for (int64_t extra_pairs : {0, 2})
          for (bool k_contiguous : {true, false}) {
            const int64_t kc_pad = (kc + 1) / 2 * 2 + 2 * extra_pairs, pad = 3;
            const int64_t ld = (k_contiguous ? kc : rows) + pad, lines = k_contiguous ? rows : kc;
            const auto src = testing::random_vector<float>(size_t(std::max<int64_t>(1, lines * ld)), uint32_t(R + kc));
            std::vector<uint16_t> bits(src.size());
            std::vector<float> values(src.size());
            narrow(Precision::bf16, src.data(), bits.data(), int64_t(src.size()));
            widen(Precision::bf16, bits.data(), values.data(), int64_t(bits.size()));
            const int64_t panels = (rows + R - 1) / R;
            std::vector<uint16_t> want(size_t(panels * kc_pad * R) + 32, 0xFFFF);
            auto got = want;
            pack_bf16_pairs_avx512bf16(values.data(), ld, k_contiguous, rows, kc, kc_pad, R, want.data());
            pack_bf16_pairs_from_bf16_avx512bf16(bits.data(), ld, k_contiguous, rows, kc, kc_pad, R, got.data());
            ASSERT_EQ(want, got) << "R=" << R << " rows=" << rows << " kc=" << kc << " kc_pad=" << kc_pad
                                 << (k_contiguous ? " k-contiguous" : " row-contiguous");
          }
#else
  GTEST_SKIP() << "x86 only";
#endif
}

// The direct AMX A packer against pack_panel_avx512 + rows_bf16_amx: rows around 16-row groups
// and panels, kc around the 32-k chunks, kc_pad one chunk past kc. The all-ones start shows a
// padding row or k left unzeroed (in a GEMM it hides: padding rows of A only reach discarded rows
// of C, and padded k meets B's zeros, unless it holds an Inf or NaN).
TEST(PanelPacker, DirectAmxRowsMatchPackThenRows) {
#if defined(__x86_64__)
  if (!gemm_isa_supported(GemmIsa::amx)) GTEST_SKIP() << "no AMX on this CPU";
  check_direct_packer(pack_bf16_rows_amx, rows_bf16_amx, {16, 32, 48}, {0, 1, 15, 16, 17, 31, 32, 33, 100},
                      {1, 2, 15, 16, 17, 31, 32, 33, 63, 100, 256}, {0, 32},
                      [](int64_t kc, int64_t extra) { return (kc + 31) / 32 * 32 + extra; });
#else
  GTEST_SKIP() << "x86 only";
#endif
}

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
  EXPECT_EQ(parse_name<GemmBackend>("onednn"), GemmBackend::onednn);
  EXPECT_THROW(parse_name<GemmBackend>("mkl"), std::invalid_argument);
}

}  // namespace
}  // namespace hokusai::kernels
