// The PJM coordinate file puts every MPI rank where the placement wants its grid rank: read back
// (as `comm.coordinates`, one line per rank), the placement is the identity. And the node shape
// and the layout checks of `hokusai jobscript`.
#include <gtest/gtest.h>

#include <fstream>

#include "app/jobscript.hpp"
#include "comm/placement.hpp"
#include "scratch.hpp"

namespace hokusai {
namespace {

Config layout(int tp, int pp, int dp) {
  Config cfg;
  cfg.parallel.tp = tp;
  cfg.parallel.pp = pp;
  cfg.parallel.dp = dp;
  return cfg;
}

JobscriptOptions pjm(int nodes, int per_node, const std::string& shape) {
  JobscriptOptions o;
  o.scheduler = Scheduler::pjm;
  o.nodes = nodes;
  o.ranks_per_node = per_node;
  o.shape = shape;
  o.time = "01:00:00";
  o.hokusai = "/bin/hokusai";
  o.config = "/c.yaml";
  o.run_dir = "/run";
  o.script = "/job.sh";
  o.vcoord = "/job.vcoord";
  return o;
}

TEST(Jobscript, CoordinateFileMakesThePlacementTheIdentity) {
  struct Case {
    int tp, pp, dp, nodes, per_node;
    const char* shape;
  };
  for (const Case c : {Case{6, 2, 64, 768, 1, "8x12x8"}, Case{2, 2, 4, 16, 1, "4x2x2"}, Case{2, 1, 16, 16, 2, "4x4"},
                       Case{4, 2, 8, 16, 4, "4x4"}, Case{1, 1, 8, 8, 1, "8"}}) {
    const Config cfg = layout(c.tp, c.pp, c.dp);
    const Jobscript j = make_jobscript(cfg, pjm(c.nodes, c.per_node, c.shape));
    const auto dir = testing::scratch_dir("jobscript", "vcoord");
    const std::string path = (dir / "job.vcoord").string();
    std::ofstream(path) << j.vcoord;
    comm::Machine m;
    m.ranks = c.tp * c.pp * c.dp;
    m.ranks_per_node = c.per_node;
    m.torus = comm::Torus::parse(c.shape);
    m.node_coords = comm::read_coordinates(path, *m.torus, m.nodes(), c.per_node);
    const comm::Placement p = comm::place({c.tp, c.pp, c.dp}, m);
    EXPECT_TRUE(p.identity()) << "tp " << c.tp << " pp " << c.pp << " dp " << c.dp << " on " << c.shape << " x "
                              << c.per_node;
    EXPECT_NE(j.script.find("--vcoordfile \"$VCOORD\" -n " + std::to_string(m.ranks)), std::string::npos);
  }
}

TEST(Jobscript, NodeShapeFollowsTheRecipe) {
  EXPECT_EQ(comm::pjm_shape(13824, 6), (std::vector<int>{48, 6, 48}));  // Fugaku-LLM's published shape
  EXPECT_EQ(comm::pjm_shape(64, 1), (std::vector<int>{4, 4, 4}));
  const auto s = comm::pjm_shape(12, 5);  // tp not dividing: the most cubic shape of 12
  EXPECT_EQ(s[0] * s[1] * s[2], 12);
}

TEST(Jobscript, LayoutMismatchesAreOneLineNamingTheOption) {
  const Config cfg = layout(2, 2, 2);
  JobscriptOptions o = pjm(3, 0, "");
  const auto fails_with = [&](const JobscriptOptions& opts, const std::string& expect) {
    try {
      make_jobscript(cfg, opts);
      ADD_FAILURE() << "accepted: " << expect;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  fails_with(o, "--nodes 3: the config's 8 ranks");
  o = pjm(2, 2, "");
  fails_with(o, "--nodes 2 x --ranks-per-node 2 = 4 ranks");
  o = pjm(4, 2, "2x3");
  fails_with(o, "--shape 2x3");
  o = pjm(8, 1, "");
  o.time = "1h";
  fails_with(o, "--time '1h'");
  o.time = "00:01:00";
  o.signal_lead_s = 300;
  fails_with(o, "--signal-lead 300");
  o = pjm(8, 1, "");
  o.scheduler = Scheduler::slurm;
  o.launcher = "aprun";
  fails_with(o, "--launcher 'aprun'");
}

}  // namespace
}  // namespace hokusai
