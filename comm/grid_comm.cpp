#include "comm/grid_comm.hpp"

#include <algorithm>

namespace hokusai::comm {

GridComms GridComms::build(GridShape shape, const Communicator& world) {
  ParallelGrid grid(shape, world.size(), world.rank());
  // A group's color is its first member's world rank; the key orders members as the grid does.
  const auto color_of = [](const std::vector<int>& group) { return group.front(); };
  const auto key_of = [&](const std::vector<int>& group) {
    return int(std::find(group.begin(), group.end(), grid.rank()) - group.begin());
  };
  Communicator tp = world.split(color_of(grid.tp_group()), key_of(grid.tp_group()));
  Communicator dp = world.split(color_of(grid.dp_group()), key_of(grid.dp_group()));
  Communicator pp = world.split(color_of(grid.pp_group()), key_of(grid.pp_group()));
  Communicator embed = world.split(color_of(grid.embedding_group()), key_of(grid.embedding_group()));
  return GridComms{grid, Communicator(world.raw(), false), std::move(tp), std::move(dp), std::move(pp),
                   std::move(embed)};
}

}  // namespace hokusai::comm
