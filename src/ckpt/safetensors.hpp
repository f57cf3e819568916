// The safetensors format (Hugging Face): what `hokusai export` writes and the parity fixture
// (tests/model/pytorch_reference.py) is stored in.
//
// Layout: u64 little-endian N, then N bytes of UTF-8 JSON (padded with spaces to a multiple of 8
// when we write), then the byte buffer. The JSON maps each tensor name to
// {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} (offsets into the buffer) and the
// optional "__metadata__" to a string -> string map. The buffer is exactly covered by the tensors,
// without holes or overlaps; data are little-endian and row-major.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hokusai/names.hpp"

namespace hokusai {
class MappedFile;
}

namespace hokusai::safetensors {

enum class DType { F64, F32, F16, BF16, I64, I32, U8 };
int64_t dtype_bytes(DType t);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // byte offsets into the buffer
  int64_t numel() const;
};

// A safetensors file opened for reading (memory-mapped). Every field is checked when opening;
// errors throw std::runtime_error naming the file and what is wrong.
class Reader {
 public:
  explicit Reader(const std::string& path);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // In buffer order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;
  // Tensor `name` converted to fp32 (from F64, F32, F16 or BF16); throws when it is missing, of
  // an integer type, or when `shape` is given and differs.
  std::vector<float> read_f32(std::string_view name, const std::vector<int64_t>& shape = {}) const;
  // Elements [begin, begin + count) of `t` (row-major, one of this file's tensors) as fp32.
  void read_f32(const TensorInfo& t, int64_t begin, int64_t count, float* out) const;
  std::vector<double> read_f64(std::string_view name, const std::vector<int64_t>& shape = {}) const;
  std::vector<int32_t> read_i32(std::string_view name, const std::vector<int64_t>& shape = {}) const;
  std::span<const unsigned char> bytes(const TensorInfo& t) const;

 private:
  const TensorInfo& checked(std::string_view name, const std::vector<int64_t>& shape) const;
  template <typename T>
  void convert(const TensorInfo& t, int64_t begin, int64_t count, T* out) const;
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  const unsigned char* buffer_ = nullptr;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
};

// "[2, 3]": a shape as the messages about tensors print it.
std::string shape_text(const std::vector<int64_t>& shape);

// One tensor to write: the bytes of `dtype` elements, row-major.
struct TensorData {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const unsigned char> data;
};

// Writes the tensors in the order given, atomically (a temporary file renamed over `path`);
// throws std::runtime_error naming the file (e.g. disk full) or a tensor whose bytes do not
// match its shape.
void write(const std::string& path, const std::vector<TensorData>& tensors,
           const std::map<std::string, std::string>& metadata = {});

}  // namespace hokusai::safetensors

template <>
struct hokusai::Names<hokusai::safetensors::DType> {
  using E = safetensors::DType;
  static constexpr std::array<std::pair<E, std::string_view>, 7> table = {
      {{E::F64, "F64"}, {E::F32, "F32"}, {E::F16, "F16"}, {E::BF16, "BF16"}, {E::I64, "I64"}, {E::I32, "I32"},
       {E::U8, "U8"}}};
};
