// Small deterministic hashes shared by initialisation, sampling and checkpoints.
#pragma once

#include <cstdint>
#include <string_view>

namespace hokusai {

// SplitMix64 finaliser: a bijective mix of 64 bits; counter-based randomness (element i of a
// stream is mix(key ^ i)) gives the same values at any layout or thread count.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// FNV-1a over bytes, continuing from h.
inline uint64_t fnv1a(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ULL) {
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

}  // namespace hokusai
