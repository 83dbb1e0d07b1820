#pragma once
// Arrival traces for virtual-time experiments (paper §8 workloads; DESIGN.md "Simulation"):
//   poisson_arrivals   exponential gaps at a constant rate;
//   uniform_arrivals   evenly spaced arrivals (a camera at a fixed frame rate), random phase;
//   bursty_arrivals    a two-state Markov-modulated Poisson process (high/low) whose long-run
//                      mean is the given rate (the paper's "bursty" workloads);
//   mmpp_arrivals      the n-state MMPP: each state has a rate and a mean dwell time, the next
//                      state is drawn uniformly among the others;
//   trace_arrivals     a piecewise-constant rate trace (RateSegment list), Poisson or uniform
//                      within each segment;
//   diurnal_trace      a sinusoidal day compressed into `period`, as RateSegments.
// Many streams per query: merge_arrivals() merges the sorted traces of several streams.
//
// Deterministic for a seed: the generator is std::mt19937_64 and the gaps are computed with
// -ln(1-u)/λ from its raw 53-bit output (no std::distribution, whose output varies by library).
// Times are TimePoints of a VirtualClock (ns). Rates are req/s.
//
// Thread-safety: pure functions.

#include <cstdint>
#include <vector>

#include "nexus/core/clock.hpp"

namespace nexus::sim {

/// Arrival times in [start, start + duration) of a Poisson process of `rate_rps` req/s.
/// Throws nexus::Error for rate_rps <= 0 or not finite.
std::vector<TimePoint> poisson_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                        TimePoint start = TimePoint{});

/// Evenly spaced arrivals, 1/rate apart, in [start, start + duration); the first one falls at a
/// seeded random phase in [0, 1/rate) so that many uniform streams do not arrive in lockstep.
std::vector<TimePoint> uniform_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                        TimePoint start = TimePoint{});

struct BurstyOptions {
  double burst_factor = 3.0;     ///< high-state rate = burst_factor × low-state rate
  Duration mean_high = std::chrono::milliseconds(200);  ///< mean time in the high state
  Duration mean_low = std::chrono::milliseconds(800);   ///< mean time in the low state
};

/// Bursty Poisson: the high/low rates are set so that the long-run mean rate is `rate_rps`.
std::vector<TimePoint> bursty_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                       BurstyOptions options = {}, TimePoint start = TimePoint{});

/// One state of an n-state MMPP: a relative rate and a mean (exponential) dwell time.
struct MmppState {
  double relative_rate = 1.0;   ///< > 0; rates are scaled so the long-run mean is the given rate
  Duration mean_dwell = std::chrono::milliseconds(500);
};

/// n-state Markov-modulated Poisson process with long-run mean `rate_rps` (time-weighted over
/// the states' mean dwell times). Starts in state 0; the next state is uniform over the others.
/// Throws nexus::Error for no state, a non-positive relative rate or dwell time.
std::vector<TimePoint> mmpp_arrivals(double rate_rps, const std::vector<MmppState>& states,
                                     Duration duration, std::uint64_t seed,
                                     TimePoint start = TimePoint{});

/// One piece of a rate trace: `rate_rps` for `length`.
struct RateSegment {
  Duration length{};
  double rate_rps = 0.0;   ///< >= 0 (0: silence)
};

enum class ArrivalShape { kPoisson, kUniform };

/// Arrivals of a piecewise-constant rate trace starting at `start`, each segment Poisson (or
/// uniform) at its rate. Throws nexus::Error for a negative/non-finite rate or length.
std::vector<TimePoint> trace_arrivals(const std::vector<RateSegment>& trace, ArrivalShape shape,
                                      std::uint64_t seed, TimePoint start = TimePoint{});

/// A diurnal day compressed into `period`: rate(t) = mean · (1 + amplitude · sin(2π t/period −
/// π/2)) (trough at t = 0, peak at period/2), as `segments` equal constant pieces evaluated at
/// their midpoints. amplitude in [0, 1). Throws nexus::Error otherwise.
std::vector<RateSegment> diurnal_trace(double mean_rps, double amplitude, Duration period,
                                       int segments);

/// Total duration of a trace.
Duration trace_duration(const std::vector<RateSegment>& trace);

/// Merges sorted arrival lists (one per stream) into one sorted list.
std::vector<TimePoint> merge_arrivals(std::vector<std::vector<TimePoint>> streams);

}  // namespace nexus::sim
