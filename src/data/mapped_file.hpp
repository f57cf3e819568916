// Internal: read-only memory maps, and cache files built once and shared by every process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

namespace hokusai {

class MappedFile {
 public:
  // Maps the whole file read-only; throws DataError naming the file.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  template <typename T>
  std::span<const T> array(size_t byte_offset, size_t count) const {
    return {reinterpret_cast<const T*>(data_ + byte_offset), count};
  }

 private:
  std::string path_;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

// Ensures `path` exists: if not, takes an exclusive lock on path + ".lock", checks again (another
// process may have built it meanwhile), and runs `build(tmp_path)`, then renames tmp_path to
// path. Returns true when this process built it. Concurrent ranks on one node build once;
// readers never see a partial file.
bool build_once(const std::string& path, const std::function<void(const std::string&)>& build);

}  // namespace hokusai
