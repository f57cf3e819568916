// Allreduce benchmark: hokusai's algorithms beside MPI_Allreduce, same process, same buffers,
// fp32 or bf16 (--dtype), with the torus (--torus) and hierarchical (--ranks-per-node) rows.
// Time = median over --reps of the slowest rank's time (each repetition starts after a
// barrier); algbw = bytes / time; busbw = algbw * 2(p-1)/p (nccl-tests convention: compare it
// with link or memory bandwidth).
//   mpirun -np 2 build/release/bench/bench_collectives [--min 4096] [--max 268435456] [--csv]
// Run under `--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm N` to
// force an Open MPI algorithm: the mpi rows are then labelled with it
// (scripts/bench-collectives.sh does all of them).
#if HOKUSAI_SMPI
#undef exit  // SMPI's force-included helpers rename exit(); CLI11 has a member of that name
#endif
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/mpi.hpp"
#include "comm/scratch.hpp"
#include "comm/topology.hpp"
#if !HOKUSAI_SMPI  // SimGrid SMPI (scripts/simulate-collectives.sh) has no MPI-3 shared windows
#include "comm/shared.hpp"
#endif

using namespace hokusai::comm;

namespace {

std::string mpi_label() {
  const char* forced = std::getenv("OMPI_MCA_coll_tuned_allreduce_algorithm");
  static const char* names[] = {"default", "linear", "nonoverlapping", "recursive_doubling", "ring", "segmented_ring",
                                "rabenseifner"};
  if (!forced) return "default";
  const int n = std::atoi(forced);
  return n >= 0 && n <= 6 ? names[n] : std::string("algorithm_") + forced;
}

}  // namespace

int main(int argc, char** argv) {
  Environment env(&argc, &argv);
  CLI::App app{"hokusai collectives benchmark"};
  int64_t min_bytes = 4096, max_bytes = int64_t(256) << 20;
  int reps = 5, warmup = 1;
  bool csv = false, mpi_only = false;
  app.add_option("--min", min_bytes, "Smallest message (bytes)")->capture_default_str();
  app.add_option("--max", max_bytes, "Largest message (bytes)")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (median)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed calls before them (0 in simulations: no caches to warm)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--csv", csv, "impl,algorithm,dtype,ranks,bytes,time_s,algbw_gbs,busbw_gbs");
  app.add_flag("--mpi-only", mpi_only, "Only the MPI rows (for forced Open MPI algorithms)");
  bool no_mpi = false;
  std::string only;
  app.add_option("--only", only, "Comma-separated algorithms to time (mpi, ring, rabenseifner, torus, hierarchical, shared_memory); default all");
  app.add_flag("--no-mpi", no_mpi, "No MPI_Allreduce rows (simulations: SMPI's own allreduce allocates real buffers)");
  std::string torus_shape, dtype = "fp32";
  int per_node = 1;
  app.add_option("--torus", torus_shape,
                 "The torus the nodes form (4x4x4x2x3x2): adds allreduce_torus rows (one rank per node) or, with "
                 "--ranks-per-node, the hierarchical rows cross nodes on it");
  app.add_option("--ranks-per-node", per_node,
                 "Ranks per (emulated) node: adds allreduce_hierarchical rows when > 1")
      ->check(CLI::PositiveNumber);
  app.add_option("--dtype", dtype, "Element type: fp32 or bf16 (bf16 mpi rows reduce an fp32 copy)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  CLI11_PARSE(app, argc, argv);
  Communicator world = Communicator::world();
  const int p = world.size(), rank = world.rank();
  if (rank == 0 && csv) std::printf("impl,algorithm,dtype,ranks,bytes,time_s,algbw_gbs,busbw_gbs\n");
  if (rank == 0 && !csv)
    std::printf("# %d ranks; time = median of %d (slowest rank); busbw = algbw*2(p-1)/p\n", p, reps);
  const auto wanted = [&](const std::string& name) {
    return only.empty() || ("," + only + ",").find("," + name + ",") != std::string::npos;
  };
  std::vector<std::pair<std::string, AllreduceAlgorithm>> algos;
  if (!no_mpi && wanted("mpi")) algos.push_back({"mpi", AllreduceAlgorithm::mpi});
  if (!mpi_only) {
    if (wanted("ring")) algos.push_back({"ring", AllreduceAlgorithm::ring});
    if (wanted("rabenseifner")) algos.push_back({"rabenseifner", AllreduceAlgorithm::rabenseifner});
  }
  if (p % per_node != 0) {
    if (rank == 0) std::fprintf(stderr, "bench_collectives: %d ranks do not fill nodes of --ranks-per-node %d\n", p, per_node);
    return 1;
  }
  std::optional<Torus> nodes_torus;
  if (!torus_shape.empty()) nodes_torus = Torus::parse(torus_shape);
  if (nodes_torus && nodes_torus->nodes() != p / per_node) {
    if (rank == 0)
      std::fprintf(stderr, "bench_collectives: --torus %s has %d nodes, the job %d (%d ranks / %d per node)\n",
                   torus_shape.c_str(), nodes_torus->nodes(), p / per_node, p, per_node);
    return 1;
  }
  std::optional<TorusComms> torus;
  std::optional<Hierarchy> hierarchy;
  if (nodes_torus && per_node == 1) torus.emplace(world, *nodes_torus);
  if (per_node > 1) hierarchy.emplace(world, per_node, nodes_torus ? &*nodes_torus : nullptr);
#if !HOKUSAI_SMPI
  const Communicator node = split_node(world);
  const bool one_node = node.size() == p;
#endif
  // Times `run` (reset() restores the input between calls, untimed) and prints one row.
  const auto measure = [&](const std::string& impl, const std::string& label, int64_t bytes,
                           const std::function<void()>& run, const std::function<void()>& reset) {
    std::vector<double> times;
    for (int r = 0; r < reps + warmup; ++r) {
      world.barrier();
      const double t0 = MPI_Wtime();
      run();
      double dt = MPI_Wtime() - t0;
      HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, world.raw()));
      if (r >= warmup) times.push_back(dt);  // the first calls warm up
      reset();
    }
    std::sort(times.begin(), times.end());
    const double t = times[times.size() / 2];
    const double algbw = double(bytes) / t / 1e9, busbw = algbw * 2.0 * (p - 1) / p;
    if (rank != 0) return;
    if (csv)
      std::printf("%s,%s,%s,%d,%lld,%.6e,%.3f,%.3f\n", impl.c_str(), label.c_str(), dtype.c_str(), p, (long long)bytes,
                  t, algbw, busbw);
    else
      std::printf("%-8s %-18s %10lld B  %10.3f ms  algbw %7.2f GB/s  busbw %7.2f GB/s\n", impl.c_str(), label.c_str(),
                  (long long)bytes, t * 1e3, algbw, busbw);
    std::fflush(stdout);
  };
  // One message size in element type T.
  const auto run_size = [&](auto type_tag, int64_t bytes) {
    using T = decltype(type_tag);
    const int64_t n = bytes / int64_t(sizeof(T));
#if !HOKUSAI_SMPI
    if (one_node && !mpi_only && wanted("shared_memory") && std::is_same_v<T, float>) {
      // The data lives in the shared window (what the trainer's gradient arena would do).
      SharedBuffer shm(node, n);
      std::fill_n(shm.local(), n, 1.0f);
      measure("hokusai", "shared_memory", bytes, [&] { shm.allreduce(ReduceOp::sum); },
              [&] { std::fill_n(shm.local(), n, 1.0f); });
    }
#endif
    // The message (a Scratch: under SMPI its pages are shared by every simulated rank).
    ScratchOf<T> message(n);
#if HOKUSAI_SMPI
    const auto fill = [] {};  // shared pages: the values mean nothing, only the timing is simulated
#else
    const auto fill = [&] {
      if constexpr (std::is_same_v<T, float>)
        std::fill_n(message.data(), n, 1.0f);
      else
        std::fill_n(message.data(), n, to_bf16(1.0f));
    };
#endif
    fill();
    T* buf = message.data();
    if (torus && wanted("torus"))
      measure("hokusai", "torus_" + torus->torus().to_string(), bytes,
              [&] { allreduce_torus(*torus, buf, n, ReduceOp::sum); }, fill);
    if (hierarchy && wanted("hierarchical") && !mpi_only)
      measure("hokusai",
              "hierarchical_" + std::to_string(per_node) + (nodes_torus ? "_torus_" + nodes_torus->to_string() : ""),
              bytes, [&] { allreduce_hierarchical(*hierarchy, buf, n, ReduceOp::sum); }, fill);
    for (const auto& [name, algo] : algos) {
      std::string label = name == "mpi" ? mpi_label() : name;
      if (name == "mpi" && !std::is_same_v<T, float>) label += "_fp32_copy";
      measure(name == "mpi" ? "mpi" : "hokusai", label, bytes,
              [&] { allreduce(world, buf, n, ReduceOp::sum, algo); }, fill);
    }
  };
  for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    if (dtype == "bf16")
      run_size(bf16{}, bytes);
    else
      run_size(float{}, bytes);
  }
  return 0;
}
