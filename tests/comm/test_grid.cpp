#include <gtest/gtest.h>

#include "comm/grid.hpp"

namespace hokusai::comm {
namespace {

// The worked example of comm/grid.hpp, checked entry by entry.
TEST(ParallelGrid, WorkedExampleTp2Pp2Dp2) {
  const GridShape s{2, 2, 2};
  const int tp[] = {0, 1, 0, 1, 0, 1, 0, 1}, dp[] = {0, 0, 1, 1, 0, 0, 1, 1}, pp[] = {0, 0, 0, 0, 1, 1, 1, 1};
  for (int r = 0; r < 8; ++r) {
    ParallelGrid g(s, 8, r);
    EXPECT_EQ(g.tp_rank(), tp[r]) << r;
    EXPECT_EQ(g.dp_rank(), dp[r]) << r;
    EXPECT_EQ(g.pp_rank(), pp[r]) << r;
    EXPECT_EQ(g.rank_of(g.tp_rank(), g.dp_rank(), g.pp_rank()), r);
  }
  ParallelGrid g5(s, 8, 5);
  EXPECT_EQ(g5.tp_group(), (std::vector<int>{4, 5}));
  EXPECT_EQ(g5.dp_group(), (std::vector<int>{5, 7}));
  EXPECT_EQ(g5.pp_group(), (std::vector<int>{1, 5}));
  EXPECT_TRUE(g5.last_stage());
}

TEST(ParallelGrid, RejectsLayoutsThatDoNotFit) {
  try {
    ParallelGrid g({2, 2, 2}, 6, 0);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("= 8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("6 ranks"), std::string::npos) << msg;
  }
  EXPECT_THROW(ParallelGrid({0, 1, 1}, 0, 0), std::invalid_argument);
  EXPECT_THROW(ParallelGrid({1, 1, 2}, 2, 2), std::invalid_argument);
}

TEST(SplitEvenly, CoversTheRangeWithoutGaps) {
  for (int64_t total : {0, 1, 7, 40, 41})
    for (int parts : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int i = 0; i < parts; ++i) {
        const Range r = split_evenly(total, parts, i);
        EXPECT_EQ(r.begin, next);
        EXPECT_LE(r.size(), total / parts + 1);
        next = r.end;
      }
      EXPECT_EQ(next, total);
    }
}

}  // namespace
}  // namespace hokusai::comm
