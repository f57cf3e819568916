// Scratch buffers of the collectives (received chunks before they are reduced). Under SimGrid
// SMPI (built with -DHOKUSAI_SMPI by scripts/simulate-collectives.sh) they come from
// SMPI_SHARED_MALLOC: all simulated ranks share the same pages, so a thousand simulated ranks fit
// in this machine's memory; contents are meaningless there, only the timing is simulated.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

#if HOKUSAI_SMPI
#include <smpi/smpi.h>
#endif

namespace hokusai::comm {

template <class T>
class ScratchOf {
 public:
  explicit ScratchOf(int64_t n = 0) { resize(n); }
  ~ScratchOf() { release(); }
  ScratchOf(const ScratchOf&) = delete;
  ScratchOf& operator=(const ScratchOf&) = delete;
  ScratchOf(ScratchOf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  ScratchOf& operator=(ScratchOf&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  T* data() { return p_; }
  int64_t size() const { return n_; }
  // Grows to at least n elements; the contents are not kept.
  void resize(int64_t n) {
    if (n <= n_) return;
    release();
#if HOKUSAI_SMPI
    p_ = static_cast<T*>(SMPI_SHARED_MALLOC(size_t(n) * sizeof(T)));
#else
    p_ = static_cast<T*>(std::malloc(size_t(n) * sizeof(T)));
#endif
    if (!p_) throw std::bad_alloc();
    n_ = n;
  }

 private:
  void release() {
    if (!p_) return;
#if HOKUSAI_SMPI
    SMPI_SHARED_FREE(p_);
#else
    std::free(p_);
#endif
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  int64_t n_ = 0;
};
using Scratch = ScratchOf<float>;

}  // namespace hokusai::comm
