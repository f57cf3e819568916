// safetensors: what we write reads back bit for bit (and is what the format says, byte for byte
// in the header), and malformed files are refused with the file and the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "ckpt/safetensors.hpp"
#include "scratch.hpp"

namespace hokusai {
namespace {

namespace st = safetensors;

template <class T>
std::span<const unsigned char> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const unsigned char*>(v.data()), v.size() * sizeof(T)};
}

// A file of the given header text and buffer bytes.
std::string raw_file(const std::string& name, const std::string& header, size_t buffer_bytes) {
  const std::string path = (testing::scratch_dir("safetensors", name) / "f.safetensors").string();
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << std::string(buffer_bytes, '\0');
  return path;
}

std::string error_of(const std::string& path) {
  try {
    st::Reader r(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTripKeepsValuesShapesAndMetadata) {
  const std::string path = (testing::scratch_dir("safetensors", "round") / "m.safetensors").string();
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  const std::vector<double> b = {3.141592653589793};
  const std::vector<int32_t> c = {7, -1, 65536};
  const std::vector<uint16_t> h = {0x3c00, 0xc000, 0x0001, 0x7c00};  // F16: 1, -2, 2^-24, inf
  const std::vector<uint16_t> bf = {0x3f80, 0xc040};                  // BF16: 1, -3
  st::write(path,
            {{"a", st::DType::F32, {2, 3}, bytes_of(a)},
             {"b", st::DType::F64, {1}, bytes_of(b)},
             {"c", st::DType::I32, {3}, bytes_of(c)},
             {"h", st::DType::F16, {4}, bytes_of(h)},
             {"bf", st::DType::BF16, {2}, bytes_of(bf)}},
            {{"format", "pt"}});
  const st::Reader r(path);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.read_f32("a", {2, 3}), a);
  EXPECT_EQ(r.read_f64("b")[0], b[0]);
  EXPECT_EQ(r.read_i32("c"), c);
  EXPECT_EQ(r.read_f32("h"), (std::vector<float>{1.0f, -2.0f, 5.9604645e-08f, INFINITY}));
  EXPECT_EQ(r.read_f32("bf"), (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(error_of(path), "");
  // The header is padded with spaces to 8 bytes, and the buffer follows it at once.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_THROW(r.read_f32("a", {3, 2}), std::runtime_error);  // wrong shape
  EXPECT_THROW(r.read_i32("a"), std::runtime_error);          // wrong type
  EXPECT_THROW(r.read_f32("nope"), std::runtime_error);
}

TEST(Safetensors, MalformedFilesAreRefusedNamingTheProblem) {
  const auto expect = [](const std::string& name, const std::string& header, size_t buffer, const std::string& what) {
    const std::string err = error_of(raw_file(name, header, buffer));
    EXPECT_NE(err.find(what), std::string::npos) << name << ": " << err;
    EXPECT_NE(err.find("f.safetensors"), std::string::npos) << name << ": " << err;
  };
  expect("not_json", "{oops", 0, "not JSON");
  expect("bad_dtype", R"({"x":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", 1, "dtype");
  expect("size_mismatch", R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4, "8 expected");
  expect("outside", R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 2, "outside");
  expect("hole", R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "holes");
  expect("overlap",
         R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
         8, "holes and overlaps");
  expect("uncovered", R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8, "cover 4 of the buffer's 8");
  // A header length beyond the file.
  const std::string path = (testing::scratch_dir("safetensors", "long") / "f.safetensors").string();
  std::ofstream(path, std::ios::binary).write("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10);
  EXPECT_NE(error_of(path).find("header length"), std::string::npos) << error_of(path);
}

}  // namespace
}  // namespace hokusai
