// The comm layer under mpirun (ctest runs this with 1, 2, 3, 4, 6 and 8 ranks): grid
// communicators against the rank formula, and every collective against MPI's own result on
// integer-valued floats, whose sums are exact in any order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/grid_comm.hpp"
#include "comm/topology.hpp"
#include "comm/mpi.hpp"
#include "comm/nonblocking.hpp"
#include "comm/placement.hpp"
#include "comm/shared.hpp"

namespace hokusai::comm {
namespace {

Communicator& world() {
  static Communicator w = Communicator::world();  // test-local: one world per process
  return w;
}

TEST(GridComms, EveryLayoutMatchesTheRankFormula) {
  const int p = world().size();
  int layouts = 0;
  for (int tp = 1; tp <= p; ++tp)
    for (int pp = 1; pp <= p; ++pp) {
      if (p % (tp * pp) != 0) continue;
      const int dp = p / (tp * pp);
      const GridComms g = GridComms::build({tp, pp, dp}, world());
      EXPECT_EQ(g.tp.world_ranks(), g.grid.tp_group()) << tp << "x" << pp << "x" << dp;
      EXPECT_EQ(g.dp.world_ranks(), g.grid.dp_group()) << tp << "x" << pp << "x" << dp;
      EXPECT_EQ(g.pp.world_ranks(), g.grid.pp_group()) << tp << "x" << pp << "x" << dp;
      EXPECT_EQ(g.embed.world_ranks(), g.grid.embedding_group()) << tp << "x" << pp << "x" << dp;
      const bool end_stage = g.grid.first_stage() || g.grid.last_stage();
      EXPECT_EQ(g.embed.size(), pp > 1 && end_stage ? 2 : 1) << tp << "x" << pp << "x" << dp;
      EXPECT_EQ(g.tp.rank(), g.grid.tp_rank());
      EXPECT_EQ(g.dp.rank(), g.grid.dp_rank());
      EXPECT_EQ(g.pp.rank(), g.grid.pp_rank());
      ++layouts;
    }
  EXPECT_GE(layouts, 1);
}

TEST(GridComms, RejectsALayoutThatDoesNotFit) {
  const int p = world().size();
  EXPECT_THROW(GridComms::build({p + 1, 1, 1}, world()), std::invalid_argument);
}

// Rank- and index-dependent integers: the expected sum is known in closed form.
float value(int rank, int64_t i) { return float((rank + 1) * (i % 97) - 13); }
float expected_sum(int p, int64_t i) { return float((i % 97) * p * (p + 1) / 2 - 13 * p); }

const int64_t kSizes[] = {0, 1, 2, 3, 7, 8, 9, 100, 1000, 4097, 65539, (1 << 20) + 5};

TEST(Allreduce, EveryAlgorithmIsExactAndMatchesMpi) {
  const int p = world().size(), r = world().rank();
  for (auto algo : {AllreduceAlgorithm::mpi, AllreduceAlgorithm::ring, AllreduceAlgorithm::rabenseifner,
                    AllreduceAlgorithm::automatic})
    for (auto op : {ReduceOp::sum, ReduceOp::average})
      for (int64_t n : kSizes) {
        std::vector<float> data(static_cast<size_t>(n)), ref(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) data[size_t(i)] = ref[size_t(i)] = value(r, i);
        allreduce(world(), data.data(), n, op, algo);
        if (n > 0)
          HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(n), MPI_FLOAT, MPI_SUM, world().raw()));
        const float inv = 1.0f / float(p);
        for (int64_t i = 0; i < n; ++i) {
          const float want = op == ReduceOp::sum ? expected_sum(p, i) : expected_sum(p, i) * inv;
          ASSERT_EQ(data[size_t(i)], want) << name_of(algo) << (op == ReduceOp::sum ? " sum" : " avg") << " n=" << n
                                           << " i=" << i << " p=" << p << " rank " << r;
          if (op == ReduceOp::sum) {
            ASSERT_EQ(data[size_t(i)], ref[size_t(i)]);
          }
        }
      }
}

// Every torus and mesh shape of the world (1-D, and every ordered factorisation into 2 and 3
// extents), every size and both ops: exact, equal to the closed form and to MPI_Allreduce.
TEST(Allreduce, TorusIsExactOnEveryShape) {
  const int p = world().size(), r = world().rank();
  std::vector<std::string> shapes = {std::to_string(p), "mesh:" + std::to_string(p)};
  for (int a = 2; a <= p; ++a)
    if (p % a == 0 && p / a > 1) {
      shapes.push_back(std::to_string(a) + "x" + std::to_string(p / a));
      shapes.push_back("mesh:" + std::to_string(a) + "x" + std::to_string(p / a));
      for (int b = 2; b <= p / a; ++b)
        if ((p / a) % b == 0 && p / a / b > 1)
          shapes.push_back(std::to_string(a) + "x" + std::to_string(b) + "x" + std::to_string(p / a / b));
    }
  if (p == 1) shapes.push_back("1x1");
  for (const auto& shape : shapes) {
    const TorusComms tc(world(), Torus::parse(shape));
    for (auto op : {ReduceOp::sum, ReduceOp::average})
      for (int64_t n : kSizes) {
        std::vector<float> data(static_cast<size_t>(n)), ref(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) data[size_t(i)] = ref[size_t(i)] = value(r, i);
        allreduce_torus(tc, data.data(), n, op);
        if (n > 0) HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, ref.data(), int(n), MPI_FLOAT, MPI_SUM, world().raw()));
        const float inv = 1.0f / float(p);
        for (int64_t i = 0; i < n; ++i) {
          const float want = op == ReduceOp::sum ? expected_sum(p, i) : expected_sum(p, i) * inv;
          ASSERT_EQ(data[size_t(i)], want) << "torus " << shape << " n=" << n << " i=" << i << " rank " << r;
          if (op == ReduceOp::sum) {
            ASSERT_EQ(data[size_t(i)], ref[size_t(i)]);
          }
        }
      }
  }
  EXPECT_THROW(TorusComms(world(), Torus::parse(std::to_string(p + 1))), std::invalid_argument);
  EXPECT_THROW(Torus::parse("4x"), std::invalid_argument);
  EXPECT_THROW(Torus::parse("4xa"), std::invalid_argument);
  EXPECT_THROW(Torus::parse("0x2"), std::invalid_argument);
  const Torus tofu = Torus::parse("4x4x4x2x3x2");
  EXPECT_EQ(tofu.nodes(), 768);
  for (int node : {0, 1, 5, 767, 400}) EXPECT_EQ(tofu.node(tofu.coords(node)), node);
  EXPECT_EQ(tofu.coords(1), (std::vector<int>{0, 0, 0, 0, 0, 1}));  // the last dimension varies fastest
}

TEST(RingCollectives, ReduceScatterAndAllgatherMatchMpi) {
  const int p = world().size(), r = world().rank();
  for (int64_t n : kSizes) {
    std::vector<float> data(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(r, i);
    reduce_scatter_ring(world(), data.data(), n, ReduceOp::sum);
    const Range mine = split_evenly(n, p, r);
    // MPI_Reduce_scatter with the same chunking.
    std::vector<int> counts(static_cast<size_t>(p)), displs(static_cast<size_t>(p));
    for (int q = 0; q < p; ++q) {
      counts[size_t(q)] = int(split_evenly(n, p, q).size());
      displs[size_t(q)] = int(split_evenly(n, p, q).begin);
    }
    std::vector<float> src(static_cast<size_t>(n)), got(static_cast<size_t>(mine.size()) + 1);
    for (int64_t i = 0; i < n; ++i) src[size_t(i)] = value(r, i);
    if (n > 0) HOKUSAI_MPI(MPI_Reduce_scatter(src.data(), got.data(), counts.data(), MPI_FLOAT, MPI_SUM, world().raw()));
    for (int64_t i = 0; i < mine.size(); ++i) {
      ASSERT_EQ(data[size_t(mine.begin + i)], got[size_t(i)]) << "reduce-scatter n=" << n << " i=" << i;
      ASSERT_EQ(data[size_t(mine.begin + i)], expected_sum(p, mine.begin + i));
    }
    // Allgather of the reduced chunks gives the full allreduce.
    allgather_ring(world(), data.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(data[size_t(i)], expected_sum(p, i)) << "allgather n=" << n << " i=" << i;
  }
}

// bf16: small integers (|partial sums| <= 144 for 8 ranks) are exact in bf16's 8 significant
// bits, so every algorithm must give the closed form exactly: the same rounding everywhere.
float small_value(int rank, int64_t i) { return float((rank + 1) * (i % 5) - 2); }
float small_sum(int p, int64_t i) { return float((i % 5) * p * (p + 1) / 2 - 2 * p); }

// ZeRO-1's bucketed reduce-scatter: the arena cut into ranges, each reduce-scattered on its own
// (non-blocking, several in flight) with every rank's global shard cut to the range, must give
// bit for bit the sums of one reduce_scatter_ring over the whole arena, on general (non-integer)
// floats whose sums depend on the order of the additions; and the bucketed allgather must then
// rebuild the whole arena on every rank.
TEST(RingCollectives, BucketedReduceScatterAndAllgatherAreBitIdenticalToTheWholeArena) {
  const int p = world().size(), r = world().rank();
  for (const int64_t n : {int64_t(0), int64_t(5), int64_t(1000), int64_t(65539)}) {
    std::vector<float> whole(static_cast<size_t>(n)), bucketed;
    for (int64_t i = 0; i < n; ++i) whole[size_t(i)] = std::sin(0.37f * float(i) + 1.3f * float(r + 1)) / float(r + 3);
    bucketed = whole;
    reduce_scatter_ring(world(), whole.data(), n, ReduceOp::sum);
    // Uneven buckets, started in reverse order as backward reports them.
    std::vector<Range> buckets;
    for (int64_t b = n; b > 0;) {
      const int64_t size = std::min<int64_t>(b, 1 + (b * 7) % 977);
      buckets.push_back({b - size, b});
      b -= size;
    }
    const auto chunks_of = [&](Range bucket) {
      std::vector<Range> c(static_cast<size_t>(p));
      for (int q = 0; q < p; ++q) {
        const Range s = split_evenly(n, p, q);
        const int64_t b = std::clamp(s.begin, bucket.begin, bucket.end), e = std::clamp(s.end, bucket.begin, bucket.end);
        c[size_t(q)] = {b - bucket.begin, e - bucket.begin};
      }
      return c;
    };
    std::vector<AllreduceHandle> handles;
    for (size_t k = 0; k < buckets.size(); ++k)
      handles.push_back(AllreduceHandle::ring_reduce_scatter(world(), bucketed.data() + buckets[k].begin,
                                                             chunks_of(buckets[k]), int(k) + 1));
    for (auto& h : handles) h.wait();
    const Range mine = split_evenly(n, p, r);
    for (int64_t i = mine.begin; i < mine.end; ++i)
      ASSERT_EQ(bucketed[size_t(i)], whole[size_t(i)]) << "n=" << n << " i=" << i << " p=" << p;
    // The shard's sums gathered back: every rank holds every rank's shard.
    std::vector<AllreduceHandle> gathers;
    for (size_t k = 0; k < buckets.size(); ++k)
      gathers.push_back(AllreduceHandle::ring_allgather(world(), bucketed.data() + buckets[k].begin,
                                                        chunks_of(buckets[k]), 4096 + int(k)));
    for (auto& h : gathers) h.wait();
    allgather_ring(world(), whole.data(), n);
    ASSERT_EQ(bucketed, whole) << "n=" << n << " p=" << p;
  }
}

TEST(Bf16, EveryAlgorithmIsExactOnSmallIntegers) {
  const int p = world().size(), r = world().rank();
  std::vector<std::unique_ptr<TorusComms>> tori;
  tori.push_back(std::make_unique<TorusComms>(world(), Torus::parse(std::to_string(p))));
  for (int a = 2; a < p; ++a)
    if (p % a == 0) tori.push_back(std::make_unique<TorusComms>(world(), Torus::parse(std::to_string(a) + "x" + std::to_string(p / a))));
  std::vector<std::unique_ptr<Hierarchy>> hierarchies;
  for (int q = 1; q <= p; ++q)
    if (p % q == 0) hierarchies.push_back(std::make_unique<Hierarchy>(world(), q));
  for (auto op : {ReduceOp::sum, ReduceOp::average})
    for (int64_t n : kSizes) {
      std::vector<bf16> want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        want[size_t(i)] = to_bf16(op == ReduceOp::sum ? small_sum(p, i) : small_sum(p, i) * (1.0f / float(p)));
      // run(name, f): f reduces `data` in place; the result must equal `want` bit for bit.
      const auto run = [&](const std::string& name, const auto& f) {
        std::vector<bf16> data(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) data[size_t(i)] = to_bf16(small_value(r, i));
        f(data.data());
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(data[size_t(i)].bits, want[size_t(i)].bits)
              << name << " n=" << n << " i=" << i << ": " << to_float(data[size_t(i)]) << " vs " << to_float(want[size_t(i)]);
      };
      for (auto algo : {AllreduceAlgorithm::mpi, AllreduceAlgorithm::ring, AllreduceAlgorithm::rabenseifner,
                        AllreduceAlgorithm::automatic})
        run(std::string(name_of(algo)), [&](bf16* d) { allreduce(world(), d, n, op, algo); });
      for (const auto& tc : tori)
        run("torus " + tc->torus().to_string(), [&](bf16* d) { allreduce_torus(*tc, d, n, op); });
      for (const auto& h : hierarchies)
        run("hierarchical " + std::to_string(h->node().size()), [&](bf16* d) { allreduce_hierarchical(*h, d, n, op); });
    }
}

// bf16 on general values: each algorithm rounds once per step, MPI (on an fp32 copy) once; the
// difference stays within a few bf16 ulps of the largest partial sum.
TEST(Bf16, GeneralValuesStayWithinRounding) {
  const int p = world().size(), r = world().rank();
  const int64_t n = 10007;
  std::vector<bf16> ref(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = to_bf16(std::sin(0.37f * float(i) + float(r)) * 3.0f);
  std::vector<bf16> mpi_result = ref;
  allreduce(world(), mpi_result.data(), n, ReduceOp::sum, AllreduceAlgorithm::mpi);
  for (auto algo : {AllreduceAlgorithm::ring, AllreduceAlgorithm::rabenseifner}) {
    std::vector<bf16> got = ref;
    allreduce(world(), got.data(), n, ReduceOp::sum, algo);
    for (int64_t i = 0; i < n; ++i) {
      // p steps, each rounding by at most half an ulp of a value <= 3p: 2^-8 relative of 3p per step.
      const float tol = float(p) * 3.0f * float(p) * std::ldexp(1.0f, -8);
      ASSERT_NEAR(to_float(got[size_t(i)]), to_float(mpi_result[size_t(i)]), tol) << name_of(algo) << " i=" << i;
    }
  }
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(to_bf16(1.00390625f).bits, 0x3f80);  // halfway between 1 and the next bf16: to even
  EXPECT_EQ(to_bf16(1.01171875f).bits, 0x3f82);  // halfway between 0x3f81 and 0x3f82: to even
  EXPECT_NE(to_float(to_bf16(std::nanf(""))), to_float(to_bf16(std::nanf(""))));  // NaN stays NaN
}

// Out of place: the input is untouched and the output matches MPI's own collective.
TEST(OutOfPlace, AllreduceReduceScatterAllgatherMatchMpi) {
  const int p = world().size(), r = world().rank();
  for (int64_t n : kSizes) {
    std::vector<float> in(static_cast<size_t>(n)), out(static_cast<size_t>(n), -1.0f);
    for (int64_t i = 0; i < n; ++i) in[size_t(i)] = value(r, i);
    const std::vector<float> original = in;
    for (auto algo : {AllreduceAlgorithm::ring, AllreduceAlgorithm::rabenseifner, AllreduceAlgorithm::mpi}) {
      allreduce(world(), in.data(), out.data(), n, ReduceOp::sum, algo);
      ASSERT_EQ(in, original) << "allreduce changed its input";
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[size_t(i)], expected_sum(p, i)) << name_of(algo) << " n=" << n;
    }
    std::vector<int> counts(static_cast<size_t>(p)), displs(static_cast<size_t>(p));
    for (int q = 0; q < p; ++q) {
      counts[size_t(q)] = int(split_evenly(n, p, q).size());
      displs[size_t(q)] = int(split_evenly(n, p, q).begin);
    }
    const Range mine = split_evenly(n, p, r);
    std::vector<float> chunk(static_cast<size_t>(mine.size()) + 1), mpi_chunk(static_cast<size_t>(mine.size()) + 1);
    reduce_scatter(world(), in.data(), chunk.data(), n, ReduceOp::sum);
    ASSERT_EQ(in, original) << "reduce_scatter changed its input";
    if (n > 0)
      HOKUSAI_MPI(MPI_Reduce_scatter(in.data(), mpi_chunk.data(), counts.data(), MPI_FLOAT, MPI_SUM, world().raw()));
    for (int64_t i = 0; i < mine.size(); ++i) ASSERT_EQ(chunk[size_t(i)], mpi_chunk[size_t(i)]) << "n=" << n;
    std::vector<float> gathered(static_cast<size_t>(n)), mpi_gathered(static_cast<size_t>(n));
    allgather(world(), chunk.data(), gathered.data(), n);
    if (n > 0)
      HOKUSAI_MPI(MPI_Allgatherv(chunk.data(), int(mine.size()), MPI_FLOAT, mpi_gathered.data(), counts.data(),
                                 displs.data(), MPI_FLOAT, world().raw()));
    ASSERT_EQ(gathered, mpi_gathered) << "allgather n=" << n;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(gathered[size_t(i)], expected_sum(p, i));
  }
}

TEST(Broadcast, EveryRootAndAlgorithmMatchesMpi) {
  const int p = world().size(), r = world().rank();
  for (auto algo : {BroadcastAlgorithm::mpi, BroadcastAlgorithm::scatter_allgather})
    for (int root = 0; root < p; ++root)
      for (int64_t n : kSizes) {
        std::vector<float> data(static_cast<size_t>(n));
        std::vector<bf16> half(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          data[size_t(i)] = r == root ? value(root, i) : -1.0f;
          half[size_t(i)] = to_bf16(r == root ? small_value(root, i) : -1.0f);
        }
        broadcast(world(), data.data(), n, root, algo);
        broadcast(world(), half.data(), n, root, algo);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(data[size_t(i)], value(root, i)) << "root " << root << " n=" << n << " i=" << i;
          ASSERT_EQ(to_float(half[size_t(i)]), small_value(root, i)) << "bf16 root " << root << " n=" << n;
        }
      }
  std::vector<float> x(4);
  EXPECT_THROW(broadcast(world(), x.data(), 4, p), std::invalid_argument);
  EXPECT_THROW(parse_name<BroadcastAlgorithm>("tree"), std::invalid_argument);
}

TEST(SharedBuffer, IntraNodeAllreduceIsExact) {
  const Communicator node = split_node(world());
  const int p = node.size(), r = node.rank();
  for (int64_t n : kSizes)
    for (auto op : {ReduceOp::sum, ReduceOp::average}) {
      SharedBuffer buf(node, n);
      for (int64_t i = 0; i < n; ++i) buf.local()[i] = value(r, i);
      buf.allreduce(op);
      for (int64_t i = 0; i < n; ++i) {
        const float want = op == ReduceOp::sum ? expected_sum(p, i) : expected_sum(p, i) * (1.0f / float(p));
        ASSERT_EQ(buf.local()[i], want) << "n=" << n << " i=" << i << " p=" << p;
      }
    }
}

// Handles for buffers of six sizes in flight at once (distinct tags, as gradient buckets would
// be), made by start(bucket, data, count), progressed by test() alone between pieces of
// "compute" until all complete, then checked against the exact sums.
template <class Start>
void overlapping_handles_complete_exactly(const std::string& what, ReduceOp op, const Start& start) {
  const int p = world().size(), r = world().rank();
  const std::vector<int64_t> sizes = {0, 1, 7, 1000, 65539, 300000};
  std::vector<std::vector<float>> bufs;
  for (int64_t n : sizes) {
    bufs.emplace_back(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) bufs.back()[size_t(i)] = value(r, i);
  }
  std::vector<AllreduceHandle> handles;
  for (size_t b = 0; b < sizes.size(); ++b) handles.push_back(start(int(b), bufs[b].data(), sizes[b]));
  volatile double work = 0;
  bool all = false;
  for (int round = 0; !all && round < 10000000; ++round) {
    for (int w = 0; w < 100; ++w) work = work + w;  // the overlapped computation
    all = true;
    for (auto& h : handles) all = h.test() && all;
  }
  EXPECT_TRUE(all) << what << ": test() alone did not complete the handles";
  for (auto& h : handles) h.wait();
  const float scale = op == ReduceOp::sum ? 1.0f : 1.0f / float(p);
  for (size_t b = 0; b < sizes.size(); ++b)
    for (int64_t i = 0; i < sizes[b]; ++i)
      ASSERT_EQ(bufs[b][size_t(i)], expected_sum(p, i) * scale) << what << " size " << sizes[b] << " i=" << i;
}

TEST(NonBlocking, OverlappingAllreducesCompleteExactly) {
  for (auto algo : {AllreduceAlgorithm::ring, AllreduceAlgorithm::mpi, AllreduceAlgorithm::automatic})
    for (auto op : {ReduceOp::sum, ReduceOp::average})
      overlapping_handles_complete_exactly(std::string(name_of(algo)), op, [&](int b, float* data, int64_t n) {
        return AllreduceHandle(world(), data, n, op, algo, /*tag=*/100 + b);
      });
}

// Handles given the caller's receive buffers (as DataParallel keeps them between steps): exact,
// and a second round of the same sizes reuses the buffers (no new allocation), for the ring and
// the hierarchical handle.
TEST(NonBlocking, KeptScratchIsReusedAndExact) {
  const int p = world().size();
  std::deque<std::vector<float>> scratch(6);
  std::vector<const float*> first;
  for (int round = 0; round < 2; ++round) {
    overlapping_handles_complete_exactly("ring, kept scratch", ReduceOp::sum, [&](int b, float* data, int64_t n) {
      return AllreduceHandle(world(), data, n, ReduceOp::sum, AllreduceAlgorithm::ring, 100 + b, nullptr,
                             &scratch[size_t(b)]);
    });
    for (size_t b = 0; b < scratch.size(); ++b)
      if (round == 0)
        first.push_back(scratch[b].data());
      else
        EXPECT_EQ(scratch[b].data(), first[b]) << "bucket " << b << ": the kept buffer was allocated again";
  }
  if (p >= 2 && p % 2 == 0) {
    const Hierarchy h(world(), 2);
    std::deque<std::vector<float>> kept(6);
    overlapping_handles_complete_exactly("hierarchical, kept scratch", ReduceOp::sum, [&](int b, float* data, int64_t n) {
      return AllreduceHandle(h, data, n, ReduceOp::sum, 1 + b, &kept[size_t(b)]);
    });
  }
}

// Torus handles in flight at once on one TorusComms (distinct tags), with automatic ones beside
// them (which pick the torus above 64 KiB), progressed by test(): exact on 1-D and 2-D tori.
TEST(NonBlocking, OverlappingTorusAllreducesCompleteExactly) {
  const int p = world().size();
  std::vector<std::string> shapes = {std::to_string(p)};
  for (int a = 2; a < p; ++a)
    if (p % a == 0) shapes.push_back(std::to_string(a) + "x" + std::to_string(p / a));
  EXPECT_THROW(AllreduceHandle(world(), nullptr, 10, ReduceOp::sum, AllreduceAlgorithm::torus, 1), std::invalid_argument);
  for (const auto& shape : shapes) {
    const TorusComms tc(world(), Torus::parse(shape));
    for (auto op : {ReduceOp::sum, ReduceOp::average})
      overlapping_handles_complete_exactly("torus " + shape, op, [&](int b, float* data, int64_t n) {
        return AllreduceHandle(world(), data, n, op, b % 2 ? AllreduceAlgorithm::torus : AllreduceAlgorithm::automatic,
                               1 + b, &tc);
      });
  }
}


// The hierarchical allreduce for every node size dividing the world, across nodes flat or on a
// 1-D torus, blocking and as overlapping non-blocking handles: exact.
TEST(Allreduce, HierarchicalIsExactForEveryNodeSize) {
  const int p = world().size(), r = world().rank();
  for (int q = 1; q <= p; ++q) {
    if (p % q != 0) continue;
    const Torus line = Torus::parse(std::to_string(p / q));
    for (const Torus* nodes : {static_cast<const Torus*>(nullptr), &line}) {
      const Hierarchy h(world(), q, nodes);
      const std::string what = std::to_string(q) + " per node" + (nodes ? ", torus across" : "");
      for (auto op : {ReduceOp::sum, ReduceOp::average}) {
        const float scale = op == ReduceOp::sum ? 1.0f : 1.0f / float(p);
        for (int64_t n : kSizes) {
          std::vector<float> data(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(r, i);
          allreduce_hierarchical(h, data.data(), n, op);
          for (int64_t i = 0; i < n; ++i)
            ASSERT_EQ(data[size_t(i)], expected_sum(p, i) * scale) << what << " n=" << n << " i=" << i;
        }
        overlapping_handles_complete_exactly(what + " (handles)", op, [&](int b, float* data, int64_t n) {
          return AllreduceHandle(h, data, n, op, 1 + b);
        });
      }
    }
  }
  if (p > 1) {
    EXPECT_THROW(Hierarchy(world(), p + 1), std::invalid_argument);
  }
}

// The trainer's path: a placement on a torus (reversed node coordinates, so grid ranks are not
// MPI ranks), the grid's communicators built on it, and the dp gradient sum on the dp torus.
TEST(GridComms, PlacementOnATorusBuildsTheGroupsItChose) {
  const int p = world().size(), r = world().rank();
  for (int rpn : {1, 2}) {
    if (p % rpn != 0 || p / rpn < 2) continue;
    const int nodes = p / rpn;
    const std::string shape = nodes % 2 == 0 && nodes > 2 ? "2x" + std::to_string(nodes / 2) : std::to_string(nodes);
    for (bool reversed : {false, true}) {
      Machine m;
      m.ranks = p;
      m.ranks_per_node = rpn;
      m.torus = Torus::parse(shape);
      if (reversed)
        for (int n = nodes - 1; n >= 0; --n) m.node_coords.push_back(m.torus->coords(n));
      const GridShape gs{rpn, 1, p / rpn};  // a tp group fills a node; dp spans every node
      const Placement pl = place(gs, m);
      const GridComms g = GridComms::build(gs, world(), pl);
      const std::string what = shape + " rpn " + std::to_string(rpn) + (reversed ? " reversed" : "");
      EXPECT_EQ(g.world.rank(), pl.grid_rank[size_t(r)]) << what;
      std::vector<int> mpi_rank_of(static_cast<size_t>(p));  // grid rank -> MPI rank
      for (int w = 0; w < p; ++w) mpi_rank_of[size_t(pl.grid_rank[size_t(w)])] = w;
      const auto as_mpi = [&](std::vector<int> group) {
        for (int& x : group) x = mpi_rank_of[size_t(x)];
        return group;
      };
      EXPECT_EQ(g.tp.world_ranks(), as_mpi(g.grid.tp_group())) << what;
      EXPECT_EQ(g.dp.world_ranks(), as_mpi(g.grid.dp_group())) << what;
      EXPECT_EQ(g.pp.world_ranks(), as_mpi(g.grid.pp_group())) << what;
      ASSERT_TRUE(g.dp_torus) << what;
      EXPECT_EQ(g.dp_torus->torus().to_string(), shape) << what;
      // My node's coordinates are the dp torus coordinates of my dp rank.
      const std::vector<int> mine = reversed ? m.node_coords[size_t(r / rpn)] : m.torus->coords(r / rpn);
      EXPECT_EQ(pl.dp_torus.coords(g.dp.rank()), mine) << what;
      const int64_t n = 70000;
      std::vector<float> grads(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) grads[size_t(i)] = value(g.dp.rank(), i);
      AllreduceHandle(g.dp, grads.data(), n, ReduceOp::sum, AllreduceAlgorithm::automatic, 1, g.dp_torus.get()).wait();
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(grads[size_t(i)], expected_sum(g.dp.size(), i)) << what;
    }
  }
}

// Pipeline transfers tagged by micro-batch complete correctly even when received out of order.
TEST(NonBlocking, PipelineTransfersMatchByMicroBatch) {
  const int p = world().size(), r = world().rank();
  if (p < 2) GTEST_SKIP() << "needs two ranks";
  const int next = (r + 1) % p, prev = (r + p - 1) % p;
  constexpr int kMicro = 4;
  std::vector<std::vector<float>> out(kMicro, std::vector<float>(1000)), in(kMicro, std::vector<float>(1000));
  for (int m = 0; m < kMicro; ++m)
    for (int i = 0; i < 1000; ++i) out[size_t(m)][size_t(i)] = float(r * 10000 + m * 1000 + i);
  std::vector<Request> reqs;
  for (int m = kMicro - 1; m >= 0; --m) reqs.push_back(irecv(world(), in[size_t(m)].data(), 1000, prev, pipeline_tag(m, false)));
  for (int m = 0; m < kMicro; ++m) reqs.push_back(isend(world(), out[size_t(m)].data(), 1000, next, pipeline_tag(m, false)));
  for (auto& q : reqs) q.wait();
  for (int m = 0; m < kMicro; ++m)
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(in[size_t(m)][size_t(i)], float(prev * 10000 + m * 1000 + i));
}

TEST(CheckedMpi, AFailedCallNamesTheExpressionAndRank) {
  try {
    HOKUSAI_MPI(MPI_Send(nullptr, 1, MPI_FLOAT, world().size() + 5, 0, world().raw()));  // invalid destination
    FAIL() << "expected an MpiError";
  } catch (const MpiError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rank " + std::to_string(world().rank())), std::string::npos) << msg;
    EXPECT_NE(msg.find("MPI_Send"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test_comm.cpp"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace hokusai::comm
