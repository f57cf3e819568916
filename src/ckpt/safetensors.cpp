#include "ckpt/safetensors.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "data/mapped_file.hpp"

namespace hokusai::safetensors {

namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // the format's own limit: 100 MB of JSON

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    int e = -1;
    uint32_t m = mant;
    do {
      ++e;
      m <<= 1;
    } while ((m & 0x400u) == 0);
    bits = sign | (uint32_t(112 - e) << 23) | ((m & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

int64_t dtype_bytes(DType t) {
  switch (t) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::U8: return 1;
  }
  return 1;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Reader::Reader(const std::string& path) : path_(path), file_(std::make_unique<MappedFile>(path)) {
  const auto fail = [&](const std::string& why) { throw std::runtime_error(path_ + ": " + why); };
  const uint64_t size = file_->size();
  if (size < 8) fail("too short for a safetensors file (" + std::to_string(size) + " bytes)");
  const uint64_t n = load<uint64_t>(file_->data());
  if (n > kMaxHeader || n > size - 8)
    fail("header length " + std::to_string(n) + " exceeds the file (" + std::to_string(size) + " bytes) or 100 MB");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file_->data() + 8, file_->data() + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) fail("header is not a JSON object");
  buffer_ = file_->data() + 8 + n;
  const int64_t buffer_bytes = int64_t(size - 8 - n);
  for (const auto& item : header.items()) {
    const std::string& name = item.key();  // (not a structured binding: lambdas below capture it)
    const auto& v = item.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) fail("__metadata__." + k + " is not a string");
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    const auto where = [&](const std::string& why) { fail("tensor '" + name + "': " + why); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      where("needs dtype, shape and data_offsets");
    TensorInfo t;
    t.name = name;
    const auto& dt = v["dtype"];
    const std::optional<DType> d = dt.is_string() ? value_named<DType>(dt.get<std::string>()) : std::nullopt;
    if (!d) where("dtype " + dt.dump() + " is not one of: " + name_list<DType>());
    t.dtype = *d;
    if (!v["shape"].is_array()) where("shape is not a list");
    for (const auto& e : v["shape"]) {
      if (!e.is_number_integer() || e.get<int64_t>() < 0) where("shape " + v["shape"].dump() + " is not of sizes >= 0");
      t.shape.push_back(e.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      where("data_offsets " + off.dump() + " is not [begin, end]");
    t.begin = off[0].get<int64_t>();
    t.end = off[1].get<int64_t>();
    if (t.begin > t.end || t.end > buffer_bytes)
      where("data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] outside the " +
            std::to_string(buffer_bytes) + "-byte buffer");
    int64_t numel = 1;
    for (int64_t s : t.shape) {
      if (s != 0 && numel > (int64_t(1) << 50) / s) where("shape " + shape_text(t.shape) + " is too large");
      numel *= s;
    }
    if (t.end - t.begin != numel * dtype_bytes(t.dtype))
      where(std::to_string(t.end - t.begin) + " bytes for shape " + shape_text(t.shape) + " of " +
            std::string(name_of(t.dtype)) + " (" + std::to_string(numel * dtype_bytes(t.dtype)) + " expected)");
    tensors_.push_back(std::move(t));
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  int64_t at = 0;  // the buffer is covered exactly: no holes, no overlaps
  for (const TensorInfo& t : tensors_) {
    if (t.begin != at)
      fail("tensor '" + t.name + "' starts at byte " + std::to_string(t.begin) + " of the buffer, expected " +
           std::to_string(at) + " (holes and overlaps are invalid)");
    at = t.end;
  }
  if (at != buffer_bytes)
    fail("the tensors cover " + std::to_string(at) + " of the buffer's " + std::to_string(buffer_bytes) + " bytes");
}

Reader::~Reader() = default;

const TensorInfo* Reader::find(std::string_view name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::span<const unsigned char> Reader::bytes(const TensorInfo& t) const {
  return {buffer_ + t.begin, size_t(t.end - t.begin)};
}

const TensorInfo& Reader::checked(std::string_view name, const std::vector<int64_t>& shape) const {
  const TensorInfo* t = find(name);
  if (!t) throw std::runtime_error(path_ + ": no tensor '" + std::string(name) + "'");
  if (!shape.empty() && t->shape != shape)
    throw std::runtime_error(path_ + ": tensor '" + t->name + "' has shape " + shape_text(t->shape) + ", expected " +
                             shape_text(shape));
  return *t;
}

template <typename T>
void Reader::convert(const TensorInfo& t, int64_t begin, int64_t count, T* out) const {
  if (begin < 0 || count < 0 || begin + count > t.numel())
    throw std::logic_error(path_ + ": elements [" + std::to_string(begin) + ", +" + std::to_string(count) +
                           ") of tensor '" + t.name + "' of " + std::to_string(t.numel()));
  const int64_t size = dtype_bytes(t.dtype);
  const unsigned char* p = buffer_ + t.begin + begin * size;
  for (int64_t i = 0; i < count; ++i) switch (t.dtype) {
      case DType::F64: out[i] = T(load<double>(p + 8 * i)); break;
      case DType::F32: out[i] = T(load<float>(p + 4 * i)); break;
      case DType::F16: out[i] = T(half_to_float(load<uint16_t>(p + 2 * i))); break;
      case DType::BF16: {
        const uint32_t bits = uint32_t(load<uint16_t>(p + 2 * i)) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        out[i] = T(f);
        break;
      }
      default:
        throw std::runtime_error(path_ + ": tensor '" + t.name + "' is " + std::string(name_of(t.dtype)) +
                                 ", expected a floating-point type");
    }
}

std::vector<double> Reader::read_f64(std::string_view name, const std::vector<int64_t>& shape) const {
  const TensorInfo& t = checked(name, shape);
  std::vector<double> out(size_t(t.numel()));
  convert(t, 0, t.numel(), out.data());
  return out;
}

std::vector<float> Reader::read_f32(std::string_view name, const std::vector<int64_t>& shape) const {
  const TensorInfo& t = checked(name, shape);
  std::vector<float> out(size_t(t.numel()));
  convert(t, 0, t.numel(), out.data());
  return out;
}

void Reader::read_f32(const TensorInfo& t, int64_t begin, int64_t count, float* out) const {
  convert(t, begin, count, out);
}

std::vector<int32_t> Reader::read_i32(std::string_view name, const std::vector<int64_t>& shape) const {
  const TensorInfo& t = checked(name, shape);
  if (t.dtype != DType::I32)
    throw std::runtime_error(path_ + ": tensor '" + t.name + "' is " + std::string(name_of(t.dtype)) + ", expected I32");
  std::vector<int32_t> out(size_t(t.numel()));
  std::memcpy(out.data(), buffer_ + t.begin, out.size() * 4);
  return out;
}

void write(const std::string& path, const std::vector<TensorData>& tensors,
           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  int64_t at = 0;
  for (const TensorData& t : tensors) {
    int64_t numel = 1;
    for (int64_t s : t.shape) numel *= s;
    if (int64_t(t.data.size()) != numel * dtype_bytes(t.dtype))
      throw std::runtime_error(path + ": tensor '" + t.name + "' has " + std::to_string(t.data.size()) +
                               " bytes for shape " + shape_text(t.shape) + " of " + std::string(name_of(t.dtype)));
    header[t.name] = {{"dtype", std::string(name_of(t.dtype))}, {"shape", t.shape}, {"data_offsets", {at, at + int64_t(t.data.size())}}};
    at += int64_t(t.data.size());
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    const uint64_t n = json.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(json.data(), std::streamsize(json.size()));
    for (const TensorData& t : tensors) out.write(reinterpret_cast<const char*>(t.data.data()), std::streamsize(t.data.size()));
    out.flush();
    if (!out) {
      out.close();
      std::filesystem::remove(tmp);
      throw std::runtime_error("safetensors: write to '" + tmp + "' failed (disk full?)");
    }
  }
  std::filesystem::rename(tmp, path);
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace hokusai::safetensors
