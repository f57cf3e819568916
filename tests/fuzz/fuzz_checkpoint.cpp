// libFuzzer target: checkpoints (src/ckpt/checkpoint.cpp). Input byte 0 picks what is fuzzed:
//   even: state.bin itself (the rest of the input), loaded with and without optimizer state; the
//         expected tensor-table hash is taken from the file so the fuzzer gets past that check;
//   odd:  the run directory's `latest` file (the rest of the input, up to the first '|') and
//         the names of the step directories beside it (the following '|'-separated names), as
//         `latest_checkpoint` and `checkpoint_dir` meet them after a crash.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>

#include "fuzz_support.hpp"
#include "hokusai/checkpoint.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hokusai;
  if (size < 1) return 0;
  const bool state = data[0] % 2 == 0;
  ++data, --size;
  const fs::path run = fuzz::scratch() / "run";
  fs::remove_all(run);
  const fs::path root = run / "checkpoints";
  if (state) {
    const fs::path dir = root / "step_00000001";
    fs::create_directories(dir);
    fuzz::write_file(dir / "state.bin", data, size);
    uint64_t hash = 0;
    if (size >= 56) std::memcpy(&hash, data + 48, 8);  // Header::table_hash
    for (bool with_optimizer : {false, true})
      fuzz::expect_clean((dir / "state.bin").string(), [&] {
        CheckpointData d = load_checkpoint(dir.string(), hash, with_optimizer);
        if (d.step < 0 || d.consumed_samples < 0 || d.adam_t < 0)
          fuzz::finding("accepted a negative counter", std::to_string(d.step));
      });
    return 0;
  }
  fs::create_directories(root);
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::istringstream parts(text);
  std::string latest;
  std::getline(parts, latest, '|');
  fuzz::write_file(root / "latest", latest.data(), latest.size());
  for (std::string name; std::getline(parts, name, '|');) {
    if (name.empty() || name.find('/') != std::string::npos || name.find('\0') != std::string::npos ||
        name == "." || name == ".." || name.size() > 64)
      continue;
    std::error_code ec;
    fs::create_directories(root / name, ec);
    if (!ec && name.size() % 2 == 0) fuzz::write_file(root / name / "state.bin", "x", 1);
  }
  fuzz::expect_clean(run.string(), [&] {
    std::string note;
    if (auto dir = latest_checkpoint(run.string(), &note)) {
      if (!fs::exists(fs::path(*dir) / "state.bin")) fuzz::finding("latest names no complete checkpoint", *dir);
      if (checkpoint_step(*dir) < 0) fuzz::finding("latest is not a step directory", *dir);
    }
    (void)checkpoint_dir(run.string());
  });
  return 0;
}
