// The one matrix-product interface every layer calls.
//
// Contract (row-major, as in cblas with CblasRowMajor):
//   C(M,N) := alpha * op(A)(M,K) * op(B)(K,N) + beta * C(M,N)
//   op(X) = X    : A is stored (M,K) with lda >= K;  B is stored (K,N) with ldb >= N
//   op(X) = X^T  : A is stored (K,M) with lda >= M;  B is stored (N,K) with ldb >= K
//   ldc >= N. Any M, N, K >= 0; K == 0 scales C by beta. beta == 0 never reads C (C may hold NaN).
// The trainer uses three layouts: NT (forward: in · W^T), NN (input gradient: dout · W) and
// TN (weight gradient: dout^T · in).
//
// Backends: `native` (ours: BLIS-style driver kernels/gemm_native.cpp + per-ISA microkernels,
// contract in kernels/ukernel.hpp), `reference` (the scalar oracle, double accumulation),
// `openblas` (cblas_sgemm), `onednn` (dnnl_sgemm). The double-precision overload always runs
// the reference: it exists so gradient tests can run the whole model in double.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hokusai/names.hpp"

namespace hokusai::kernels {

enum class Op { N, T };

enum class GemmBackend { native, reference, openblas, onednn };

// True when this build contains the backend (OpenBLAS/oneDNN are build options).
bool gemm_backend_available(GemmBackend backend);

// Microkernel families of the native backend. `automatic` = the best this CPU runs, unless the
// environment variable HOKUSAI_GEMM_ISA=generic|avx2|avx512|avx512bf16|amx|sve forces one.
// x86 builds have generic, avx2, avx512, avx512bf16 and amx; aarch64 SVE builds have generic and
// sve. avx512bf16 and amx run fp32 products on the AVX-512 kernel and differ in gemm_bf16:
// vdpbf16ps (AVX512_BF16) or TDPBF16PS tiles (AMX-BF16; needs Linux to grant the tile state).
enum class GemmIsa { automatic, generic, avx2, avx512, avx512bf16, sve, amx };
bool gemm_isa_supported(GemmIsa isa);  // this CPU runs it
// Resolves `automatic` (CPUID, then HOKUSAI_GEMM_ISA); throws std::runtime_error when the forced
// ISA is not supported by this CPU.
GemmIsa resolve_gemm_isa(GemmIsa requested);
// Name of the fp32 microkernel an ISA uses, e.g. "sgemm_avx512_14x32", "sgemm_sve_10x32".
std::string_view sgemm_kernel_name(GemmIsa isa);

// Packing buffers of the native backend, reused across calls (fresh buffers cost page faults
// on every call). One workspace serves one caller at a time.
class GemmWorkspace {
 public:
  float* floats(size_t slot, size_t count);        // 64-byte aligned, grows as needed
  uint16_t* halves(size_t slot, size_t count);

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<void, Free>> buffers_;
  std::vector<size_t> bytes_;
  void* get(size_t slot, size_t bytes);
};

// The precision of the matrix products' inputs (train.precision). fp32: as given. bf16 / fp16:
// every input element is rounded to that format (nearest even; fp16 overflows to inf above 65504)
// and the products accumulate in fp32, C stays fp32. The native backend runs the CPU's 16-bit
// unit where it has one that accumulates in fp32 (bf16: AMX tiles or vdpbf16ps; fp16: none —
// A64FX's fp16 FMAs accumulate in fp16) and otherwise the fp32 microkernel on rounded panels: the
// same numbers at fp32 speed (emulated, see gemm_precision_path). The reference backend rounds,
// then multiplies in double. OpenBLAS and oneDNN have fp32 only: they throw.
enum class Precision { fp32, bf16, fp16 };
// Whether a CPU can have a unit for p's products as hokusai defines them (16-bit inputs, fp32
// accumulation): bf16 yes (AMX tiles, AVX512_BF16's vdpbf16ps); fp16 no — the fp16 FMAs that
// exist (A64FX's fmla z.h at 2x the fp32 rate, AVX512_FP16) accumulate in fp16, so fp16 products
// always run on the fp32 FMAs (rounded panels), whatever a CPU's fp16 peak. fp32: not 16-bit.
constexpr bool sixteen_bit_unit_can_exist(Precision p) { return p == Precision::bf16; }

struct GemmContext {
  GemmBackend backend = GemmBackend::native;
  int threads = 1;                     // threads the backend may use inside one call
  GemmIsa isa = GemmIsa::automatic;    // native backend only
  GemmWorkspace* workspace = nullptr;  // native backend: reused packing buffers (null: per call)
  Precision precision = Precision::fp32;  // float products only; the double overload ignores it
};

void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// What runs a context's products, e.g. "bf16 on sbgemm_avx512bf16_14x32", "bf16 emulated: bf16-rounded
// panels on sgemm_avx512_14x32 (isa avx512 has no bf16 kernel: ...)" or "fp16: fp16-rounded panels on
// sgemm_sve_10x32, fp32 accumulation (...)"; throws where gemm would.
std::string gemm_precision_path(const GemmContext& ctx);
// True when the products of ctx run on a 16-bit unit (false for fp32 and the emulated paths).
bool gemm_precision_native(const GemmContext& ctx);

// x rounded to the precision (nearest even), returned as fp32: the rounding gemm applies.
float round_to(Precision p, float x);
void round_to(Precision p, float* x, int64_t n);  // in place

// 16-bit storage (bf16 or fp16, not fp32): bits[i] := x[i] rounded to p, as its 16-bit pattern;
// x[i] := the value of bits[i]. widen(narrow(x)) == round_to(p, x) bit for bit (NaN stays NaN):
// what the model keeps of an activation that only ever enters a product. OpenMP over n.
void narrow(Precision p, const float* x, uint16_t* bits, int64_t n);
void widen(Precision p, const uint16_t* bits, float* x, int64_t n);
// The same on the calling thread, for a short run inside another kernel's loop (a norm's row).
void narrow_run(Precision p, const float* x, uint16_t* bits, int64_t n);
void widen_run(Precision p, const uint16_t* bits, float* x, int64_t n);
// rows x cols 16-bit patterns at leading dimension ld, widened into a dense rows x cols block (one thread).
void widen_rows(Precision p, const uint16_t* bits, int64_t ld, int64_t rows, int64_t cols, float* x);

// An operand of a product: fp32 values, or the 16-bit patterns of the context's precision (bf16 or
// fp16, as narrow() writes them) of values that are only ever multiplied — exactly one of the two
// set; ld in elements. The product is the same, bit for bit, as with the widened values (the
// precision rounds every input anyway, and widen(narrow(x)) is that rounding); the native bf16
// kernels pack bf16 patterns straight from the source, reading half the bytes; the fp32 kernels'
// packers widen them while packing (SgemmKernel::pack_from_bf16/fp16); the AMX kernel's A and the
// reference backend widen them first (a block at a time, the whole operand).
struct GemmOperand {
  const float* values = nullptr;
  const uint16_t* patterns = nullptr;
  int64_t ld = 0;
};
// C := alpha * op(A) · op(B) + beta * C as above, with either operand in 16 bits. Throws
// std::invalid_argument when an operand sets neither or both, or holds patterns while
// ctx.precision is fp32; std::runtime_error where the fp32 overload would.
void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha, const GemmOperand& a,
          const GemmOperand& b, float beta, float* c, int64_t ldc);

void gemm(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// C := alpha * bf16(op(A)) · bf16(op(B)) + beta * C with fp32 inputs and output: the inputs are
// rounded to bf16 (nearest even) while packing, products accumulate in fp32. Native backend with
// isa amx (AMX tiles) or avx512bf16 (vdpbf16ps); automatic picks amx, then avx512bf16, where the
// CPU has them. Throws std::runtime_error elsewhere.
void gemm_bf16(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace hokusai::kernels

// Names (hokusai/names.hpp): kernels.gemm in configs and bench flags; HOKUSAI_GEMM_ISA.
template <>
struct hokusai::Names<hokusai::kernels::GemmBackend> {
  using E = kernels::GemmBackend;
  static constexpr std::array<std::pair<E, std::string_view>, 4> table = {
      {{E::native, "native"}, {E::reference, "reference"}, {E::openblas, "openblas"}, {E::onednn, "onednn"}}};
};
template <>
struct hokusai::Names<hokusai::kernels::Precision> {
  using E = kernels::Precision;
  static constexpr std::array<std::pair<E, std::string_view>, 3> table = {
      {{E::fp32, "fp32"}, {E::bf16, "bf16"}, {E::fp16, "fp16"}}};
};
template <>
struct hokusai::Names<hokusai::kernels::GemmIsa> {
  using E = kernels::GemmIsa;
  static constexpr std::array<std::pair<E, std::string_view>, 7> table = {
      {{E::automatic, "automatic"}, {E::generic, "generic"}, {E::avx2, "avx2"}, {E::avx512, "avx512"},
       {E::avx512bf16, "avx512bf16"}, {E::amx, "amx"}, {E::sve, "sve"}}};
};
