// libFuzzer target: the safetensors reader (src/ckpt/safetensors.cpp) on arbitrary files.
#include <cstdint>

#include "ckpt/safetensors.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hokusai;
  const auto path = fuzz::scratch() / "model.safetensors";
  fuzz::write_file(path, data, size);
  fuzz::expect_clean(path.string(), [&] {
    safetensors::Reader r(path.string());
    for (const auto& t : r.tensors()) {
      if (t.numel() > (int64_t(1) << 20)) continue;  // a valid huge tensor: reading it proves nothing
      if (t.dtype == safetensors::DType::I32)
        (void)r.read_i32(t.name, t.shape);
      else if (t.dtype == safetensors::DType::F64)
        (void)r.read_f64(t.name, t.shape);
      else
        (void)r.read_f32(t.name, t.shape);
    }
  });
  return 0;
}
