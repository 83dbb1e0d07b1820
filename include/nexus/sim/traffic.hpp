#pragma once
// Arrival traces for virtual-time experiments: Poisson (exponential gaps) and bursty Poisson
// (a two-state Markov-modulated Poisson process that alternates between a high and a low rate,
// the paper's "bursty" workloads, §8). Deterministic for a seed: the generator is
// std::mt19937_64 and the gaps are computed with -ln(1-u)/λ from its raw 53-bit output.
//
// Thread-safety: pure functions.

#include <cstdint>
#include <vector>

#include "nexus/core/clock.hpp"

namespace nexus::sim {

/// Arrival times in [start, start + duration) of a Poisson process of `rate_rps` req/s.
std::vector<TimePoint> poisson_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                        TimePoint start = TimePoint{});

struct BurstyOptions {
  double burst_factor = 3.0;     ///< high-state rate = burst_factor × low-state rate
  Duration mean_high = std::chrono::milliseconds(200);  ///< mean time in the high state
  Duration mean_low = std::chrono::milliseconds(800);   ///< mean time in the low state
};

/// Bursty Poisson: the high/low rates are set so that the long-run mean rate is `rate_rps`.
std::vector<TimePoint> bursty_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                       BurstyOptions options = {}, TimePoint start = TimePoint{});

}  // namespace nexus::sim
