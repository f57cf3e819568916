// A fresh, empty scratch directory per test case under the system temp directory.
#pragma once

#include <filesystem>
#include <string>

namespace hokusai::testing {

inline std::filesystem::path scratch_dir(const std::string& suite, const std::string& name) {
  const std::filesystem::path p = std::filesystem::temp_directory_path() / ("hokusai_test_" + suite) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace hokusai::testing
