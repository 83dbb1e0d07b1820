#pragma once
// Shared helpers of the scheduler tests: fixture profiles and seeded random workloads.

#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/session.hpp"

namespace nexus::test {

using namespace std::chrono_literals;

inline std::string fixture_dir(const std::string& sub) {
  return std::string(NEXUS_SOURCE_DIR) + "/tests/fixtures/profiles/" + sub;
}

inline ProfileMap lecture_profiles() { return ModelStore(fixture_dir("lecture")).profiles_for(); }

inline Session session(std::string id, std::string model, double slo_ms, double rate) {
  return {std::move(id), std::move(model),
          std::chrono::microseconds(static_cast<std::int64_t>(slo_ms * 1000)), rate};
}

/// A random profile: ℓ(b) = β + α·b^p (p in [0.8, 1.1] so not linear), a little noise, sparse
/// or dense batch lists; memory = weights + per-item activations.
inline BatchProfile random_profile(std::mt19937_64& rng, const std::string& name, int max_batch) {
  std::uniform_real_distribution<double> beta(1000, 20000), alpha(300, 8000), pw(0.8, 1.1),
      noise(0.97, 1.03), wmem(2e8, 2e9), amem(5e6, 1e8);
  const double b0 = beta(rng), a = alpha(rng), p = pw(rng), w = wmem(rng), am = amem(rng);
  std::vector<int> batches;
  const bool sparse = rng() % 2 == 0;
  for (int b = 1; b <= max_batch; b = sparse ? b * 2 : b + 1) batches.push_back(b);
  if (batches.back() != max_batch) batches.push_back(max_batch);
  std::vector<double> lat, sd;
  std::vector<std::size_t> mem;
  double prev = 0;
  for (int b : batches) {
    double l = (b0 + a * std::pow(double(b), p)) * noise(rng);
    l = std::max(l, prev + 1.0);  // measured latency grows with the batch
    prev = l;
    lat.push_back(l);
    sd.push_back(l * 0.02);
    mem.push_back(static_cast<std::size_t>(w + am * b));
  }
  return BatchProfile(name, "rand", batches, lat, sd, mem, 0.0, 0.0);
}

}  // namespace nexus::test
