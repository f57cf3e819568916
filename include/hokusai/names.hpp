// The names of an enum's values: one table per enum, the only place its spellings live. Config
// parsing, command-line options, log lines, error messages and the configuration reference all
// read the table, so a new value is one line in it.
//
//   template <> struct Names<Decay> {
//     static constexpr std::array<std::pair<Decay, std::string_view>, 3> table = {
//         {{Decay::cosine, "cosine"}, {Decay::linear, "linear"}, {Decay::constant, "constant"}}};
//   };
//   name_of(Decay::linear) == "linear";  value_named<Decay>("cosine") == Decay::cosine
//
// Header-only and dependency-free: kernels/ and comm/ name their enums with it too.
#pragma once

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace hokusai {

// Specialised per enum with `static constexpr std::array<std::pair<E, std::string_view>, N>
// table`, in the order the values are listed to users.
template <class E>
struct Names;

template <class E>
constexpr std::string_view name_of(E value) {
  for (const auto& [v, name] : Names<E>::table)
    if (v == value) return name;
  return "(unnamed)";
}

template <class E>
constexpr std::optional<E> value_named(std::string_view name) {
  for (const auto& [v, n] : Names<E>::table)
    if (n == name) return v;
  return std::nullopt;
}

// "a, b, c"
template <class E>
std::string name_list() {
  std::string out;
  for (const auto& entry : Names<E>::table) out += (out.empty() ? "" : ", ") + std::string(entry.second);
  return out;
}

// The value called `name`; throws std::invalid_argument "'x' is not one of: a, b, c".
template <class E>
E parse_name(std::string_view name) {
  if (const std::optional<E> v = value_named<E>(name)) return *v;
  throw std::invalid_argument("'" + std::string(name) + "' is not one of: " + name_list<E>());
}

}  // namespace hokusai
