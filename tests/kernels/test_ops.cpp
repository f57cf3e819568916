// The fast float kernels against their scalar references on random data, forward and backward,
// plus the accuracy of the vectorised exp that the fast kernels use.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>

#include "gradcheck.hpp"
#include "kernels/ops.hpp"
#include "kernels/ref/ops_ref.hpp"

namespace hokusai::kernels {
namespace {

using testing::random_vector;
using V = std::vector<float>;

// fp32 tolerance: relative 2e-5 of the largest reference magnitude (sums of <= 1k terms).
void expect_close(const V& got, const V& want, const char* what, double rel = 2e-5) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 1e-6;
  for (float w : want) scale = std::max(scale, double(std::abs(w)));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * scale) << what << "[" << i << "]";
}

constexpr int64_t B = 3, T = 37, NH = 4, HS = 16, C = 96, N = B * T, F = 72;

TEST(FastVsRef, LayerNorm) {
  V x = random_vector<float>(N * C, 1, -3, 3), w = random_vector<float>(C, 2), b = random_vector<float>(C, 3);
  V o1(N * C), o2(N * C), m1(N), m2(N), r1(N), r2(N);
  layernorm_forward(o1.data(), m1.data(), r1.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
  ref::layernorm_forward(o2.data(), m2.data(), r2.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
  expect_close(o1, o2, "out");
  V dy = random_vector<float>(N * C, 4), dx1(N * C), dx2(N * C), dw1(C), dw2(C), db1(C), db2(C);
  layernorm_backward(dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), w.data(), m2.data(), r2.data(), N, C);
  ref::layernorm_backward(dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), w.data(), m2.data(), r2.data(), N, C);
  expect_close(dx1, dx2, "dx");
  expect_close(dw1, dw2, "dw");
  expect_close(db1, db2, "db");
}

TEST(FastVsRef, RmsNorm) {
  V x = random_vector<float>(N * C, 5, -3, 3), w = random_vector<float>(C, 6);
  V o1(N * C), o2(N * C), r1(N), r2(N);
  rmsnorm_forward(o1.data(), r1.data(), x.data(), w.data(), N, C, 1e-5);
  ref::rmsnorm_forward(o2.data(), r2.data(), x.data(), w.data(), N, C, 1e-5);
  expect_close(o1, o2, "out");
  V dy = random_vector<float>(N * C, 7), dx1(N * C), dx2(N * C), dw1(C), dw2(C);
  rmsnorm_backward(dx1.data(), dw1.data(), dy.data(), x.data(), w.data(), r2.data(), N, C);
  ref::rmsnorm_backward(dx2.data(), dw2.data(), dy.data(), x.data(), w.data(), r2.data(), N, C);
  expect_close(dx1, dx2, "dx");
  expect_close(dw1, dw2, "dw");
}

// The norms in two halves against their references, and composed against the one-piece norms:
// the same outputs and gradients (so the model may keep xn instead of the norm's input).
TEST(FastVsRef, NormFromNormalizedRows) {
  for (const bool centered : {true, false}) {
    SCOPED_TRACE(centered ? "layernorm" : "rmsnorm");
    V x = random_vector<float>(N * C, 11, -3, 3), w = random_vector<float>(C, 12), b = random_vector<float>(C, 13);
    const float* bias = centered ? b.data() : nullptr;
    V xn1(N * C), xn2(N * C), r1(N), r2(N), o1(N * C), o2(N * C), whole(N * C), mean(N), rstd(N), rebuilt(N * C);
    norm_rows_forward(xn1.data(), o1.data(), r1.data(), x.data(), w.data(), bias, N, C, 1e-5, centered, Precision::fp32);
    ref::norm_rows_forward(xn2.data(), o2.data(), r2.data(), x.data(), w.data(), bias, N, C, 1e-5, centered,
                           Precision::fp32);
    expect_close(xn1, xn2, "xn");
    expect_close(r1, r2, "rstd");
    expect_close(o1, o2, "out");
    norm_scale_forward(rebuilt.data(), xn1.data(), w.data(), bias, N, C);
    EXPECT_EQ(rebuilt, o1) << "the rebuilt output differs from the forward's";
    ref::norm_scale_forward(rebuilt.data(), xn2.data(), w.data(), bias, N, C);
    expect_close(rebuilt, o2, "the reference's rebuild");
    if (centered)
      ref::layernorm_forward(whole.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
    else
      ref::rmsnorm_forward(whole.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5);
    expect_close(o1, whole, "out against the one-piece norm");
    V dy = random_vector<float>(N * C, 14), dx1(N * C), dx2(N * C), dxw(N * C), dw1(C), dw2(C), dww(C), db1(C),
      db2(C), dbw(C);
    norm_rows_backward(dx1.data(), dw1.data(), centered ? db1.data() : nullptr, dy.data(), xn1.data(), w.data(),
                       r1.data(), N, C, centered);
    ref::norm_rows_backward(dx2.data(), dw2.data(), centered ? db2.data() : nullptr, dy.data(), xn2.data(), w.data(),
                            r2.data(), N, C, centered);
    if (centered)
      ref::layernorm_backward(dxw.data(), dww.data(), dbw.data(), dy.data(), x.data(), w.data(), mean.data(),
                              rstd.data(), N, C);
    else
      ref::rmsnorm_backward(dxw.data(), dww.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
    for (const V* want : {&dx2, &dxw}) expect_close(dx1, *want, "dx");
    for (const V* want : {&dw2, &dww}) expect_close(dw1, *want, "dw");
    for (const V* want : {&db2, &dbw}) expect_close(db1, *want, "db");
    // Rounded where made (16-bit runs): every kept row is a 16-bit value, the output is made from
    // the rounded rows (so the rebuild gives it back bit for bit), the fast kernel as the reference.
    for (const Precision p : {Precision::bf16, Precision::fp16}) {
      V h1(N * C), h2(N * C), y1(N * C), y2(N * C), again(N * C);
      norm_rows_forward(h1.data(), y1.data(), r1.data(), x.data(), w.data(), bias, N, C, 1e-5, centered, p);
      ref::norm_rows_forward(h2.data(), y2.data(), r2.data(), x.data(), w.data(), bias, N, C, 1e-5, centered, p);
      for (int64_t i = 0; i < N * C; ++i) ASSERT_EQ(h1[i], round_to(p, h1[i])) << name_of(p) << " xn[" << i << "]";
      V rounded = xn1;
      round_to(p, rounded.data(), N * C);
      EXPECT_EQ(h1, rounded) << name_of(p) << ": the kept rows are the fp32 rows rounded";
      norm_scale_forward(again.data(), h1.data(), w.data(), bias, N, C);
      EXPECT_EQ(again, y1) << name_of(p);
      expect_close(h1, h2, "rounded xn", 1e-2);
      expect_close(y1, y2, "out from rounded xn", 1e-2);
    }
  }
}

// The norms keeping their rows as 16-bit patterns: every value bit for bit what the float
// kernels make and read from the widened rows (so a 16-bit run keeps no fp32 copy of them, and
// trains the same numbers), and the reference's the same.
TEST(FastVsRef, NormRowsAsPatterns) {
  using P16 = std::vector<uint16_t>;
  for (const bool centered : {true, false})
    for (const Precision p : {Precision::bf16, Precision::fp16}) {
      SCOPED_TRACE(std::string(centered ? "layernorm " : "rmsnorm ") + std::string(name_of(p)));
      V x = random_vector<float>(N * C, 21, -3, 3), w = random_vector<float>(C, 22), b = random_vector<float>(C, 23);
      const float* bias = centered ? b.data() : nullptr;
      V xn(N * C), o(N * C), r(N), o16(N * C), r16(N), wide(N * C), rebuilt(N * C), rebuilt16(N * C);
      P16 bits(N * C), bits_ref(N * C);
      norm_rows_forward(xn.data(), o.data(), r.data(), x.data(), w.data(), bias, N, C, 1e-5, centered, p);
      norm_rows_forward_bits(bits.data(), o16.data(), r16.data(), x.data(), w.data(), bias, N, C, 1e-5, centered, p);
      widen(p, bits.data(), wide.data(), N * C);
      EXPECT_EQ(wide, xn) << "the patterns hold the rounded rows";
      EXPECT_EQ(o16, o);
      EXPECT_EQ(r16, r);
      norm_scale_forward(rebuilt.data(), xn.data(), w.data(), bias, N, C);
      norm_scale_forward_bits(rebuilt16.data(), bits.data(), p, w.data(), bias, N, C);
      EXPECT_EQ(rebuilt16, rebuilt);
      V dy = random_vector<float>(N * C, 24), dx = random_vector<float>(N * C, 25), dw = random_vector<float>(C, 26),
        db = random_vector<float>(C, 27);
      V dx16 = dx, dw16 = dw, db16 = db, dxr = dx, dwr = dw, dbr = db;
      norm_rows_backward(dx.data(), dw.data(), centered ? db.data() : nullptr, dy.data(), xn.data(), w.data(), r.data(),
                         N, C, centered);
      norm_rows_backward_bits(dx16.data(), dw16.data(), centered ? db16.data() : nullptr, dy.data(), bits.data(), p,
                              w.data(), r.data(), N, C, centered);
      EXPECT_EQ(dx16, dx);
      EXPECT_EQ(dw16, dw);
      EXPECT_EQ(db16, db);
      // The references: the same through fp32 copies.
      V o_ref(N * C), r_ref(N), rebuilt_ref(N * C);
      ref::norm_rows_forward_bits(bits_ref.data(), o_ref.data(), r_ref.data(), x.data(), w.data(), bias, N, C, 1e-5,
                                  centered, p);
      int64_t differ = 0;  // a value on a rounding boundary may round the other way from double arithmetic
      for (int64_t i = 0; i < N * C; ++i) differ += bits[size_t(i)] != bits_ref[size_t(i)];
      EXPECT_LE(differ, N * C / 100) << "patterns differing from the reference's";
      expect_close(o16, o_ref, "out", 1e-2);
      ref::norm_scale_forward_bits(rebuilt_ref.data(), bits.data(), p, w.data(), bias, N, C);
      expect_close(rebuilt16, rebuilt_ref, "rebuilt");
      ref::norm_rows_backward_bits(dxr.data(), dwr.data(), centered ? dbr.data() : nullptr, dy.data(), bits.data(), p,
                                   w.data(), r.data(), N, C, centered);
      expect_close(dx16, dxr, "dx", 1e-4);
      expect_close(dw16, dwr, "dw", 1e-4);
      expect_close(db16, dbr, "db", 1e-4);
    }
  // fp32 has no patterns: a clear error, not a silent copy.
  std::vector<uint16_t> bits(N * C);
  V o(N * C), r(N), x(N * C), w(C);
  EXPECT_THROW(norm_rows_forward_bits(bits.data(), o.data(), r.data(), x.data(), w.data(), nullptr, N, C, 1e-5, false,
                                      Precision::fp32),
               std::invalid_argument);
}

TEST(FastVsRef, GeluAndSwiglu) {
  V x = random_vector<float>(N * 2 * F, 8, -6, 6), dy = random_vector<float>(N * 2 * F, 9);
  V o1(N * 2 * F), o2(N * 2 * F), d1(N * 2 * F), d2(N * 2 * F);
  gelu_forward(o1.data(), x.data(), N * 2 * F);
  ref::gelu_forward(o2.data(), x.data(), N * 2 * F);
  expect_close(o1, o2, "gelu");
  gelu_backward(d1.data(), dy.data(), x.data(), N * 2 * F);
  ref::gelu_backward(d2.data(), dy.data(), x.data(), N * 2 * F);
  expect_close(d1, d2, "gelu_backward");
  // In place: the same values gelu_backward adds into zeros, bit for bit; and the reference's.
  V zeroed(N * 2 * F, 0.0f), in_place = dy, in_place_ref = dy;
  gelu_backward(zeroed.data(), dy.data(), x.data(), N * 2 * F);
  gelu_backward_in_place(in_place.data(), x.data(), N * 2 * F);
  EXPECT_EQ(in_place, zeroed) << "gelu_backward_in_place";
  ref::gelu_backward_in_place(in_place_ref.data(), x.data(), N * 2 * F);
  expect_close(in_place, in_place_ref, "gelu_backward_in_place");
  V s1(N * F), s2(N * F), e1(N * 2 * F), e2(N * 2 * F);
  swiglu_forward(s1.data(), x.data(), N, F);
  ref::swiglu_forward(s2.data(), x.data(), N, F);
  expect_close(s1, s2, "swiglu");
  swiglu_backward(e1.data(), dy.data(), x.data(), N, F);
  ref::swiglu_backward(e2.data(), dy.data(), x.data(), N, F);
  expect_close(e1, e2, "swiglu_backward");
}

// GELU and SwiGLU reading their input as 16-bit patterns: bit for bit the float kernels on the
// widened input; the references the same through fp32 copies.
TEST(FastVsRef, ActivationsFromPatterns) {
  for (const Precision p : {Precision::bf16, Precision::fp16}) {
    SCOPED_TRACE(std::string(name_of(p)));
    const int64_t n = N * 2 * F;
    V x = random_vector<float>(n, 31, -6, 6), dy = random_vector<float>(n, 32);
    std::vector<uint16_t> bits(n);
    narrow(p, x.data(), bits.data(), n);
    widen(p, bits.data(), x.data(), n);  // x: the values the patterns hold
    V o(n), o16(n), o_ref(n), g = dy, g16 = dy, g_ref = dy;
    gelu_forward(o.data(), x.data(), n);
    gelu_forward_bits(o16.data(), bits.data(), p, n);
    EXPECT_EQ(o16, o) << "gelu";
    ref::gelu_forward_bits(o_ref.data(), bits.data(), p, n);
    expect_close(o16, o_ref, "gelu against the reference");
    gelu_backward_in_place(g.data(), x.data(), n);
    gelu_backward_in_place_bits(g16.data(), bits.data(), p, n);
    EXPECT_EQ(g16, g) << "gelu backward";
    ref::gelu_backward_in_place_bits(g_ref.data(), bits.data(), p, n);
    expect_close(g16, g_ref, "gelu backward against the reference");
    V s(N * F), s16(N * F), s_ref(N * F), d = random_vector<float>(n, 33), d16 = d, d_ref = d;
    swiglu_forward(s.data(), x.data(), N, F);
    swiglu_forward_bits(s16.data(), bits.data(), p, N, F);
    EXPECT_EQ(s16, s) << "swiglu";
    ref::swiglu_forward_bits(s_ref.data(), bits.data(), p, N, F);
    expect_close(s16, s_ref, "swiglu against the reference");
    swiglu_backward(d.data(), dy.data(), x.data(), N, F);
    swiglu_backward_bits(d16.data(), dy.data(), bits.data(), p, N, F);
    EXPECT_EQ(d16, d) << "swiglu backward";
    ref::swiglu_backward_bits(d_ref.data(), dy.data(), bits.data(), p, N, F);
    expect_close(d16, d_ref, "swiglu backward against the reference");
  }
  std::vector<uint16_t> bits(8);
  V o(8);
  EXPECT_THROW(gelu_forward_bits(o.data(), bits.data(), Precision::fp32, 8), std::invalid_argument);
}

TEST(FastVsRef, Rope) {
  for (const int64_t KV : {NH, int64_t(1)}) {  // multi-head; multi-query (the v heads stay untouched)
    const int64_t W = (NH + 2 * KV) * HS;
    V qkv = random_vector<float>(N * W, 10, -2, 2), q2 = qkv;
    rope_forward(qkv.data(), B, T, NH, KV, HS, 10000.0);
    ref::rope_forward(q2.data(), B, T, NH, KV, HS, 10000.0);
    expect_close(qkv, q2, "rope");
    V d1 = random_vector<float>(N * W, 11, -2, 2), d2 = d1;
    rope_backward(d1.data(), B, T, NH, KV, HS, 10000.0);
    ref::rope_backward(d2.data(), B, T, NH, KV, HS, 10000.0);
    expect_close(d1, d2, "rope_backward");
  }
}

// Flash attention's row exponentials against exp in double: every value to 4e-7 x (1 + |x - shift|)
// relative (the vectorised exp is ~2 ulp; x - shift rounded to float first is what scales with
// its size), the sum to 4e-6, on rows of lengths around a vector (0, 1, 15, 16, 17, 300) whose
// values lie up to 30 below the shift, as after a running max.
TEST(FastVsRef, ExpShifted) {
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(15), int64_t(16), int64_t(17), int64_t(300)}) {
    const V x = random_vector<float>(n, 21 + n, -30, 0.5f);
    V fast = x, slow = x;
    const float s1 = exp_shifted(fast.data(), n, 0.5f), s2 = ref::exp_shifted(slow.data(), n, 0.5f);
    for (int64_t j = 0; j < n; ++j)
      ASSERT_NEAR(fast[size_t(j)], slow[size_t(j)], 4e-7 * slow[size_t(j)] * (1.0 + std::abs(x[size_t(j)] - 0.5)))
          << "n " << n << " x " << x[size_t(j)];
    EXPECT_NEAR(s1, s2, 4e-6 * s2 + 1e-30) << "sum, n " << n;
  }
}

// A tile's causal probabilities from the log-sum-exp: each row's visible keys to exp_shifted's
// tolerance, the masked ones exactly 0, nothing past n touched; the diagonal before, inside and
// past the tile, rows shorter than their stride and around a vector's length.
TEST(FastVsRef, CausalProbabilities) {
  const int64_t rows = 19, ld = 40;
  for (const int64_t n : {int64_t(1), int64_t(15), int64_t(17), int64_t(40)})
    for (const int64_t diagonal : {int64_t(-25), int64_t(-3), int64_t(0), int64_t(7), int64_t(33), int64_t(60)}) {
      const V x = random_vector<float>(rows * ld, 31 + n, -30, 0.5f), lse = random_vector<float>(rows, 32, -1, 1);
      V fast = x, slow = x;
      causal_probabilities(fast.data(), ld, rows, n, lse.data(), diagonal);
      ref::causal_probabilities(slow.data(), ld, rows, n, lse.data(), diagonal);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < ld; ++j) {
          const size_t at = size_t(i * ld + j);
          if (j >= n)
            ASSERT_EQ(fast[at], x[at]) << "past n: row " << i << " col " << j;
          else if (j > diagonal + i)
            ASSERT_EQ(fast[at], 0.0f) << "masked: row " << i << " col " << j << " diagonal " << diagonal;
          else
            ASSERT_NEAR(fast[at], slow[at], 4e-7 * slow[at] * (1.0 + std::abs(x[at] - lse[size_t(i)])))
                << "row " << i << " col " << j << " diagonal " << diagonal;
        }
    }
}

// Elementwise: the same bits as the scalar loop (rows shorter than their stride, tails).
TEST(FastVsRef, SoftmaxGradRows) {
  for (const int64_t n : {int64_t(1), int64_t(17), int64_t(64), int64_t(250)}) {
    const int64_t rows = 5, ld = n + 7;
    const V p = random_vector<float>(rows * ld, 3 + n, 0, 1), delta = random_vector<float>(rows, 4 + n, -1, 1);
    const V d0 = random_vector<float>(rows * ld, 5 + n, -2, 2);
    V fast = d0, slow = d0;
    softmax_grad_rows(fast.data(), p.data(), delta.data(), 0.125f, rows, n, ld);
    ref::softmax_grad_rows(slow.data(), p.data(), delta.data(), 0.125f, rows, n, ld);
    ASSERT_EQ(fast, slow) << "n " << n;  // also the untouched stride padding
  }
}

TEST(FastVsRef, SoftmaxCrossEntropy) {
  const int64_t Vp = 320, Vr = 257;
  V logits = random_vector<float>(N * Vp, 12, -8, 8);
  std::vector<int32_t> targets(N);
  for (int64_t i = 0; i < N; ++i) targets[i] = i % 7 == 0 ? -1 : int32_t(i * 31 % Vr);
  V l1(N), l2(N), z1(N), z2(N);
  softmax_xent_forward(l1.data(), z1.data(), logits.data(), targets.data(), N, Vp, Vr);
  ref::softmax_xent_forward(l2.data(), z2.data(), logits.data(), targets.data(), N, Vp, Vr);
  expect_close(l1, l2, "loss");
  V dl = random_vector<float>(N, 13), g1(N * Vp), g2(N * Vp);
  softmax_xent_backward(g1.data(), dl.data(), logits.data(), z2.data(), targets.data(), N, Vp, Vr, 0);
  ref::softmax_xent_backward(g2.data(), dl.data(), logits.data(), z2.data(), targets.data(), N, Vp, Vr, 0);
  expect_close(g1, g2, "dlogits");
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = Vr; j < Vp; ++j) ASSERT_EQ(g1[i * Vp + j], 0.0f) << "padding column got a gradient";
  // Overwritten, not added (stale values vanish), and in place over the logits: the same result.
  V stale(N * Vp, 7.0f), inplace = logits;
  for (auto* k : {+[](float* g, const float* dl, const float* l, const float* z, const int32_t* t, int64_t n,
                      int64_t vp, int64_t vr) { softmax_xent_backward(g, dl, l, z, t, n, vp, vr, int64_t(0)); },
                  +[](float* g, const float* dl, const float* l, const float* z, const int32_t* t, int64_t n,
                      int64_t vp, int64_t vr) { ref::softmax_xent_backward(g, dl, l, z, t, n, vp, vr, int64_t(0)); }}) {
    std::fill(stale.begin(), stale.end(), 7.0f);
    k(stale.data(), dl.data(), logits.data(), z2.data(), targets.data(), N, Vp, Vr);
    expect_close(stale, g2, "dlogits over stale values");
    inplace = logits;
    k(inplace.data(), dl.data(), inplace.data(), z2.data(), targets.data(), N, Vp, Vr);
    expect_close(inplace, g2, "dlogits in place of the logits");
  }
}

// fill_zero at sizes around its threading threshold, chunk edges and its streaming threshold
// (32 MiB: non-temporal stores, a start off the 64-byte line): exactly [0, n) zeroed.
TEST(FastVsRef, FillZeroTouchesExactlyItsRange) {
  for (int64_t n : {int64_t(0), int64_t(5), int64_t(4 << 16) - 1, int64_t(4 << 16), int64_t(5 << 16) + 3,
                    int64_t(8 << 20) - 1, int64_t(8 << 20) + 7}) {
    V x(size_t(n) + 8, 3.0f);
    fill_zero(x.data() + 4, n);
    for (int64_t i = 0; i < n + 8; ++i)
      ASSERT_EQ(x[size_t(i)], i >= 4 && i < n + 4 ? 0.0f : 3.0f) << "n " << n << " i " << i;
  }
}

// The row pieces the vocabulary-parallel cross-entropy calls, at lengths around the vector widths.
TEST(FastVsRef, RowMaxAndSumExp) {
  for (int64_t n : {int64_t(1), int64_t(15), int64_t(16), int64_t(17), int64_t(257), int64_t(25128)}) {
    const V x = random_vector<float>(n, 14 + n, -8, 8);
    const float m1 = row_max(x.data(), n), m2 = ref::row_max(x.data(), n);
    ASSERT_EQ(m1, m2) << "row_max, n " << n;
    const double s1 = sum_exp(x.data(), n, m1), s2 = ref::sum_exp(x.data(), n, m2);
    EXPECT_NEAR(s1, s2, 4e-6 * s2) << "sum_exp, n " << n;
  }
  // The maximum at every position of rows around the two-vector body (32 floats) and its tail, all
  // values negative (a lane left at its start, or a value skipped, shows).
  for (int64_t n : {int64_t(31), int64_t(32), int64_t(33), int64_t(64), int64_t(65), int64_t(97)})
    for (int64_t at = 0; at < n; ++at) {
      V x = random_vector<float>(n, 7 + n, -9, -2);
      x[size_t(at)] = -1.5f;
      ASSERT_EQ(row_max(x.data(), n), -1.5f) << "row_max, n " << n << ", maximum at " << at;
    }
}

TEST(FastVsRef, EmbeddingBiasResidualAdamW) {
  const int64_t Vl = 50;
  std::vector<int32_t> tokens(N);
  for (int64_t i = 0; i < N; ++i) tokens[i] = int32_t(i * 13 % 70);  // some outside [10, 60)
  V wte = random_vector<float>(Vl * C, 14), wpe = random_vector<float>(T * C, 15);
  V o1(N * C), o2(N * C);
  embedding_forward(o1.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, 10, Vl);
  ref::embedding_forward(o2.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, 10, Vl);
  expect_close(o1, o2, "embedding");
  V dy = random_vector<float>(N * C, 16), a1(Vl * C), a2(Vl * C), p1(T * C), p2(T * C);
  embedding_backward(a1.data(), p1.data(), dy.data(), tokens.data(), B, T, C, 10, Vl);
  ref::embedding_backward(a2.data(), p2.data(), dy.data(), tokens.data(), B, T, C, 10, Vl);
  expect_close(a1, a2, "dwte");
  expect_close(p1, p2, "dwpe");
  V bias1(C), bias2(C);
  bias_backward(bias1.data(), dy.data(), N, C);
  ref::bias_backward(bias2.data(), dy.data(), N, C);
  expect_close(bias1, bias2, "dbias");
  V r1(N * C), r2(N * C);
  residual_forward(r1.data(), o1.data(), dy.data(), N * C);
  ref::residual_forward(r2.data(), o2.data(), dy.data(), N * C);
  expect_close(r1, r2, "residual");
  EXPECT_NEAR(sum_squares(dy.data(), N * C), ref::sum_squares(dy.data(), N * C), 1e-9 * N * C);
  V p = random_vector<float>(4096, 17), g = random_vector<float>(4096, 18), m(4096), v(4096);
  V pr = p, mr = m, vr = v;
  for (int64_t step = 1; step <= 3; ++step) {
    const AdamWParams hp{1e-3, 0.9, 0.95, 1e-8, 0.1, step, step == 2 ? 0.37 : 1.0};  // step 2 clipped
    adamw_update(p.data(), g.data(), m.data(), v.data(), 4096, hp);
    ref::adamw_update(pr.data(), g.data(), mr.data(), vr.data(), 4096, hp);
  }
  expect_close(p, pr, "adamw");
}

// The clipping factor applied as AdamW reads the gradients gives the bits of the scaling pass it
// replaced (kernels::scale, then the update at grad_scale 1): the trainer's updates are unchanged.
TEST(FastKernels, AdamWGradScaleEqualsScalingFirst) {
  const V p0 = random_vector<float>(5000, 31), g = random_vector<float>(5000, 32);
  const float s = 0.3721f;
  V p1 = p0, m1(5000), v1(5000), p2 = p0, m2(5000), v2(5000), scaled = g;
  AdamWParams hp{1e-3, 0.9, 0.95, 1e-8, 0.1, 1};
  scale(scaled.data(), s, 5000);
  adamw_update(p1.data(), scaled.data(), m1.data(), v1.data(), 5000, hp);
  hp.grad_scale = double(s);
  adamw_update(p2.data(), g.data(), m2.data(), v2.data(), 5000, hp);
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(v1, v2);
  EXPECT_NE(p1, p0);
}

// Determinism: the fast kernels give bit-identical results at 1 and 2 threads (they never
// reduce across threads), which the run-to-run determinism of training relies on.
TEST(FastKernels, SameBitsAtAnyThreadCount) {
  V x = random_vector<float>(N * C, 19), w = random_vector<float>(C, 20), dy = random_vector<float>(N * C, 21);
  const auto run = [&](int threads) {
    omp_set_num_threads(threads);
    V dx(N * C), dw(C), r(N);
    rmsnorm_forward(dx.data(), r.data(), x.data(), w.data(), N, C, 1e-5);
    rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), r.data(), N, C);
    dx.insert(dx.end(), dw.begin(), dw.end());
    dx.push_back(float(sum_squares(dx.data(), N * C)));
    return dx;
  };
  const V one = run(1), two = run(2);
  omp_set_num_threads(2);
  ASSERT_EQ(one, two);
}

}  // namespace
}  // namespace hokusai::kernels
