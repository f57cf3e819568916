// The native GEMM: a BLIS-style five-loop driver around the microkernels of kernels/ukernel.hpp.
//
//   for pc (kc of the k dimension)   [a_once: A rows packed once for the whole k block]
//    for jc (nc columns of C)        B block kc x nc packed once per (pc, jc), shared by threads
//     for ic (mc rows, this thread's share of M)   A block mc x kc packed per thread
//      for ir (MR) / jr (NR)                       microkernel on one MR x NR tile of C
//
// Every tile of C sums its k blocks in the order pc = 0, kc, 2kc, ... whatever the column
// blocks, the thread split or the A packing, so all of them give the same bits.
//
// ir outside jr: one A micro-panel (MR x kc, 14 KiB) stays in L1 while the B micro-panels
// stream past it; measured +15% over jr outside ir (1 thread, 2048^3: 127 -> 147 GFLOP/s).
//
// Blocks are the table's sizes evened out over the extent (balanced(): k = 5184 is 21 passes of
// 248, not 20 of 256 and one of 64; n = 3456 two B blocks of 1728, not 3072 + 384 with A packed
// again for the sliver): +6% on (2048, 3456, 5184). The threads split the product as the kernel's
// table says (ThreadSplit, kernels/ukernel.hpp): M in MR units with one shared B block (each packs
// a contiguous share of its panels; one barrier before and after use) where cores share an L2, or
// N in NR units, each thread its own B block and no barrier, where they do not (x86). With
// BlockSizes::a_once (where a thread has more than one column block, and at most kMaxAOnceBytes
// of it), A is packed once per k block instead of once per (k block, column block):
// by columns the threads pack a share each into one buffer (a barrier before and after use), by
// rows each its own rows. With BlockSizes::private_blocks nothing is shared: under the rows split
// every thread packs the whole B block into its own buffer, under the columns split all of A, and
// no barrier is left (measured on Zen 5: +1.6-1.9% where B was shared). Packing
// applies op(A)/op(B), so NN, NT, TN and TT differ only in how panels are read, never by a
// materialised transpose; panels are zero-padded to MR/NR
// (and k to the kernel's k step: 2 for vdpbf16ps, 32 for AMX), so the microkernels see full
// tiles only.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/gemm.hpp"
#include "kernels/gemm_backends.hpp"
#include "kernels/gemm_tuning.hpp"

namespace hokusai::kernels {

void* GemmWorkspace::get(size_t slot, size_t bytes) {
  if (slot >= buffers_.size()) {
    buffers_.resize(slot + 1);
    bytes_.resize(slot + 1, 0);
  }
  if (bytes_[slot] < bytes) {
    const size_t rounded = (bytes + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    buffers_[slot].reset(p);
    bytes_[slot] = rounded;
  }
  return buffers_[slot].get();
}
float* GemmWorkspace::floats(size_t slot, size_t count) { return static_cast<float*>(get(slot, count * 4)); }
uint16_t* GemmWorkspace::halves(size_t slot, size_t count) { return static_cast<uint16_t*>(get(slot, count * 2)); }

namespace {

// An operand: fp32 values (p) or 16-bit patterns of the context's precision (h), one of them set.
struct Matrix {
  Op op;
  const float* p;
  int64_t ld;
  const uint16_t* h = nullptr;
};

// The panel of op(A) rows [i0, i0+rows) or of op(B) columns [j0, j0+cols), k-range [p0, p0+kc),
// as the kernel's packer sees it (kernels/ukernel.hpp: PanelPacker): values at src, or patterns at half.
struct PanelSource {
  const float* src;
  int64_t ld;
  bool k_contiguous;
  const uint16_t* half = nullptr;
};
PanelSource at(const Matrix& X, int64_t offset, bool k_contiguous) {
  return X.h ? PanelSource{nullptr, X.ld, k_contiguous, X.h + offset} : PanelSource{X.p + offset, X.ld, k_contiguous};
}
PanelSource a_panel(const Matrix& A, int64_t i0, int64_t p0) {
  return A.op == Op::N ? at(A, i0 * A.ld + p0, true) : at(A, p0 * A.ld + i0, false);
}
PanelSource b_panel(const Matrix& B, int64_t p0, int64_t j0) {
  return B.op == Op::N ? at(B, p0 * B.ld + j0, false) : at(B, j0 * B.ld + p0, true);
}

// A panel source of 16-bit patterns widened into `values` (rows x kc, dense, its k order kept):
// what a packer without a 16-bit reader packs instead. The same values the patterns stand for.
PanelSource widened(Precision p, const PanelSource& x, int64_t rows, int64_t kc, float* values) {
  if (x.k_contiguous) {
    widen_rows(p, x.half, x.ld, rows, kc, values);
    return {values, kc, true};
  }
  widen_rows(p, x.half, x.ld, kc, rows, values);
  return {values, rows, false};
}

// A microkernel with its packed element type, its k granularity (k is padded with zeros to a
// multiple of it) and, for 16-bit panels, the converters from a packed fp32 panel (kc_pad x R)
// to its own layout (A panels may differ: AMX reads them row by row). fp32 panels are packed in
// place; 16-bit panels go through an fp32 scratch panel per thread, or straight into their
// layout where the kernel has a direct packer for it (direct_a, direct_b).
template <typename Packed, typename Ukernel>
struct KernelPath {
  using P = Packed;
  Ukernel uk;
  PanelPacker pack;
  int step = 1;
  PanelConverter convert_b = nullptr, convert_a = nullptr;
  HalfPanelPacker direct_b = nullptr, direct_a = nullptr;
  void (*thread_begin)() = nullptr;
  void (*thread_end)() = nullptr;
  // 16-bit operands: their patterns' precision, and the packers that read them (null: widened first):
  // HalfSourcePacker for 16-bit panels, WideningPanelPacker for fp32 ones.
  using FromHalfPacker = void (*)(const uint16_t* src, int64_t ld, bool k_contiguous, int64_t rows, int64_t kc,
                                  int64_t kc_pad, int R, Packed* dst);
  Precision patterns = Precision::fp32;
  FromHalfPacker from_half_b = nullptr, from_half_a = nullptr;
  // The first `rows` rows of a tile (kernels that have one: SgemmKernel::edge, SbgemmKernel::edge).
  void (*edge)(int rows, int64_t k, const P* a, const P* b, float* c, int64_t ldc, float alpha, float beta) = nullptr;
  void run(int64_t k, const P* a, const P* b, float* c, int64_t ldc, float alpha, float beta) const {
    uk(k, a, b, c, ldc, alpha, beta);
  }
};
using Fp32Path = KernelPath<float, SgemmUkernel>;
using HalfPath = KernelPath<uint16_t, SbgemmUkernel>;  // bf16 or fp16 panels (the kernel's layout)

template <typename Path>
typename Path::P* packed(GemmWorkspace& ws, size_t slot, size_t count) {
  if constexpr (std::is_same_v<typename Path::P, float>)
    return ws.floats(slot, count);
  else
    return ws.halves(slot, count);
}

// `rows` rows of x into consecutive micro-panels of width R: fp32 panels, and 16-bit ones with a
// direct packer, in one packer call over the block; other 16-bit ones a panel at a time through
// the fp32 scratch panel. A source of 16-bit patterns goes to the path's packer for them, or is
// widened into `values` (rows x kc floats) first.
template <typename Path>
void pack_block(const Path& path, PanelSource x, int64_t rows, int64_t kc, int64_t kc_pad, int R,
                PanelConverter convert, HalfPanelPacker direct, typename Path::FromHalfPacker from_half,
                typename Path::P* dst, float* scratch, float* values) {
  if (x.half) {
    if (from_half) return from_half(x.half, x.ld, x.k_contiguous, rows, kc, kc_pad, R, dst);
    x = widened(path.patterns, x, rows, kc, values);
  }
  if constexpr (std::is_same_v<typename Path::P, float>) {
    path.pack(x.src, x.ld, x.k_contiguous, rows, kc, kc_pad, R, dst);
  } else if (direct) {
    direct(x.src, x.ld, x.k_contiguous, rows, kc, kc_pad, R, dst);
  } else {
    for (int64_t r0 = 0; r0 < rows; r0 += R) {
      const float* src = x.src + r0 * (x.k_contiguous ? x.ld : 1);
      path.pack(src, x.ld, x.k_contiguous, std::min<int64_t>(R, rows - r0), kc, kc_pad, R, scratch);
      convert(scratch, kc_pad, R, dst + r0 * kc_pad);
    }
  }
}

constexpr int kMaxTile = 2048;

// The block size for `extent` values with at most `max_block` per block, equal blocks rounded up
// to `unit`: k = 5184 in blocks of <= 256 is 21 x 248 (the last one 224), not 20 x 256 + 64, whose
// short last pass costs as many C updates as a full one.
int64_t balanced(int64_t extent, int64_t max_block, int64_t unit) {
  const int64_t blocks = std::max<int64_t>(1, (extent + max_block - 1) / max_block);
  const int64_t size = ((extent + blocks - 1) / blocks + unit - 1) / unit * unit;
  return std::min(size, (max_block + unit - 1) / unit * unit);
}

// The largest A buffer packed once per k block (BlockSizes::a_once). Measured on Zen 5 (1 MiB L2,
// bench_gemm --shapes gpt2-train --a-packing mc,once, 2026-12-04): at up to 3 MB (the weight
// gradients' (3072, 768, 1024) TN at 1 thread) A once is level with or ahead of per-mc packing;
// gpt2's head weight gradient, (50304, 768, 1024) TN, packs 25 MB per thread (51 MB at 1 thread)
// and ran 0.57-0.61x the per-mc rate in a memory-contended sitting (fp32 and bf16, interleaved in
// one process), level when quiet.
inline constexpr int64_t kMaxAOnceBytes = int64_t(4) << 20;

template <typename Path>
void blocked(const Path& path, int MR, int NR, BlockSizes bs, int threads, GemmWorkspace& ws, const Matrix& A,
             const Matrix& B, int64_t m, int64_t n, int64_t k, float alpha, float beta, float* c, int64_t ldc) {
  using P = typename Path::P;
  const int kStep = path.step;
  if (MR * NR > kMaxTile)  // an SVE tile grows with the vector length: 10 x 128 at 2048 bits
    throw std::runtime_error("native GEMM: microkernel tile " + std::to_string(MR) + "x" + std::to_string(NR) +
                             " exceeds the driver's edge buffer (" + std::to_string(kMaxTile) + " values)");
  const int64_t kc_blk = balanced(k, bs.kc, kStep);
  const int64_t units = (m + MR - 1) / MR, panels_n = (n + NR - 1) / NR;
  // The thread grid: a column range per thread (each its own B block) or a row range per thread
  // (one shared B block, unless private_blocks); either way whole MR x NR tiles, so the tile grid —
  // and every value of C — is the same bit for bit.
  const bool columns = bs.split == ThreadSplit::columns || (bs.split == ThreadSplit::larger && panels_n > units);
  const bool by_columns = columns && threads > 1 && panels_n >= threads;
  const int nt = std::max(1, std::min<int>(threads, int(by_columns ? panels_n : units)));
  const int64_t width = (by_columns ? (panels_n + nt - 1) / nt : panels_n) * NR;  // the widest column range
  // Upper bounds of any thread's balanced() blocks (balanced(e, max, u) <= both e and max rounded up to u).
  const int64_t nc_max = std::min(width, (bs.nc + NR - 1) / NR * NR);
  const int64_t mc_max = std::min((bs.mc + MR - 1) / MR * MR, units * MR);
  // Packed A per k block: all of a thread's rows (a_once; by columns every thread's rows are all
  // m, packed into one shared buffer, each thread a share) or one mc block at a time. Whole rows
  // only where they save packing — a thread's columns span more than one column block, each of
  // which packs its A blocks again; in one column block every A block is packed once either way,
  // and whole rows only add their footprint to the B block's in L2 — and while the buffer stays
  // cache-sized (kMaxAOnceBytes): past that it only sends the panels to memory and back. Same bits
  // either way.
  const int64_t once_rows = by_columns ? units * MR : (units + nt - 1) / nt * MR;
  const bool a_once =
      bs.a_once && width > nc_max && once_rows * kc_blk * int64_t(sizeof(P)) <= kMaxAOnceBytes;
  const bool share_a = a_once && by_columns && !bs.private_blocks;
  const bool share_b = !by_columns && nt > 1 && !bs.private_blocks;  // one B block for all threads
  const int64_t a_rows = a_once ? once_rows : mc_max;
  // Workspace slots: 0 = the shared B block (or a lone thread's), 128+t = thread t's own, 1+t =
  // thread t's A block (slot 1 the shared one), 64+t = its fp32 scratch panel.
  std::vector<P*> bp(static_cast<size_t>(nt)), ap(static_cast<size_t>(nt));
  std::vector<float*> scratch(static_cast<size_t>(nt)), values(static_cast<size_t>(nt));
  // A 16-bit operand whose packer has no reader for patterns is widened a block at a time (slot 192+t).
  const bool widens = (A.h && !path.from_half_a) || (B.h && !path.from_half_b);
  for (int t = 0; t < nt; ++t) {
    bp[size_t(t)] = share_b && t > 0 ? bp[0]
                                     : packed<Path>(ws, share_b || nt == 1 ? 0 : size_t(128 + t), size_t(kc_blk * nc_max));
    ap[size_t(t)] = share_a && t > 0 ? ap[0] : packed<Path>(ws, size_t(1 + t), size_t(a_rows * kc_blk));
    scratch[size_t(t)] = ws.floats(size_t(64 + t), size_t(kc_blk * std::max(MR, NR)));
    if (widens) values[size_t(t)] = ws.floats(size_t(192 + t), size_t(kc_blk * std::max(a_rows, nc_max)));
  }
  // One thread's share of the product. A team only when there are two threads or more: a team of
  // one still costs libgomp futex calls (a barrier's last arrival wakes the waiters with a system
  // call, waiting or not), ~4 per call, and the flash attention's tile products are ~1000 serial
  // calls per layer made from inside its own parallel region (docs/performance.md).
  const auto barrier = [nt] {
    if (nt > 1) {
#pragma omp barrier
    }
  };
  const auto run_share = [&](const int t) {
    // This thread's rows [r0, r1) and columns [c0, c1): MR and NR units.
    int64_t r0 = 0, r1 = m, c0 = 0, c1 = n;
    if (by_columns)
      c0 = std::min(n, panels_n * t / nt * NR), c1 = std::min(n, panels_n * (t + 1) / nt * NR);
    else
      r0 = std::min(m, (units * t / nt) * MR), r1 = std::min(m, (units * (t + 1) / nt) * MR);
    alignas(64) float tile[kMaxTile];  // MR x NR edge tile
    if (path.thread_begin) path.thread_begin();
    const int64_t mc_blk = a_once ? std::max<int64_t>(r1 - r0, 1) : balanced(r1 - r0, bs.mc, MR);
    const int64_t nc_blk = balanced(c1 - c0, bs.nc, NR);
    P* const bblock = bp[size_t(t)];
    P* const ablock = ap[size_t(t)];
    // Rows [ic, ic + mc) of op(A), k block [pc, pc + kc), into ablock: by this thread alone, or
    // (share_a) a share of its panels by each thread, then a barrier.
    const auto pack_a = [&](int64_t ic, int64_t mc, int64_t pc, int64_t kc, int64_t kc_pad) {
      const int64_t panels = (mc + MR - 1) / MR;
      const int ways = share_a ? nt : 1, share = share_a ? t : 0;
      const int64_t i0 = std::min(mc, panels * share / ways * MR), i1 = std::min(mc, panels * (share + 1) / ways * MR);
      if (i1 > i0)
        pack_block<Path>(path, a_panel(A, ic + i0, pc), i1 - i0, kc, kc_pad, MR, path.convert_a, path.direct_a,
                         path.from_half_a, ablock + i0 * kc_pad, scratch[size_t(t)], values[size_t(t)]);
      if (share_a) barrier();
    };
    // One MR x NR tile of C from packed panels (edge tiles through `tile`).
    const auto tile_update = [&](const P* ap_, const P* bp_, int64_t i, int64_t j, int64_t rows, int64_t cols,
                                 int64_t kc_pad, float beta_eff) {
      float* cp = c + i * ldc + j;
      if (rows == MR && cols == NR) {
        path.run(kc_pad, ap_, bp_, cp, ldc, alpha, beta_eff);
      } else {
        if (rows < MR && path.edge)  // only the live rows: the same bits as the full tile's
          path.edge(int(rows), kc_pad, ap_, bp_, tile, NR, 1.0f, 0.0f);
        else
          path.run(kc_pad, ap_, bp_, tile, NR, 1.0f, 0.0f);
        for (int64_t ii = 0; ii < rows; ++ii)
          for (int64_t jj = 0; jj < cols; ++jj)
            cp[ii * ldc + jj] = beta_eff == 0.0f ? alpha * tile[ii * NR + jj]
                                                 : alpha * tile[ii * NR + jj] + beta_eff * cp[ii * ldc + jj];
      }
    };
    // Every k block: (a_once) A packed once, then each column block: B packed (alone, or a share of
    // a shared block between barriers), then each mc block of rows (packed here unless a_once)
    // against it. The sums over k blocks run in order pc = 0, kc, ... for every tile either way.
    for (int64_t pc = 0; pc < k; pc += kc_blk) {
      const int64_t kc = std::min(kc_blk, k - pc);
      const int64_t kc_pad = (kc + kStep - 1) / kStep * kStep;
      const float beta_eff = pc == 0 ? beta : 1.0f;
      if (a_once && r1 > r0) pack_a(r0, r1 - r0, pc, kc, kc_pad);
      for (int64_t jc = c0; jc < c1; jc += nc_blk) {
        const int64_t nc = std::min(nc_blk, c1 - jc);
        const int64_t panels = (nc + NR - 1) / NR;
        // The B panels this thread packs: its share of the shared block, or all of its own.
        const int ways = share_b ? nt : 1, share = share_b ? t : 0;
        const int64_t j0 = std::min(nc, panels * share / ways * NR);
        const int64_t j1 = std::min(nc, panels * (share + 1) / ways * NR);
        if (j1 > j0)
          pack_block<Path>(path, b_panel(B, pc, jc + j0), j1 - j0, kc, kc_pad, NR, path.convert_b, path.direct_b,
                           path.from_half_b, bblock + j0 * kc_pad, scratch[size_t(t)], values[size_t(t)]);
        if (share_b) barrier();
        for (int64_t ic = r0; ic < r1; ic += mc_blk) {
          const int64_t mc = std::min(mc_blk, r1 - ic);
          if (!a_once) pack_a(ic, mc, pc, kc, kc_pad);
          for (int64_t ir = 0; ir < mc; ir += MR)
            for (int64_t jr = 0; jr < nc; jr += NR)
              tile_update(ablock + ir * kc_pad, bblock + jr * kc_pad, ic + ir, jc + jr, std::min<int64_t>(MR, mc - ir),
                          std::min<int64_t>(NR, nc - jr), kc_pad, beta_eff);
        }
        if (share_b) barrier();
      }
      if (share_a) barrier();  // every thread is done with this k block's A before the next one is packed
    }
    if (path.thread_end) path.thread_end();
  };
  if (nt == 1) {
    run_share(0);
  } else {
#pragma omp parallel num_threads(nt)
    run_share(omp_get_thread_num());
  }
}

void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

// The 16-bit kernel of a precision on a resolved ISA, or null where the CPU has none: bf16 on AMX
// and AVX512_BF16, whose dot products accumulate in fp32 at up to 2x (vdpbf16ps) and 14x (AMX)
// the fp32 FMA rate. fp16 has none on any CPU: its products accumulate in fp32, and the fp16
// units that exist accumulate in fp16 (A64FX's fmla z.h, AVX512_FP16's vfmadd*ph). An
// fp16-storage kernel for SVE (panels in half, widened with fcvt, fp32 fmla) was dropped on
// 2026-12-04: its 12 conversions per 20 FMAs share the FP pipes, so llvm-mca's A64FX model put it
// at 62% of the FMA peak against the fp32 kernel's 99.8% on the same (rounded) values — fp16
// products run as fp16-rounded panels on the fp32 kernel (docs/fugaku.md).
const SbgemmKernel* half_kernel(Precision p, GemmIsa isa) {
#if defined(__x86_64__)
  if (p == Precision::bf16 && (isa == GemmIsa::amx || isa == GemmIsa::avx512bf16)) return &sbgemm_kernel(isa);
#endif
  (void)p, (void)isa;
  return nullptr;
}

}  // namespace

namespace {

// The native entry points on operands (fp32 values or 16-bit patterns, kernels/gemm.hpp).
void fp32_kernel_on(const GemmContext& ctx, const SgemmKernel& kern, const Matrix& A, const Matrix& B, int64_t m,
                    int64_t n, int64_t k, float alpha, float beta, float* c, int64_t ldc) {
  const BlockSizes& blocks = kern.blocks;
  if (blocks.mc < kern.mr || blocks.kc < 1 || blocks.nc < kern.nr)
    throw std::invalid_argument("native GEMM: blocks (" + std::to_string(blocks.mc) + ", " + std::to_string(blocks.kc) +
                                ", " + std::to_string(blocks.nc) + ") below the " + kern.name + " tile");
  GemmWorkspace local;
  GemmWorkspace& ws = ctx.workspace ? *ctx.workspace : local;
  // Emulated 16-bit products: panels rounded to the precision while packed.
  const PanelPacker pack = ctx.precision == Precision::bf16   ? kern.pack_bf16
                           : ctx.precision == Precision::fp16 ? kern.pack_fp16
                                                              : kern.pack;
  Fp32Path path{kern.ukernel, pack, 1};
  // A 16-bit operand's patterns widened while packed.
  path.from_half_a = path.from_half_b = ctx.precision == Precision::bf16   ? kern.pack_from_bf16
                                        : ctx.precision == Precision::fp16 ? kern.pack_from_fp16
                                                                           : nullptr;
  path.patterns = ctx.precision;
  path.edge = kern.edge;
  blocked(path, kern.mr, kern.nr, blocks, ctx.threads, ws, A, B, m, n, k, alpha, beta, c, ldc);
}

void half_kernel_on(const GemmContext& ctx, const SbgemmKernel& kern, const Matrix& A, const Matrix& B, int64_t m,
                    int64_t n, int64_t k, float alpha, float beta, float* c, int64_t ldc) {
  const BlockSizes blocks = blocks_from_environment(true, kern.blocks, kern.name, kern.mr, kern.nr, kern.k_step);
  if (blocks.mc < kern.mr || blocks.kc < kern.k_step || blocks.nc < kern.nr)
    throw std::invalid_argument("native GEMM: blocks (" + std::to_string(blocks.mc) + ", " + std::to_string(blocks.kc) +
                                ", " + std::to_string(blocks.nc) + ") below the " + kern.name + " tile");
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_c(m, n, beta, c, ldc);
  GemmWorkspace local;
  GemmWorkspace& ws = ctx.workspace ? *ctx.workspace : local;
  // The direct packer makes panels in the `convert` layout: B's, and A's unless they differ (then
  // A's has its own, pack_direct_a, or none); the same for the packer from bf16 patterns.
  HalfPath path{kern.ukernel, kern.pack, kern.k_step, kern.convert, kern.convert_a ? kern.convert_a : kern.convert,
                kern.pack_direct, kern.convert_a ? kern.pack_direct_a : kern.pack_direct, kern.thread_begin,
                kern.thread_end};
  path.patterns = ctx.precision;
  path.edge = kern.edge;
  if (ctx.precision == Precision::bf16) {
    path.from_half_b = kern.pack_from_bf16;
    path.from_half_a = kern.convert_a ? nullptr : kern.pack_from_bf16;
  }
  blocked(path, kern.mr, kern.nr, blocks, ctx.threads, ws, A, B, m, n, k, alpha, beta, c, ldc);
}

void native_on(const GemmContext& ctx, const Matrix& A, const Matrix& B, int64_t m, int64_t n, int64_t k, float alpha,
               float beta, float* c, int64_t ldc) {
  const GemmIsa isa = resolve_gemm_isa(ctx.isa);
  if (ctx.precision != Precision::fp32)
    if (const SbgemmKernel* half = half_kernel(ctx.precision, isa))
      return half_kernel_on(ctx, *half, A, B, m, n, k, alpha, beta, c, ldc);
  SgemmKernel kern = sgemm_kernel(isa);
  kern.blocks = blocks_from_environment(false, kern.blocks, kern.name, kern.mr, kern.nr, 1);
  fp32_kernel_on(ctx, kern, A, B, m, n, k, alpha, beta, c, ldc);
}

}  // namespace

void detail::gemm_native(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                         int64_t ldc) {
  native_on(ctx, {op_a, a, lda}, {op_b, b, ldb}, m, n, k, alpha, beta, c, ldc);
}

void detail::gemm_native_operands(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k,
                                  float alpha, const GemmOperand& a, const GemmOperand& b, float beta, float* c,
                                  int64_t ldc) {
  native_on(ctx, {op_a, a.values, a.ld, a.patterns}, {op_b, b.values, b.ld, b.patterns}, m, n, k, alpha, beta, c, ldc);
}

void detail::gemm_native_kernel(const GemmContext& ctx, const SgemmKernel& kern, Op op_a, Op op_b, int64_t m,
                                int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                                int64_t ldb, float beta, float* c, int64_t ldc) {
  fp32_kernel_on(ctx, kern, {op_a, a, lda}, {op_b, b, ldb}, m, n, k, alpha, beta, c, ldc);
}

bool gemm_precision_native(const GemmContext& ctx) {
  return ctx.backend == GemmBackend::native && half_kernel(ctx.precision, resolve_gemm_isa(ctx.isa)) != nullptr;
}

std::string gemm_precision_path(const GemmContext& ctx) {
  const std::string p(name_of(ctx.precision));
  detail::require_precision_backend(ctx);
  if (ctx.backend != GemmBackend::native)
    return p + " on the " + std::string(name_of(ctx.backend)) + " backend" +
           (ctx.precision == Precision::fp32 ? "" : " (rounded inputs, double accumulation)");
  const GemmIsa isa = resolve_gemm_isa(ctx.isa);
  if (const SbgemmKernel* half = half_kernel(ctx.precision, isa)) return p + " on " + half->name;
  const std::string fp32 = sgemm_kernel(isa).name;
  if (ctx.precision == Precision::fp32) return p + " on " + fp32;
  if (!sixteen_bit_unit_can_exist(ctx.precision))
    return p + ": " + p + "-rounded panels on " + fp32 + ", fp32 accumulation (no CPU's " + p +
           " unit accumulates in fp32: its products always run at fp32 speed)";
  return p + " emulated: " + p + "-rounded panels on " + fp32 + " (isa " + std::string(name_of(isa)) + " has no " + p +
         " kernel: the same numbers at fp32 speed)";
}

// The 16-bit storage paths share the driver (native backend).
void detail::gemm_half_kernel(const GemmContext& ctx, const SbgemmKernel& kern, Op op_a, Op op_b, int64_t m,
                              int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                              int64_t ldb, float beta, float* c, int64_t ldc) {
  half_kernel_on(ctx, kern, {op_a, a, lda}, {op_b, b, ldb}, m, n, k, alpha, beta, c, ldc);
}

void gemm_bf16(const GemmContext& ctx, Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (ctx.backend != GemmBackend::native)
    throw std::runtime_error("gemm_bf16: only the native backend has this path");
  detail::gemm_half_kernel(ctx, sbgemm_kernel(resolve_gemm_isa(ctx.isa)), op_a, op_b, m, n, k, alpha, a, lda, b, ldb,
                           beta, c, ldc);
}

}  // namespace hokusai::kernels
