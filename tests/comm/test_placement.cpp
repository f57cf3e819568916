// Placement of grid ranks on a torus of nodes (comm/placement.hpp) and coordinate files
// (comm/torus.hpp): pure arithmetic, no MPI.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "comm/placement.hpp"
#include "scratch.hpp"

namespace hokusai::comm {
namespace {

Machine torus_machine(int ranks, int rpn, const std::string& shape) {
  Machine m;
  m.ranks = ranks;
  m.ranks_per_node = rpn;
  m.torus = Torus::parse(shape);
  return m;
}

// Every placement must be a permutation, and every dp group laid on the torus must be the nodes
// that differ only in the dp dimensions, in row-major order over them (so its TorusComms rings
// are torus lines); tp groups must share a node or differ only outside those dimensions.
void check_invariants(const GridShape& shape, const Machine& m, const Placement& p) {
  const int world = shape.world(), rpn = m.ranks_per_node;
  std::vector<int> world_of(static_cast<size_t>(world), -1);
  for (int r = 0; r < world; ++r) {
    ASSERT_GE(p.grid_rank[size_t(r)], 0);
    ASSERT_LT(p.grid_rank[size_t(r)], world);
    ASSERT_EQ(world_of[size_t(p.grid_rank[size_t(r)])], -1) << "grid rank played twice";
    world_of[size_t(p.grid_rank[size_t(r)])] = r;
  }
  if (p.dp_dims.empty()) return;
  const Torus& t = *m.torus;
  const auto coords = [&](int mpi_rank) {
    const int node = mpi_rank / rpn;
    return m.node_coords.empty() ? t.coords(node) : m.node_coords[size_t(node)];
  };
  for (int g = 0; g < world; ++g) {
    const ParallelGrid grid(shape, world, g);
    const std::vector<int> dp = grid.dp_group();
    const std::vector<int> c0 = coords(world_of[size_t(dp[0])]);
    for (size_t i = 0; i < dp.size(); ++i) {
      const std::vector<int> c = coords(world_of[size_t(dp[i])]);
      std::vector<int> sub;
      for (size_t d = 0; d < c.size(); ++d) {
        const bool in_dp = std::find(p.dp_dims.begin(), p.dp_dims.end(), int(d)) != p.dp_dims.end();
        if (in_dp)
          sub.push_back(c[d]);
        else
          EXPECT_EQ(c[d], c0[d]) << "dp group of grid rank " << g << " leaves its torus line";
      }
      EXPECT_EQ(p.dp_torus.node(sub), int(i)) << "dp rank " << i << " is not its node's row-major index";
    }
    const std::vector<int> mine = coords(world_of[size_t(g)]);
    for (int member : grid.tp_group()) {
      const std::vector<int> c = coords(world_of[size_t(member)]);
      for (int d : p.dp_dims) EXPECT_EQ(c[size_t(d)], mine[size_t(d)]) << "tp group crosses a dp dimension";
    }
  }
}

TEST(Placement, FlatIsTheIdentity) {
  Machine m;
  m.ranks = 8;
  m.ranks_per_node = 2;
  const Placement p = place({2, 2, 2}, m);
  EXPECT_TRUE(p.identity());
  EXPECT_TRUE(p.dp_dims.empty());
  EXPECT_EQ(p.dp_per_node, 1);  // tp fastest: the two ranks of a node are one tp group
}

TEST(Placement, WorkedExampleOfTheHeader) {
  const GridShape s{2, 1, 4};
  Machine m = torus_machine(8, 2, "2x2");
  Placement p = place(s, m);
  EXPECT_TRUE(p.identity());
  EXPECT_EQ(p.dp_dims, (std::vector<int>{0, 1}));
  EXPECT_EQ(p.dp_torus.to_string(), "2x2");
  check_invariants(s, m, p);
  m.node_coords = {{0, 0}, {1, 1}, {1, 0}, {0, 1}};
  p = place(s, m);
  EXPECT_EQ(p.grid_rank, (std::vector<int>{0, 1, 6, 7, 4, 5, 2, 3}));
  check_invariants(s, m, p);
}

TEST(Placement, TofuSliceFugakuLayout) {
  // 768 nodes of 4x4x4x2x3x2, one rank per node, tp 6 x pp 2: a dp group spans 64 nodes. The
  // sets with product 64 and most links are X,Y,Z (6 links) and X,Y,a,c (6); the fewer
  // dimensions lose the tie-break on dimension count, so dp takes X,Y,a,c.
  const GridShape s{6, 2, 64};
  const Machine m = torus_machine(768, 1, "4x4x4x2x3x2");
  const Placement p = place(s, m);
  EXPECT_EQ(p.dp_torus.nodes(), 64);
  EXPECT_EQ(p.dp_dims, (std::vector<int>{0, 1, 3, 5}));
  EXPECT_EQ(p.dp_per_node, 1);
  check_invariants(s, m, p);
  ASSERT_FALSE(p.description.empty());
  EXPECT_NE(p.description.back().find("X,Y,a,c"), std::string::npos) << p.description.back();
}

TEST(Placement, ReversedCoordinatesKeepTheInvariants) {
  const GridShape s{2, 2, 3};
  Machine m = torus_machine(12, 1, "2x2x3");
  for (int n = 11; n >= 0; --n) m.node_coords.push_back(m.torus->coords(n));
  const Placement p = place(s, m);
  EXPECT_FALSE(p.identity());
  EXPECT_EQ(p.dp_dims, (std::vector<int>{2}));
  check_invariants(s, m, p);
}

TEST(Placement, SeveralDpRanksPerNode) {
  // 4 ranks per node, tp 2: a node holds two whole replicas, so each dp group has 2 ranks on
  // each of its 4 nodes, which form the whole 2x2 torus (the hierarchical allreduce's step
  // across nodes runs on it).
  const Placement p = place({2, 1, 8}, torus_machine(16, 4, "2x2"));
  EXPECT_EQ(p.dp_per_node, 2);
  EXPECT_EQ(p.dp_dims, (std::vector<int>{0, 1}));
  EXPECT_EQ(p.dp_torus.nodes(), 4);
}

TEST(Placement, NoFittingDimensionsFallsBackAndSaysWhy) {
  // dp 3 on a 1-D torus of 6 nodes (tp 2 spans 2 nodes): no dimension set has 3 nodes.
  const Placement p = place({2, 1, 3}, torus_machine(6, 1, "6"));
  EXPECT_TRUE(p.identity());
  EXPECT_TRUE(p.dp_dims.empty());
  bool said = false;
  for (const auto& line : p.description) said |= line.find("no set of torus dimensions") != std::string::npos;
  EXPECT_TRUE(said);
}

TEST(Placement, RejectsMachinesThatDoNotFit) {
  EXPECT_THROW(place({2, 1, 2}, torus_machine(4, 1, "2x3")), std::invalid_argument);  // 6 nodes, 4 ranks
  EXPECT_THROW(place({1, 1, 6}, torus_machine(6, 4, "2")), std::invalid_argument);    // 6 ranks, nodes of 4
  EXPECT_THROW(place({2, 1, 2}, torus_machine(8, 1, "2x4")), std::invalid_argument);  // grid of 4, 8 ranks
}

// The torus allreduce's routes: one part per link in two halves, each visiting every dimension of
// extent > 1 exactly once, -1 only where a second link exists, and the links evenly loaded.
TEST(TorusRoutes, VisitEveryDimensionOnceAndBalanceTheLinks) {
  const struct {
    const char* shape;
    size_t parts;
    double max_imbalance;
  } cases[] = {{"4x4x4x2x3x2", 20, 1.02}, {"8x8x8", 12, 1.001}, {"4x2x3x2", 12, 1.06}, {"4x4", 8, 1.001},
               {"3x2", 6, 1.001}, {"mesh:4x4", 4, 1.001}, {"2x1x3", 6, 1.001}, {"1x1", 0, 1.0}};
  for (const auto& c : cases) {
    const Torus t = Torus::parse(c.shape);
    const std::vector<TorusRoute> routes = torus_routes(t);
    ASSERT_EQ(routes.size(), c.parts) << c.shape;
    for (const TorusRoute& r : routes) {
      std::multiset<int> seen(r.dims.begin(), r.dims.end());
      for (size_t d = 0; d < t.dims.size(); ++d)
        EXPECT_EQ(seen.count(int(d)), t.dims[d] > 1 ? 1u : 0u) << c.shape << " dimension " << d;
      ASSERT_EQ(r.dirs.size(), r.dims.size());
      for (size_t k = 0; k < r.dirs.size(); ++k) {
        EXPECT_TRUE(r.dirs[k] == 1 || r.dirs[k] == -1);
        if (r.dirs[k] == -1) {
          EXPECT_TRUE(t.wrap && t.dims[size_t(r.dims[k])] > 2) << c.shape;
        }
      }
    }
    EXPECT_LE(torus_route_imbalance(t, routes), c.max_imbalance) << c.shape;
  }
  // The first schedule (halves in opposite orders, same direction) leaves the 6-D slice's + links
  // 18% busier than average: the imbalance the route choice removes.
  const Torus tofu = Torus::parse("4x4x4x2x3x2");
  std::vector<TorusRoute> naive;
  const int D = 6;
  const std::vector<std::pair<int, int>> starts = {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {0, -1}, {1, -1}, {2, -1}, {4, -1}};
  for (int q = 0; q < 20; ++q) {
    TorusRoute r;
    const auto [j, dir] = starts[size_t(q % 10)];
    for (int k = 0; k < D; ++k) {
      const int d = (j + k * (q < 10 ? 1 : D - 1)) % D;
      r.dims.push_back(d);
      r.dirs.push_back(tofu.dims[size_t(d)] > 2 ? dir : 1);
    }
    naive.push_back(r);
  }
  EXPECT_GT(torus_route_imbalance(tofu, naive), 1.15);
}

std::string write(const std::filesystem::path& dir, const std::string& name, const std::string& text) {
  const std::string path = (dir / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(Coordinates, ReadsFugakuStyleAndPlainLines) {
  const auto dir = testing::scratch_dir("placement", "coords");
  const Torus t = Torus::parse("2x3");
  const auto c = read_coordinates(write(dir, "a", "# vcoord\n(0,0)\n(0,1)\n\n0,2\n1 0   # comment\n(1,1)\n( 1 , 2 )\n"), t, 6);
  EXPECT_EQ(c, (std::vector<std::vector<int>>{{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}}));
}

TEST(Coordinates, ReadsOneLinePerRank) {
  // Fugaku's --vcoordfile with 2 ranks per node lists each node twice, in rank order.
  const auto dir = testing::scratch_dir("placement", "per-rank");
  const Torus t = Torus::parse("2x2");
  const auto c = read_coordinates(write(dir, "r", "(0,1)\n(0,1)\n(1,1)\n(1,1)\n(0,0)\n(0,0)\n(1,0)\n(1,0)\n"), t, 4, 2);
  EXPECT_EQ(c, (std::vector<std::vector<int>>{{0, 1}, {1, 1}, {0, 0}, {1, 0}}));
  // One line per node still reads with 2 ranks per node.
  EXPECT_EQ(read_coordinates(write(dir, "n", "(0,1)\n(1,1)\n(0,0)\n(1,0)\n"), t, 4, 2), c);
  try {
    read_coordinates(write(dir, "split", "(0,1)\n(0,1)\n(1,1)\n(0,0)\n(0,0)\n(0,0)\n(1,0)\n(1,0)\n"), t, 4, 2);
    ADD_FAILURE() << "a node's ranks at two places read";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(":4: rank 3 is not at the coordinates of rank 2"), std::string::npos) << e.what();
  }
}

TEST(Coordinates, BadFilesNameTheFileAndLine) {
  const auto dir = testing::scratch_dir("placement", "bad");
  const Torus t = Torus::parse("2x2");
  const auto fails_with = [&](const std::string& text, const std::string& expect) {
    const std::string path = write(dir, "c", text);
    try {
      read_coordinates(path, t, 4);
      ADD_FAILURE() << "no error for:\n" << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind(path, 0), 0u) << e.what();
    }
  };
  fails_with("(0,0)\n(0,1)\n(1,0)\n", "lists 3 nodes");
  fails_with("(0,0)\n(0,1)\n(1,0)\n(1,1)\n(1,1)\n", ":5: ");
  fails_with("(0,0)\n(0,1,0)\n", ":2: 3 coordinates");
  fails_with("(0,0)\n(0,2)\n", "outside 0..1");
  fails_with("(0,0)\n(0,0)\n", "same coordinates");
  fails_with("(0,a)\n", ":1: expected integer coordinates");
  EXPECT_THROW(read_coordinates((dir / "missing").string(), t, 4), std::invalid_argument);
  EXPECT_THROW(read_coordinates(write(dir, "ok", "(0,0)\n(0,1)\n(1,0)\n(1,1)\n"), t, 8), std::invalid_argument);
}

}  // namespace
}  // namespace hokusai::comm
