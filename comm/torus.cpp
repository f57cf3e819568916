#include "comm/torus.hpp"

#include <charconv>
#include <fstream>
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

std::vector<std::vector<int>> read_coordinates(const std::string& path, const Torus& torus, int nodes) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot open the coordinate file (comm.coordinates)");
  if (nodes != torus.nodes())
    throw std::invalid_argument(path + ": the job has " + std::to_string(nodes) + " nodes but torus " +
                                torus.to_string() + " has " + std::to_string(torus.nodes()) +
                                ": fix comm.topology or the node count");
  std::vector<std::vector<int>> out;
  std::set<int> seen;
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
    if (!seen.insert(torus.node(c)).second)
      throw std::invalid_argument(where + "node " + std::to_string(out.size()) +
                                  " is at the same coordinates as an earlier node");
    if (int(out.size()) == nodes)
      throw std::invalid_argument(where + "more than the job's " + std::to_string(nodes) + " nodes listed");
    out.push_back(std::move(c));
  }
  if (int(out.size()) != nodes)
    throw std::invalid_argument(path + ": lists " + std::to_string(out.size()) + " nodes, the job has " +
                                std::to_string(nodes) + ": one line per node, in rank order");
  return out;
}

}  // namespace hokusai::comm
