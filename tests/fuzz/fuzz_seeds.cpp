// Writes the seed corpora of the binary fuzz targets into DIR/<target>/ (valid inputs, so the
// fuzzer starts from files the readers accept): fuzz_seeds DIR; or prints the libFuzzer
// dictionary of config keys: fuzz_seeds --dictionary. The YAML seeds are copies of configs/
// (scripts/fuzz.sh --seeds does all of it).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ckpt/safetensors.hpp"
#include "fuzz_fixtures.hpp"
#include "fuzz_support.hpp"
#include "hokusai/checkpoint.hpp"
#include "hokusai/data.hpp"

namespace fs = std::filesystem;
using namespace hokusai;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void put(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  fuzz::write_file(path, bytes.data(), bytes.size());
}

void indexed_seed(const fs::path& out, const fs::path& work, uint8_t dtype, int docs) {
  const auto prefix = (work / ("ds" + std::to_string(dtype))).string();
  IndexedDatasetWriter w(prefix, dtype);
  for (int d = 0; d < docs; ++d) {
    for (int s = 0; s < 1 + d % 2; ++s) {
      std::vector<int32_t> tok(size_t(2 + d + s));
      for (size_t i = 0; i < tok.size(); ++i) tok[i] = int32_t(i * 3 + size_t(d));
      w.add_sequence(tok);
    }
    w.end_document();
  }
  w.finish();
  const std::string idx = slurp(prefix + ".idx"), bin = slurp(prefix + ".bin");
  const uint32_t n = uint32_t(idx.size());
  put(out, std::string(reinterpret_cast<const char*>(&n), 4) + idx + bin);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--dictionary") {  // libFuzzer dictionary of the config keys
    for (const std::string& key : config_keys()) {
      const size_t dot = key.find('.');
      std::printf("\"%s\"\n\"%s=\"\n\"%s:\"\n", key.c_str(), key.c_str(), key.substr(dot + 1).c_str());
    }
    return 0;
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR | fuzz_seeds --dictionary\n");
    return 2;
  }
  const fs::path out = argv[1], work = fuzz::scratch();
  indexed_seed(out / "indexed_dataset" / "uint16", work, 8, 4);
  indexed_seed(out / "indexed_dataset" / "int32", work, 4, 3);
  indexed_seed(out / "indexed_dataset" / "uint8", work, 1, 1);

  fuzz::SampleIndexFixture f(work / "sample");
  put(out / "sample_index" / "valid", slurp(f.cache_file));

  std::vector<float> params(10), m(10), v(10);
  for (size_t i = 0; i < params.size(); ++i) params[i] = 0.5f * float(i), m[i] = 0.01f, v[i] = 0.001f;
  const Config cfg;
  for (bool with_opt : {true, false}) {
    const fs::path run = work / (with_opt ? "run_opt" : "run");
    CheckpointView view{7, 56, 7, params, with_opt ? std::span<const float>(m) : std::span<const float>(),
                        with_opt ? std::span<const float>(v) : std::span<const float>()};
    const std::string dir = save_checkpoint(run.string(), cfg, 0x1234abcdULL, view, 2);
    put(out / "checkpoint" / (with_opt ? "state_opt" : "state"), std::string(1, '\0') + slurp(fs::path(dir) / "state.bin"));
  }
  put(out / "checkpoint" / "latest", "\x01step_00000002\n|step_00000002|step_00000001|step_00000003.tmp");
  put(out / "checkpoint" / "latest_damaged", "\x01step_0000|step_00000004|step_00000010");

  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> h = {0x3c00, 0x4000, 0xc000};  // fp16 1, 2, -2
  const std::vector<uint16_t> b = {0x3f80, 0x4000};           // bf16 1, 2
  const std::vector<int32_t> i = {7, -1};
  const auto bytes = [](const auto& vec) {
    return std::span<const unsigned char>(reinterpret_cast<const unsigned char*>(vec.data()),
                                          vec.size() * sizeof(vec[0]));
  };
  fs::create_directories(out / "safetensors");
  safetensors::write((out / "safetensors" / "mixed").string(),
                     {{"w", safetensors::DType::F32, {2, 3}, bytes(a)},
                      {"h", safetensors::DType::F16, {3}, bytes(h)},
                      {"b", safetensors::DType::BF16, {2, 1}, bytes(b)},
                      {"i", safetensors::DType::I32, {2}, bytes(i)}},
                     {{"format", "pt"}});
  safetensors::write((out / "safetensors" / "empty").string(), {}, {});
  std::printf("fuzz_seeds: wrote %s\n", out.c_str());
  return 0;
}
