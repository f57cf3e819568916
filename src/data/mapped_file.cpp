#include "mapped_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "hokusai/data.hpp"

namespace hokusai {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw DataError("cannot stat '" + path + "': " + std::strerror(errno));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw DataError("cannot map '" + path + "': " + std::strerror(errno));
    }
    data_ = static_cast<const unsigned char*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
}

bool build_once(const std::string& path, const std::function<void(const std::string&)>& build) {
  namespace fs = std::filesystem;
  if (fs::exists(path)) return false;
  fs::create_directories(fs::path(path).parent_path());
  const std::string lock_path = path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw DataError("cannot create '" + lock_path + "': " + std::strerror(errno) +
                    " (set data.cache_dir to a writable directory)");
  if (::flock(fd, LOCK_EX) != 0) {
    ::close(fd);
    throw DataError("cannot lock '" + lock_path + "': " + std::strerror(errno));
  }
  bool built = false;
  try {
    if (!fs::exists(path)) {
      const std::string tmp = path + ".tmp." + std::to_string(::getpid());
      try {
        build(tmp);
      } catch (...) {
        fs::remove(tmp);
        throw;
      }
      fs::rename(tmp, path);
      built = true;
    }
  } catch (...) {
    ::flock(fd, LOCK_UN);
    ::close(fd);
    throw;
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
  return built;
}

}  // namespace hokusai
