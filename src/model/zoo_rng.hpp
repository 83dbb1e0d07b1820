#pragma once
// The zoo's seeded generator (internal to src/model): SplitMix64, small, fast and identical on
// every machine (std distributions are not portable). Used by zoo_standard.cpp and
// zoo_variants.cpp so a seed means the same weights everywhere.
#include <cstdint>

namespace nexus::model::zoo::detail {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1).
  float symmetric() { return static_cast<float>(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }

 private:
  std::uint64_t state_;
};

}  // namespace nexus::model::zoo::detail
