// libFuzzer target: the YAML config reader and the --set overrides (src/config/).
// Input: YAML text, optionally followed by a line "%%" and one override (key=value) per line.
// Property: a config that loads and validates is dumped, and the dump loads to the same dump.
#include <cstdint>
#include <sstream>
#include <string>

#include "fuzz_support.hpp"
#include "hokusai/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hokusai;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find("\n%%\n");
  const std::string yaml = input.substr(0, split);
  const auto path = fuzz::scratch() / "config.yaml";
  fuzz::write_file(path, yaml.data(), yaml.size());
  Config cfg;
  bool loaded = false;
  fuzz::expect_clean(path.string(), [&] {
    cfg = load_config(path.string());
    loaded = true;
  });
  if (!loaded) return 0;
  bool valid = false;
  fuzz::expect_clean("", [&] {  // override errors name the --set, validation errors the key
    if (split != std::string::npos) {
      std::istringstream lines(input.substr(split + 4));
      for (std::string line; std::getline(lines, line);) apply_override(cfg, line);
    }
    validate(cfg);
    valid = true;
  });
  if (!valid) return 0;
  const std::string dump = dump_config(cfg);
  const auto again = fuzz::scratch() / "dumped.yaml";
  fuzz::write_file(again, dump.data(), dump.size());
  fuzz::expect_clean(again.string(), [&] {
    Config back = load_config(again.string());
    validate(back);
    if (dump_config(back) != dump) fuzz::finding("dump does not round-trip", dump + "\n----\n" + dump_config(back));
  });
  return 0;
}
