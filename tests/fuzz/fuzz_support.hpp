// What every libFuzzer target of tests/fuzz/ shares: a private scratch directory, writing the
// input to a file there (every reader under test takes a path, as in the trainer), and the rule
// that decides whether an exception is a clean refusal or a finding.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unistd.h>

namespace hokusai::fuzz {

// One directory per process under $TMPDIR (libFuzzer's -jobs run several processes).
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    auto d = std::filesystem::path(base && *base ? base : "/tmp") / ("hokusai-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch(), ec); });
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), std::streamsize(size));
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write '%s'\n", path.c_str());
    std::abort();
  }
}

[[noreturn]] inline void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "FINDING: %s: %s\n", what, detail.c_str());
  std::abort();
}

// Runs `body`. A reader may refuse its input only with an exception whose message names the file
// (`must_name`, when given): the user must learn which file to fix. Allocation failures and
// length errors are findings: a size read from the input reached an allocation unchecked.
template <typename F>
void expect_clean(std::string_view must_name, F&& body) {
  try {
    body();
  } catch (const std::bad_alloc&) {
    finding("std::bad_alloc", "a size from the input reached an allocation unchecked");
  } catch (const std::length_error& e) {
    finding("std::length_error", e.what());
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    if (!must_name.empty() && msg.find(must_name) == std::string::npos)
      finding("error message does not name the file", "'" + std::string(must_name) + "' not in: " + msg);
  }
}

}  // namespace hokusai::fuzz
