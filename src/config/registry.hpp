// Internal: the one table of configuration fields (key, type, doc, accessors).
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>
#include <vector>

#include "hokusai/config.hpp"

namespace hokusai::config_detail {

struct Field {
  std::string key;                   // "optimizer.lr"
  std::string type;                  // "int", "float", "bool", "string", "list of string"
  std::string doc;                   // one line
  std::vector<std::string> choices;  // allowed values of a string field (empty: any)
  // Throws ConfigError (without location; the caller adds it) when the node has the wrong type.
  std::function<void(Config&, const YAML::Node&)> set;
  std::function<YAML::Node(const Config&)> get;
};

const std::vector<Field>& registry();
const Field* find_field(const std::string& key);
// Closest registered key by edit distance (for "did you mean").
std::string nearest_key(const std::string& key);

}  // namespace hokusai::config_detail
