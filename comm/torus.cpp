#include "comm/torus.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>

namespace hokusai::comm {

Torus Torus::parse(std::string_view text) {
  Torus t;
  std::string_view rest = text;
  if (rest.rfind("mesh:", 0) == 0) t.wrap = false, rest.remove_prefix(5);
  while (!rest.empty()) {
    const size_t x = rest.find('x');
    const std::string_view part = rest.substr(0, x);
    int v = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (ec != std::errc() || end != part.data() + part.size() || v < 1)
      throw std::invalid_argument("torus '" + std::string(text) + "': expected extents like 4x4x4x2x3x2 (or mesh:4x4)");
    t.dims.push_back(v);
    if (x == std::string_view::npos) break;
    rest.remove_prefix(x + 1);
    if (rest.empty()) throw std::invalid_argument("torus '" + std::string(text) + "' ends with 'x'");
  }
  if (t.dims.empty()) throw std::invalid_argument("torus '" + std::string(text) + "' has no dimensions");
  return t;
}

int Torus::nodes() const {
  int n = 1;
  for (int d : dims) n *= d;
  return n;
}

std::vector<int> Torus::coords(int node) const {
  std::vector<int> c(dims.size());
  for (size_t k = dims.size(); k-- > 0;) {
    c[k] = node % dims[k];
    node /= dims[k];
  }
  return c;
}

int Torus::node(const std::vector<int>& c) const {
  int n = 0;
  for (size_t k = 0; k < dims.size(); ++k) n = n * dims[k] + c[k];
  return n;
}

std::string Torus::to_string() const {
  std::string s = wrap ? "" : "mesh:";
  for (size_t k = 0; k < dims.size(); ++k) {
    if (k) s += 'x';
    s += std::to_string(dims[k]);
  }
  return s;
}

std::string Torus::dim_name(int dim) const {
  static constexpr const char* tofu[] = {"X", "Y", "Z", "a", "b", "c"};
  if (dims.size() == 6) return tofu[dim];
  return "d" + std::to_string(dim);
}

namespace {

// Link loads of a schedule: key (dim, dir) with dir +1 for extent-2 dimensions and meshes (one
// link), value the bytes per unit of message (both reduce-scatter and allgather).
struct LinkLoads {
  const Torus& t;
  std::map<std::pair<int, int>, double> load;
  std::pair<int, int> key(int dim, int dir) const { return {dim, t.dims[size_t(dim)] > 2 && t.wrap ? dir : 1}; }
  double after(int dim, int dir, double part) const {
    const double e = t.dims[size_t(dim)];
    const auto it = load.find(key(dim, dir));
    return (it == load.end() ? 0.0 : it->second) + 2.0 * part * (e - 1) / e;
  }
  void add(int dim, int dir, double part) { load[key(dim, dir)] = after(dim, dir, part); }
};

std::vector<int> active_dims(const Torus& t) {
  std::vector<int> act;
  for (size_t k = 0; k < t.dims.size(); ++k)
    if (t.dims[k] > 1) act.push_back(int(k));
  return act;
}

// mode 0: opposite orders per half, direction by load; mode 1: dimension and direction by load.
std::vector<TorusRoute> build_routes(const Torus& t, int mode) {
  const std::vector<int> act = active_dims(t);
  const int D = int(act.size());
  std::vector<std::pair<int, int>> starts;  // (position in act, direction)
  for (int j = 0; j < D; ++j) starts.push_back({j, 1});
  if (t.wrap)
    for (int j = 0; j < D; ++j)
      if (t.dims[size_t(act[size_t(j)])] > 2) starts.push_back({j, -1});
  const int nlinks = int(starts.size()), nparts = 2 * nlinks;
  std::vector<TorusRoute> routes(static_cast<size_t>(nparts));
  std::vector<double> size(static_cast<size_t>(nparts), 1.0 / nparts);
  LinkLoads loads{t, {}};
  for (int q = 0; q < nparts; ++q) {
    const auto [j, dir] = starts[size_t(q % nlinks)];
    routes[size_t(q)].dims.push_back(act[size_t(j)]);
    routes[size_t(q)].dirs.push_back(dir);
    loads.add(act[size_t(j)], dir, size[size_t(q)]);
    size[size_t(q)] /= t.dims[size_t(act[size_t(j)])];
  }
  // Phase by phase, part by part, so early phases (the big chunks) are placed first.
  for (int phase = 1; phase < D; ++phase)
    for (int q = 0; q < nparts; ++q) {
      TorusRoute& r = routes[size_t(q)];
      std::vector<int> dims;
      if (mode == 0) {
        const int step = q < nlinks ? 1 : D - 1;  // forward or backward round the dimensions
        dims.push_back(act[size_t((starts[size_t(q % nlinks)].first + phase * step) % D)]);
      } else {
        for (int d : act)
          if (std::find(r.dims.begin(), r.dims.end(), d) == r.dims.end()) dims.push_back(d);
      }
      int best_dim = dims[0], best_dir = 1;
      double best = 1e300;
      for (int d : dims)
        for (int dir : {1, -1}) {
          if (dir == -1 && (!t.wrap || t.dims[size_t(d)] <= 2)) continue;
          const double v = loads.after(d, dir, size[size_t(q)]);
          if (v < best - 1e-12) best = v, best_dim = d, best_dir = dir;
        }
      r.dims.push_back(best_dim);
      r.dirs.push_back(best_dir);
      loads.add(best_dim, best_dir, size[size_t(q)]);
      size[size_t(q)] /= t.dims[size_t(best_dim)];
    }
  return routes;
}

}  // namespace

double torus_route_imbalance(const Torus& t, const std::vector<TorusRoute>& routes) {
  LinkLoads loads{t, {}};
  for (const TorusRoute& r : routes) {
    double part = 1.0 / double(routes.size());
    for (size_t k = 0; k < r.dims.size(); ++k) {
      loads.add(r.dims[k], r.dirs[k], part);
      part /= t.dims[size_t(r.dims[k])];
    }
  }
  if (loads.load.empty()) return 1.0;
  double max = 0, sum = 0;
  for (const auto& [k, v] : loads.load) max = std::max(max, v), sum += v;
  return max / (sum / double(loads.load.size()));
}

std::vector<TorusRoute> torus_routes(const Torus& t) {
  if (active_dims(t).empty()) return {};
  std::vector<TorusRoute> a = build_routes(t, 0), b = build_routes(t, 1);
  return torus_route_imbalance(t, b) < torus_route_imbalance(t, a) - 1e-9 ? b : a;
}

std::vector<std::vector<int>> read_coordinates(const std::string& path, const Torus& torus, int nodes,
                                               int ranks_per_node) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot open the coordinate file (comm.coordinates)");
  if (nodes != torus.nodes())
    throw std::invalid_argument(path + ": the job has " + std::to_string(nodes) + " nodes but torus " +
                                torus.to_string() + " has " + std::to_string(torus.nodes()) +
                                ": fix comm.topology or the node count");
  const int per_node = std::max(ranks_per_node, 1);
  struct Entry {
    std::vector<int> c;
    int line;
  };
  std::vector<Entry> entries;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    for (char& ch : line)
      if (ch == '(' || ch == ')' || ch == ',' || ch == '\t' || ch == '\r') ch = ' ';
    std::vector<int> c;
    for (size_t i = 0; i < line.size();) {
      if (line[i] == ' ') {
        ++i;
        continue;
      }
      int v = 0;
      const auto [end, ec] = std::from_chars(line.data() + i, line.data() + line.size(), v);
      if (ec != std::errc() || (end != line.data() + line.size() && *end != ' '))
        throw std::invalid_argument(where + "expected integer coordinates like (0,1,2), got '" + line + "'");
      c.push_back(v);
      i = size_t(end - line.data());
    }
    if (c.empty()) continue;
    if (c.size() != torus.dims.size())
      throw std::invalid_argument(where + std::to_string(c.size()) + " coordinates, torus " + torus.to_string() +
                                  " has " + std::to_string(torus.dims.size()) + " dimensions");
    for (size_t k = 0; k < c.size(); ++k)
      if (c[k] < 0 || c[k] >= torus.dims[k])
        throw std::invalid_argument(where + "coordinate " + std::to_string(c[k]) + " of dimension " +
                                    torus.dim_name(int(k)) + " is outside 0.." + std::to_string(torus.dims[k] - 1));
    if (int64_t(entries.size()) == int64_t(nodes) * per_node)
      throw std::invalid_argument(where + "more than the job's " + std::to_string(nodes) + " nodes listed");
    entries.push_back({std::move(c), lineno});
  }
  // One line per rank (Fugaku's --vcoordfile with several ranks per node): the ranks of a node
  // repeat its coordinates; keep one line per node.
  const bool per_rank = per_node > 1 && int64_t(entries.size()) == int64_t(nodes) * per_node;
  if (per_rank) {
    std::vector<Entry> one;
    for (size_t i = 0; i < entries.size(); i += size_t(per_node)) {
      for (int r = 1; r < per_node; ++r)
        if (entries[i + size_t(r)].c != entries[i].c)
          throw std::invalid_argument(path + ":" + std::to_string(entries[i + size_t(r)].line) + ": rank " +
                                      std::to_string(i + size_t(r)) + " is not at the coordinates of rank " +
                                      std::to_string(i) + " on line " + std::to_string(entries[i].line) +
                                      ", but ranks " + std::to_string(i) + ".." + std::to_string(i + size_t(per_node) - 1) +
                                      " share a node (" + std::to_string(per_node) + " ranks per node)");
      one.push_back(std::move(entries[i]));
    }
    entries = std::move(one);
  }
  std::set<int> seen;
  std::vector<std::vector<int>> out;
  for (Entry& e : entries) {
    if (!seen.insert(torus.node(e.c)).second)
      throw std::invalid_argument(path + ":" + std::to_string(e.line) + ": node " + std::to_string(out.size()) +
                                  " is at the same coordinates as an earlier node");
    out.push_back(std::move(e.c));
  }
  if (int(out.size()) != nodes)
    throw std::invalid_argument(path + ": lists " + std::to_string(out.size()) + " nodes, the job has " +
                                std::to_string(nodes) + ": one line per node (or per rank), in rank order");
  return out;
}

std::vector<int> pjm_shape(int nodes, int tp) {
  std::vector<int> best;
  double best_score = 1e300;
  const auto consider = [&](int x, int y, int z) {
    // Closest to a cube (or to a square in x, z when y is fixed), x >= z.
    const double c = std::cbrt(double(nodes));
    const double score = std::abs(std::log(x / c)) + std::abs(std::log(y / c)) + std::abs(std::log(z / c));
    if (score < best_score - 1e-12) {
      best_score = score;
      best = {x, y, z};
    }
  };
  if (tp > 1 && nodes % tp == 0) {
    const int rest = nodes / tp;
    for (int z = 1; z * z <= rest; ++z)
      if (rest % z == 0) {
        const double c = std::sqrt(double(rest));
        const double score = std::abs(std::log((rest / z) / c));
        if (score < best_score - 1e-12) {
          best_score = score;
          best = {rest / z, tp, z};
        }
      }
    return best;
  }
  for (int x = 1; x <= nodes; ++x)
    if (nodes % x == 0)
      for (int y = 1; y <= nodes / x; ++y)
        if ((nodes / x) % y == 0) {
          const int z = nodes / x / y;
          if (x >= z) consider(x, y, z);
        }
  return best;
}

}  // namespace hokusai::comm
