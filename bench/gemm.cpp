// GEMM benchmark: hokusai's native GEMM beside OpenBLAS (cblas_sgemm) and oneDNN (dnnl_sgemm;
// its bf16 matmul for the bf16 rows), same process, same buffers, for the Transformer shapes of
// the GPT-2 124M and Fugaku-LLM 13B (tp = 6) steps, in the three layouts the trainer uses, at
// 1 and 2 threads. Median of --reps timed calls after one warm-up; % of the probed peak
// (per-core probe x threads): fp32 rows of the fp32 FMA peak, bf16 rows of the bf16 peak of the
// unit our bf16 kernel runs on (AMX tiles, else vdpbf16ps). Our bf16 rows include rounding the
// fp32 inputs while packing; oneDNN's bf16 rows start from bf16 inputs. A, B and C start on a
// 64-byte boundary, as every tensor of the model's arenas does (--offset 16: where glibc puts a
// large std::vector, as the tables before 2026-12-05's tenth session ran).
//   build/release/bench/bench_gemm [--threads 1,2] [--reps 5] [--csv] [--shapes gpt2|13b|square|all|gpt2-train]
//   build/release/bench/bench_gemm --tiles    (AVX-512 register-tile candidates on L1 panels, in turn)
//   build/release/bench/bench_gemm --kernels shipped,sgemm_avx512_14x32_fold --backends hokusai,onednn
//                                             (candidates in the driver, timed call by call in turn)
//   build/release/bench/bench_gemm --blocks 168,256,800 168,256,1792 --backends hokusai,onednn
//                                             (block sizes side by side: a new CPU's entry in gemm_tuning.hpp)
// Runs with two of our variants or more end with "# <variant> / <first variant>, fp32, 1 thread:
// median ..., faster on ... of ..." lines, per precision and thread count, over the run's shapes.
#include <CLI/CLI.hpp>
#include <omp.h>
#ifdef HOKUSAI_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <sstream>

#include "kernels/gemm.hpp"
#include "kernels/gemm_backends.hpp"
#include "kernels/gemm_tuning.hpp"
#include "kernels/peak.hpp"
#include "kernels/ukernel.hpp"
#include "kernels/x86/sgemm_avx512_tiles.hpp"

using namespace hokusai::kernels;
using hokusai::name_of;

namespace {

struct Shape {
  const char* group;
  int64_t m, n, k;
  const char* layouts = "NT NN TN";  // which of the three layouts this shape is timed in
};

const Shape kShapes[] = {
    {"gpt2", 1024, 2304, 768}, {"gpt2", 1024, 768, 768},   {"gpt2", 1024, 3072, 768},
    {"gpt2", 1024, 768, 3072}, {"gpt2", 1024, 50304, 768}, {"13b", 2048, 2592, 5184},
    {"13b", 2048, 5184, 864},  {"13b", 2048, 3456, 5184},  {"13b", 2048, 5184, 3456},
    {"square", 2048, 2048, 2048},
    // The rest of a gpt2-124m training step at micro-batch 4 x 256 (src/model/layers.cpp), in the
    // layout the trainer calls it: the weight gradients dW = dY^T X (TN: out x in x tokens) and the
    // tied head's input gradient dX = dLogits W (NN) and weight gradient. Not in "all" (the
    // table of scripts/gemm-table.py is the 30 shapes above).
    {"gpt2-train", 2304, 768, 1024, "TN"}, {"gpt2-train", 768, 768, 1024, "TN"},
    {"gpt2-train", 3072, 768, 1024, "TN"}, {"gpt2-train", 768, 3072, 1024, "TN"},
    {"gpt2-train", 1024, 768, 50304, "NN"}, {"gpt2-train", 50304, 768, 1024, "TN"},
};

double median_seconds(const std::function<void()>& fn, int reps) {
  fn();  // warm-up: page faults, JIT, packing buffers
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#ifdef HOKUSAI_HAVE_ONEDNN
// oneDNN bf16 matmul C(f32) = A(bf16) B(bf16) with the layout given by strides: one call.
struct OnednnBf16 {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  std::function<void()> call(Op oa, Op ob, int64_t m, int64_t n, int64_t k, const uint16_t* a, const uint16_t* b,
                             float* c) {
    using dt = dnnl::memory::data_type;
    const dnnl::memory::dims sa = oa == Op::N ? dnnl::memory::dims{k, 1} : dnnl::memory::dims{1, m};
    const dnnl::memory::dims sb = ob == Op::N ? dnnl::memory::dims{n, 1} : dnnl::memory::dims{1, k};
    dnnl::memory::desc ad({m, k}, dt::bf16, sa), bd({k, n}, dt::bf16, sb), cd({m, n}, dt::f32, {n, 1});
    const dnnl::matmul::desc md(ad, bd, cd);  // oneDNN 2.x API
    dnnl::matmul::primitive_desc pd(md, eng);
    // Primitives and memories are reference-counted handles: the lambda keeps them alive.
    dnnl::matmul prim(pd);
    dnnl::memory am(ad, eng, const_cast<uint16_t*>(a)), bm(bd, eng, const_cast<uint16_t*>(b)), cm(cd, eng, c);
    return [this, prim, am, bm, cm] {
      prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      strm.wait();
    };
  }
};
#endif

// Contenders timed call by call in turn (one timed call of each per round, the median of `reps`
// rounds), after one warm-up call each (page faults, JIT, packing buffers): slow phases of a
// shared machine hit all of them alike. Each timed call follows an untimed call of its own, so
// what it finds in the caches and TLBs is its own, not the previous contender's: without it the
// same kernel timed right after oneDNN ran 2.0% slower (median of gpt2's 15 shapes at 1 thread,
// 13 of 15 slower; Xeon model 167, 2026-12-05) than right after itself (level: 0.998) — a bias
// of the order of the differences measured. Median seconds per contender.
std::vector<double> medians_in_turn(const std::vector<std::pair<std::string, std::function<void()>>>& fns, int reps) {
  std::vector<std::vector<double>> seconds(fns.size());
  for (const auto& f : fns) f.second();
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < fns.size(); ++i) {
      fns[i].second();
      const auto t0 = std::chrono::steady_clock::now();
      fns[i].second();
      seconds[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  std::vector<double> med;
  for (auto& s : seconds) {
    std::sort(s.begin(), s.end());
    med.push_back(s[s.size() / 2]);
  }
  return med;
}

// Our variants against each other (--kernels, --splits, --blocks, ...): each later "hokusai..."
// contender's GFLOP/s over the first one's, per precision and thread count, over every shape of
// the run — the figures the tuning notes quote, printed by the run that measured them.
class VariantRatios {
 public:
  void add(const std::string& dtype, int threads, const std::string& label, size_t shape, double gflops) {
    if (label.rfind("hokusai", 0) != 0) return;
    auto& group = groups_[{dtype, threads}];
    if (group.first.empty()) group.first = label;
    group.rows[shape][label] = gflops;
    if (std::find(group.labels.begin(), group.labels.end(), label) == group.labels.end()) group.labels.push_back(label);
  }
  void print() const {
    for (const auto& [key, group] : groups_)
      for (const std::string& label : group.labels) {
        if (label == group.first) continue;
        std::vector<double> r;
        for (const auto& [shape, row] : group.rows)
          if (row.count(label) && row.count(group.first)) r.push_back(row.at(label) / row.at(group.first));
        if (r.empty()) continue;
        std::sort(r.begin(), r.end());
        const auto faster = std::count_if(r.begin(), r.end(), [](double x) { return x > 1.0; });
        std::printf("# %s / %s, %s, %d thread%s: median %.3f, faster on %ld of %zu, min %.3f, max %.3f\n",
                    label.c_str(), group.first.c_str(), key.first.c_str(), key.second, key.second == 1 ? "" : "s",
                    r[r.size() / 2], long(faster), r.size(), r.front(), r.back());
      }
  }

 private:
  struct Group {
    std::string first;
    std::vector<std::string> labels;
    std::map<size_t, std::map<std::string, double>> rows;
  };
  std::map<std::pair<std::string, int>, Group> groups_;
};

const char* layout_name(Op oa, Op ob) { return oa == Op::N ? (ob == Op::N ? "NN" : "NT") : "TN"; }

}  // namespace

// n values whose first lies `offset` bytes past a 64-byte boundary (a vector's own storage,
// over-allocated).
template <typename T>
class Placed {
 public:
  Placed() = default;
  Placed(size_t n, int offset) : store_(n + 128 / sizeof(T)), n_(n) {
    const uintptr_t at = (reinterpret_cast<uintptr_t>(store_.data()) + 63) / 64 * 64 + uintptr_t(offset);
    p_ = reinterpret_cast<T*>(at);
  }
  T* data() { return p_; }
  size_t size() const { return n_; }
  T* begin() { return p_; }
  T* end() { return p_ + n_; }
  T& operator[](size_t i) { return p_[i]; }

 private:
  std::vector<T> store_;
  T* p_ = nullptr;
  size_t n_ = 0;
};

int main(int argc, char** argv) {
  CLI::App app{"hokusai GEMM benchmark"};
  std::string thread_list = "1,2", group = "all", backend_list = "hokusai,openblas,onednn";
  int reps = 5;
  bool csv = false, tiles = false, no_bf16 = false, packers = false;
  int offset = 0;
  app.add_option("--threads", thread_list, "Comma-separated thread counts")->capture_default_str();
  app.add_option("--reps", reps, "Timed repetitions (median)")->capture_default_str();
  app.add_option("--shapes", group,
                 "gpt2, 13b, square, all (those three) or gpt2-train (a gpt2-124m step's weight-gradient and "
                 "head shapes)")
      ->capture_default_str();
  app.add_option("--backends", backend_list, "fp32 backends to time (comma-separated; the table's verdicts need all)")
      ->capture_default_str();
  app.add_flag("--csv", csv, "One row per measurement: backend,dtype,layout,m,n,k,threads,gflops,pct_peak");
  app.add_flag("--tiles", tiles, "Compare AVX-512 register tiles on (2048, 2048, 2048) instead");
  app.add_flag("--no-bf16", no_bf16, "Skip the bf16 rows");
  app.add_flag("--packers", packers,
               "Time the AVX-512 fp32 panel packer beside the generic one on the flash attention's and gpt2's "
               "panel blocks (source in cache) instead");
  std::string split_list;
  app.add_option("--splits", split_list,
                 "Time our fp32 and bf16 paths under each thread split (rows,columns,larger; kernels/ukernel.hpp), "
                 "not their tables'");
  std::string kernel_list, edge_list;
  app.add_option("--kernels", kernel_list,
                 "Time our fp32 path with each named AVX-512 microkernel candidate (--tiles lists them) in the "
                 "driver, with the shipped kernel's blocks; 'shipped' is the table's kernel");
  std::string a_packing_list;
  app.add_option("--edge", edge_list,
                 "Time our fp32 and bf16 paths with their tiles of fewer than MR live rows on the edge microkernel "
                 "and/or on the full one (with,without; kernels/ukernel.hpp SgemmKernel::edge, SbgemmKernel::edge), "
                 "not only the kernel's way")
      ->check(CLI::IsMember({"with", "without", "with,without", "without,with"}));
  app.add_option("--a-packing", a_packing_list,
                 "Time our fp32 and bf16 paths with A packed per mc block and/or once per k block "
                 "(mc,once; kernels/ukernel.hpp BlockSizes::a_once; 'once' up to the driver's "
                 "kMaxAOnceBytes of A), not their tables'");
  std::string sharing_list;
  app.add_option("--sharing", sharing_list,
                 "Time our fp32 and bf16 paths with the operand the threads share packed once into one block "
                 "(shared: a share by each thread, barriers) and/or whole by every thread into its own "
                 "(private; kernels/ukernel.hpp BlockSizes::private_blocks), not their tables'");
  std::string half_operands_list;
  app.add_option("--half-operands", half_operands_list,
                 "Time our bf16 path on fp32 operands (rounded while packing) and/or on operands already in bf16 "
                 "(patterns; kernels/gemm.hpp GemmOperand: the same products, half the bytes packed — as oneDNN's "
                 "bf16 row starts), not only on fp32")
      ->check(CLI::IsMember({"fp32", "bf16", "fp32,bf16", "bf16,fp32"}));
  std::string half_packing_list;
  app.add_option("--half-packing", half_packing_list,
                 "Time our bf16 path packing fp32 straight into its panels and/or through an fp32 panel "
                 "(direct,two-pass; kernels/ukernel.hpp SbgemmKernel::pack_direct), not only the kernel's way");
  std::vector<std::string> block_list, half_block_list;
  app.add_option("--blocks", block_list,
                 "Time our fp32 path with each of these block sizes (mc,kc,nc ...; mc and nc rounded to the tile; "
                 "the split, A packing and sharing stay the kernel's unless --splits/--a-packing/--sharing say)");
  app.add_option("--half-blocks", half_block_list,
                 "Time our bf16 path with each of these block sizes (mc,kc,nc ...; kc in bf16 values; the kernel's "
                 "split, A packing and sharing)");
  app.add_option("--offset", offset,
                 "Bytes past a 64-byte boundary where A, B and C start (0: the model's arenas; 16: a large "
                 "std::vector's data)")
      ->check(CLI::IsMember({0, 4, 8, 16, 32, 48}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // --edge: each entry's label suffix and whether it keeps the kernel's edge microkernel.
  std::vector<std::pair<std::string, bool>> edges;
  {
    std::stringstream es(edge_list);
    for (std::string e; std::getline(es, e, ',');) edges.emplace_back("-" + e + "-edge", e == "with");
  }

  std::vector<int> thread_counts;
  {
    std::stringstream ss(thread_list);
    std::string t;
    while (std::getline(ss, t, ',')) thread_counts.push_back(std::stoi(t));
  }
  // A comma-separated list of two choices -> one flag per entry (true: `first`); false after one
  // line on stderr for anything else.
  const auto either = [](const std::string& list, const char* option, const char* first, const char* second,
                         std::vector<bool>& out) {
    std::stringstream ss(list);
    std::string t;
    while (std::getline(ss, t, ','))
      if (t == first || t == second)
        out.push_back(t == first);
      else
        return std::fprintf(stderr, "bench_gemm: %s: '%s' is not %s or %s\n", option, t.c_str(), first, second), false;
    return true;
  };
  if (group != "all" && std::none_of(std::begin(kShapes), std::end(kShapes), [&](const Shape& s) { return group == s.group; }))
    return std::fprintf(stderr, "bench_gemm: --shapes: '%s' is not gpt2, 13b, square, all or gpt2-train\n", group.c_str()), 2;
  std::vector<bool> a_once, half_direct, private_blocks, half_patterns;
  if (!either(half_operands_list, "--half-operands", "bf16", "fp32", half_patterns) ||
      !either(a_packing_list, "--a-packing", "once", "mc", a_once) ||
      !either(sharing_list, "--sharing", "private", "shared", private_blocks) ||
      !either(half_packing_list, "--half-packing", "direct", "two-pass", half_direct))
    return 2;
  std::vector<ThreadSplit> splits;
  {
    std::stringstream ss(split_list);
    std::string t;
    while (std::getline(ss, t, ','))
      if (const auto split = hokusai::value_named<ThreadSplit>(t))
        splits.push_back(*split);
      else
        return std::fprintf(stderr, "bench_gemm: --splits: '%s' is not one of %s\n", t.c_str(),
                            hokusai::name_list<ThreadSplit>().c_str()),
               2;
  }
  // Each variant of a kernel: its blocks under each of --splits, then each of --a-packing.
  const auto each_variant = [&](const std::string& label, BlockSizes b, const std::function<void(std::string, BlockSizes)>& add) {
    std::vector<std::pair<std::string, BlockSizes>> split_variants;
    if (splits.empty()) split_variants.emplace_back(label, b);
    for (const ThreadSplit split : splits) {
      BlockSizes bs = b;
      bs.split = split;
      split_variants.emplace_back(label + "-" + std::string(name_of(split)), bs);
    }
    std::vector<std::pair<std::string, BlockSizes>> packing_variants;
    for (const auto& [name, bs] : split_variants) {
      if (a_once.empty()) packing_variants.emplace_back(name, bs);
      for (const bool once : a_once) {
        BlockSizes ba = bs;
        ba.a_once = once;
        packing_variants.emplace_back(name + (once ? "-aonce" : "-amc"), ba);
      }
    }
    for (const auto& [name, bs] : packing_variants) {
      if (private_blocks.empty()) add(name, bs);
      for (const bool own : private_blocks) {
        BlockSizes bp = bs;
        bp.private_blocks = own;
        add(name + (own ? "-private" : "-shared"), bp);
      }
    }
  };
  // mc,kc,nc strings -> labelled block sizes ("-mc/kc/nc": no commas in a CSV field).
  const auto parse_blocks = [](const std::vector<std::string>& list, const char* option,
                               std::vector<std::pair<std::string, BlockSizes>>& out) {
    for (const std::string& t : list) {
      BlockSizes b{};
      char tail = 0;
      if (std::sscanf(t.c_str(), "%ld,%ld,%ld%c", &b.mc, &b.kc, &b.nc, &tail) != 3 || b.mc < 1 || b.kc < 1 || b.nc < 1)
        return std::fprintf(stderr, "bench_gemm: %s: '%s' is not mc,kc,nc\n", option, t.c_str()), false;
      std::string label = "-" + t;
      std::replace(label.begin(), label.end(), ',', '/');
      out.emplace_back(label, b);
    }
    return true;
  };
  std::vector<std::pair<std::string, BlockSizes>> half_blocks;  // empty: the bf16 kernel's own
  if (!parse_blocks(half_block_list, "--half-blocks", half_blocks)) return 2;
  const GemmIsa isa = resolve_gemm_isa(GemmIsa::automatic);
  // Our fp32 path's variants: the table's kernel, or each --kernels candidate (its tile with the
  // table's blocks, mc and nc rounded to it), under the table's split or each of --splits.
  std::vector<std::pair<std::string, SgemmKernel>> variants;
  {
    std::vector<std::pair<std::string, SgemmKernel>> kernels;
    std::stringstream ss(kernel_list);
    std::string t;
    while (std::getline(ss, t, ',')) {
      if (t == "shipped") {
        kernels.emplace_back("-shipped", sgemm_kernel(isa));  // its microkernel may be a candidate's
        continue;
      }
      const SgemmTileCandidate* cand = find_tile_candidate(t);
      if (!cand)
        return std::fprintf(stderr, "bench_gemm: --kernels: no candidate '%s' (--tiles lists them)\n", t.c_str()), 2;
      if (!gemm_isa_supported(GemmIsa::avx512))
        return std::fprintf(stderr, "bench_gemm: --kernels: this CPU has no AVX-512\n"), 2;
      kernels.emplace_back("-" + t, candidate_kernel(*cand, sgemm_kernel(GemmIsa::avx512)));
    }
    if (kernels.empty()) kernels.emplace_back("", sgemm_kernel(isa));
    if (!edges.empty()) {  // each kernel with and/or without its edge microkernel
      std::vector<std::pair<std::string, SgemmKernel>> both;
      for (const auto& [suffix, with] : edges)
        for (auto [name, k] : kernels) {
          if (!with) k.edge = nullptr;
          both.emplace_back(name + suffix, k);
        }
      kernels = std::move(both);
    }
    std::vector<std::pair<std::string, BlockSizes>> blocks;  // empty: each kernel's own
    if (!parse_blocks(block_list, "--blocks", blocks)) return 2;
    for (const auto& [name, k] : kernels)
      for (size_t bi = 0; bi < std::max<size_t>(1, blocks.size()); ++bi) {
        SgemmKernel kb = k;
        std::string label = "hokusai" + name;
        if (!blocks.empty()) {
          BlockSizes b = blocks[bi].second;  // the sizes; the split, A packing and sharing stay the kernel's
          b.split = k.blocks.split, b.a_once = k.blocks.a_once, b.private_blocks = k.blocks.private_blocks;
          kb.blocks = rounded_to_tile(b, k.mr, k.nr);
          label += blocks[bi].first;
        }
        each_variant(label, kb.blocks, [&](std::string name, BlockSizes bs) {
          SgemmKernel kv = kb;
          kv.blocks = bs;
          variants.emplace_back(std::move(name), kv);
        });
      }
  }
  // The bf16 rows use the bf16 kernel of the resolved ISA: AMX tiles where the CPU and OS allow,
  // else vdpbf16ps (HOKUSAI_GEMM_ISA=avx512bf16 forces the latter).
  const bool bf16 = !no_bf16 && (isa == GemmIsa::avx512bf16 || isa == GemmIsa::amx);
  // Our bf16 path's blocks: each --half-blocks entry (on the kernel's tile, with its split, A packing and
  // sharing), or its own.
  std::vector<std::pair<std::string, BlockSizes>> half_own;
  if (bf16) {
    const SbgemmKernel& kern = sbgemm_kernel(isa);
    for (const auto& [label, b] : half_blocks) {
      BlockSizes bs = rounded_to_tile(b, kern.mr, kern.nr);
      bs.split = kern.blocks.split, bs.a_once = kern.blocks.a_once, bs.private_blocks = kern.blocks.private_blocks;
      half_own.emplace_back("hokusai" + label, bs);
    }
    if (half_own.empty()) half_own.emplace_back("hokusai", kern.blocks);
  }
  const PeakFlops probe = probe_peak_fp32(1, 0.5);
  if (csv)
    std::printf("backend,dtype,layout,m,n,k,threads,gflops,pct_peak\n");
  else
    std::printf("# native kernel %s (isa %s%s); fp32 peak %.1f GFLOP/s per core (%s probe)%s; median of %d\n",
                std::string(sgemm_kernel_name(isa)).c_str(), std::string(name_of(isa)).c_str(),
                bf16 ? (isa == GemmIsa::amx ? ", bf16 on AMX tiles" : ", bf16 on vdpbf16ps") : "",
                probe.per_core_gflops, probe.isa.c_str(),
                bf16 ? (", bf16 rows in % of the bf16 peak " +
                        std::to_string(int(isa == GemmIsa::amx ? probe.amx_bf16_per_core_gflops
                                                               : probe.bf16_per_core_gflops)) +
                        " GFLOP/s per core").c_str()
                     : "",
                reps);
  {
    const ChosenBlocks chosen = sgemm_blocks(isa);
    const CpuModel cpu = this_cpu_model();
    std::fprintf(csv ? stderr : stdout, "# blocks mc %ld, kc %ld, nc %ld: %s; CPU %s family %d model %d\n",
                 long(chosen.blocks.mc), long(chosen.blocks.kc), long(chosen.blocks.nc), chosen.why.c_str(),
                 cpu.vendor.c_str(), cpu.family, cpu.model);
  }

  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  if (packers) {
#if defined(__x86_64__)
    if (!gemm_isa_supported(GemmIsa::avx512)) {
      std::fprintf(stderr, "bench_gemm --packers: this CPU has no AVX-512\n");
      return 1;
    }
    // (what, source ld, k contiguous, rows packed, kc, R): one packer call on a cache-resident source.
    struct PackCase {
      const char* what;
      int64_t ld;
      bool k_contiguous;
      int64_t rows, kc;
      int R;
    };
    const PackCase cases[] = {
        {"flash P^T / dS^T as A (op T)", 256, false, 256, 256, 14},
        {"flash P / dS as A (op N)", 256, true, 256, 256, 14},
        {"flash V / K / Q / dO as B (op N)", 2304, false, 64, 256, 32},
        {"flash K^T / V^T as B (op T)", 2304, true, 256, 64, 32},
        {"gpt2 (., 768, 768) B block (op N)", 768, false, 768, 256, 32},
        {"gpt2 (1024, ., 768) A block (op N)", 768, true, 1024, 256, 14},
    };
    std::printf("# panel packers, one call on a cache-resident source, 1 thread, median of %d x 1000 calls\n", reps);
    for (const PackCase& pc : cases) {
      const int64_t lines = pc.k_contiguous ? pc.rows : pc.kc;
      std::vector<float> src(size_t(lines * pc.ld));
      for (auto& x : src) x = u(rng);
      std::vector<float> dst(size_t((pc.rows + pc.R - 1) / pc.R * pc.R * pc.kc) + 16);
      double us[2];
      for (int which = 0; which < 2; ++which) {
        const PanelPacker pack = which == 0 ? pack_panel_avx512 : pack_panel_generic;
        us[which] = median_seconds(
                        [&] {
                          for (int r = 0; r < 1000; ++r)
                            pack(src.data(), pc.ld, pc.k_contiguous, pc.rows, pc.kc, pc.kc, pc.R, dst.data());
                        },
                        reps) *
                    1e3;
      }
      std::printf("%-36s rows %5ld kc %4ld R %2d ld %5ld: avx512 %7.2f us  generic %7.2f us  (%.2fx)\n", pc.what,
                  long(pc.rows), long(pc.kc), pc.R, long(pc.ld), us[0], us[1], us[1] / us[0]);
    }
    return 0;
#else
    std::fprintf(stderr, "bench_gemm --packers: x86 only\n");
    return 1;
#endif
  }
  if (tiles) {
    // One 14x32-sized workload through each candidate microkernel on packed panels as the driver
    // has them (kc = 256 steps on a resident panel, repeated; C rows one line apart in L1 sets,
    // ldc = 2064), the candidates timed in turn (medians_in_turn) as the driver comparisons are:
    // timed one after the other, a VM's slow and fast minutes (±7% here) decided between them.
    const int64_t kc = 256, ldc = 2048 + 16, calls = 20000;
    std::vector<float> c(size_t(32 * ldc));
    GemmWorkspace ws;  // each candidate's panels in two slots of their own, 64-byte aligned
    std::vector<std::pair<std::string, std::function<void()>>> runs;
    for (int i = 0; i < kAvx512TileCandidateCount; ++i) {
      const auto& cand = kAvx512TileCandidates[i];
      float* const ap = ws.floats(size_t(2 * i), size_t(cand.mr * kc));
      float* const bp = ws.floats(size_t(2 * i + 1), size_t(cand.nr * kc));
      for (int64_t j = 0; j < cand.mr * kc; ++j) ap[j] = u(rng);
      for (int64_t j = 0; j < cand.nr * kc; ++j) bp[j] = u(rng);
      runs.emplace_back(cand.name, [&c, &cand, ap, bp, kc, ldc, calls] {
        for (int64_t r = 0; r < calls; ++r) cand.ukernel(kc, ap, bp, c.data(), ldc, 1.0f, 1.0f);
      });
    }
    const std::vector<double> seconds = medians_in_turn(runs, reps);
    for (int i = 0; i < kAvx512TileCandidateCount; ++i) {
      const auto& cand = kAvx512TileCandidates[i];
      const double gf = 2.0 * cand.mr * cand.nr * kc * calls / seconds[size_t(i)] * 1e-9;
      std::printf("%-24s %6.1f GFLOP/s  %5.1f%% of peak (microkernel alone, 1 thread, candidates in turn)\n", cand.name,
                  gf, 100 * gf / probe.per_core_gflops);
    }
    return 0;
  }

#ifdef HOKUSAI_HAVE_ONEDNN
  OnednnBf16 onednn_bf16;
#endif
  VariantRatios ratios;
  size_t shape_index = 0;  // one per (shape, layout): the rows VariantRatios pairs up
  for (const Shape& s : kShapes) {
    if (group == "all" ? std::strcmp(s.group, "gpt2-train") == 0 : group != s.group) continue;
    for (const auto& [oa, ob] : {std::pair{Op::N, Op::T}, std::pair{Op::N, Op::N}, std::pair{Op::T, Op::N}}) {
      if (!std::strstr(s.layouts, layout_name(oa, ob))) continue;
      ++shape_index;
      const int64_t lda = oa == Op::N ? s.k : s.m, ldb = ob == Op::N ? s.n : s.k;
      Placed<float> a(size_t(s.m * s.k), offset), b(size_t(s.k * s.n), offset), c(size_t(s.m * s.n), offset);
      for (auto& x : a) x = u(rng);
      for (auto& x : b) x = u(rng);
      Placed<uint16_t> a16, b16;
      if (bf16) {
        a16 = Placed<uint16_t>(a.size(), offset);
        b16 = Placed<uint16_t>(b.size(), offset);
        for (size_t i = 0; i < a.size(); ++i) a16[i] = to_bf16(a[i]);
        for (size_t i = 0; i < b.size(); ++i) b16[i] = to_bf16(b[i]);
      }
      const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
      for (int threads : thread_counts) {
        omp_set_num_threads(threads);
        // fp32 rows: % of the fp32 FMA peak; bf16 rows: % of the bf16 peak of the unit our kernel
        // uses (AMX tiles or vdpbf16ps; oneDNN's bf16 matmul uses AMX too where it exists).
        const double bf16_core = isa == GemmIsa::amx ? probe.amx_bf16_per_core_gflops : probe.bf16_per_core_gflops;
        GemmWorkspace ws;
        const auto report = [&](const char* backend, const char* dtype, double seconds) {
          const double gf = flops / seconds * 1e-9;
          const double peak = (std::string(dtype) == "bf16" ? bf16_core : probe.per_core_gflops) * threads;
          if (csv)
            std::printf("%s,%s,%s,%lld,%lld,%lld,%d,%.1f,%.1f\n", backend, dtype, layout_name(oa, ob),
                        (long long)s.m, (long long)s.n, (long long)s.k, threads, gf, 100 * gf / peak);
          else
            std::printf("%-6s %-4s %s %5lld x %5lld x %5lld  %d thr  %-8s %7.1f GFLOP/s  %5.1f%%\n", s.group, dtype,
                        layout_name(oa, ob), (long long)s.m, (long long)s.n, (long long)s.k, threads, backend, gf,
                        100 * gf / peak);
          std::fflush(stdout);
          ratios.add(dtype, threads, backend, shape_index, gf);
        };
        // The fp32 contenders, timed in turn.
        std::vector<std::pair<std::string, std::function<void()>>> fp32;
        const GemmContext native{GemmBackend::native, threads, GemmIsa::automatic, &ws};
        for (GemmBackend be : {GemmBackend::native, GemmBackend::openblas, GemmBackend::onednn}) {
          const std::string label = be == GemmBackend::native ? "hokusai" : std::string(name_of(be));
          if (!gemm_backend_available(be) || ("," + backend_list + ",").find("," + label + ",") == std::string::npos)
            continue;
          if (be == GemmBackend::native &&
              (!splits.empty() || !kernel_list.empty() || !edge_list.empty() || !block_list.empty() || !a_once.empty() ||
               !private_blocks.empty())) {
            for (const auto& [name, kern] : variants)
              fp32.emplace_back(name, [&, kern] {
                detail::gemm_native_kernel(native, kern, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb,
                                           0.0f, c.data(), s.n);
              });
            continue;
          }
          fp32.emplace_back(label, [&, be] {
            gemm(GemmContext{be, threads, GemmIsa::automatic, &ws}, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda,
                 b.data(), ldb, 0.0f, c.data(), s.n);
          });
        }
        const std::vector<double> fp32_seconds = medians_in_turn(fp32, reps);
        for (size_t i = 0; i < fp32.size(); ++i) report(fp32[i].first.c_str(), "fp32", fp32_seconds[i]);
        if (bf16) {
          // Ours (the kernel's blocks, or each variant of --splits / --a-packing) and oneDNN's bf16
          // matmul, in turn.
          std::vector<std::pair<std::string, std::function<void()>>> half;
          const GemmContext ctx{GemmBackend::native, threads, isa, &ws};
          if (!half_patterns.empty()) {  // the product on fp32 operands and/or on bf16 patterns
            const GemmContext ctx16{GemmBackend::native, threads, isa, &ws, Precision::bf16};
            for (const bool patterns : half_patterns)
              half.emplace_back(patterns ? "hokusai-bf16-operands" : "hokusai-fp32-operands", [&, ctx16, patterns] {
                if (patterns)
                  gemm(ctx16, oa, ob, s.m, s.n, s.k, 1.0f, GemmOperand{nullptr, a16.data(), lda},
                       GemmOperand{nullptr, b16.data(), ldb}, 0.0f, c.data(), s.n);
                else
                  gemm(ctx16, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
              });
          } else if (splits.empty() && a_once.empty() && private_blocks.empty() && half_direct.empty() &&
                     half_blocks.empty() && edge_list.empty())
            half.emplace_back("hokusai", [&] {
              gemm_bf16(ctx, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
            });
          else
            for (const auto& [own_label, own_blocks] : half_own) {
              each_variant(own_label, own_blocks, [&](const std::string& name, BlockSizes bs) {
                SbgemmKernel kern = sbgemm_kernel(isa);
                kern.blocks = bs;
                const auto add = [&](const std::string& label, const SbgemmKernel& kv) {
                  const auto one = [&](std::string l, SbgemmKernel k2) {
                    half.emplace_back(std::move(l), [&, k2] {
                      detail::gemm_half_kernel(ctx, k2, oa, ob, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb,
                                               0.0f, c.data(), s.n);
                    });
                  };
                  if (edges.empty()) one(label, kv);
                  for (const auto& [suffix, with] : edges) {  // with and/or without its edge microkernel
                    SbgemmKernel k2 = kv;
                    if (!with) k2.edge = nullptr;
                    one(label + suffix, k2);
                  }
                };
                if (half_direct.empty()) add(name, kern);
                for (const bool direct : half_direct) {
                  SbgemmKernel kv = kern;
                  if (!direct) kv.pack_direct = nullptr, kv.pack_direct_a = nullptr;
                  add(name + (direct ? "-direct" : "-twopass"), kv);
                }
              });
            }
#ifdef HOKUSAI_HAVE_ONEDNN
          if (("," + backend_list + ",").find(",onednn,") != std::string::npos)
            half.emplace_back("onednn", onednn_bf16.call(oa, ob, s.m, s.n, s.k, a16.data(), b16.data(), c.data()));
#endif
          const std::vector<double> half_seconds = medians_in_turn(half, reps);
          for (size_t i = 0; i < half.size(); ++i) report(half[i].first.c_str(), "bf16", half_seconds[i]);
        }
      }
    }
  }
  ratios.print();
  return 0;
}
