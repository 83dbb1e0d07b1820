#include "nexus/sim/traffic.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "nexus/core/error.hpp"

namespace nexus::sim {

namespace {

// Exponential variate with mean `mean_s` seconds, from the raw generator output (portable).
double exp_seconds(std::mt19937_64& g, double mean_s) {
  const double u = double(g() >> 11) * 0x1.0p-53;  // [0, 1)
  return -std::log(1.0 - u) * mean_s;
}

Duration seconds(double s) { return Duration(static_cast<Duration::rep>(s * 1e9)); }

}  // namespace

std::vector<TimePoint> poisson_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                        TimePoint start) {
  NEXUS_CHECK(rate_rps > 0, "poisson_arrivals: rate {} req/s (expected > 0)", rate_rps);
  std::mt19937_64 g(seed);
  std::vector<TimePoint> out;
  const TimePoint end = start + duration;
  TimePoint t = start + seconds(exp_seconds(g, 1.0 / rate_rps));
  while (t < end) {
    out.push_back(t);
    t += seconds(exp_seconds(g, 1.0 / rate_rps));
  }
  return out;
}

std::vector<TimePoint> bursty_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                       BurstyOptions o, TimePoint start) {
  NEXUS_CHECK(rate_rps > 0, "bursty_arrivals: rate {} req/s (expected > 0)", rate_rps);
  NEXUS_CHECK(o.burst_factor >= 1, "bursty_arrivals: burst_factor {} (expected >= 1)", o.burst_factor);
  const double ph = double(o.mean_high.count()) / double((o.mean_high + o.mean_low).count());
  // mean = ph·k·low + (1-ph)·low
  const double low = rate_rps / (ph * o.burst_factor + (1 - ph));
  const double high = low * o.burst_factor;
  std::mt19937_64 g(seed);
  std::vector<TimePoint> out;
  const TimePoint end = start + duration;
  TimePoint t = start;
  bool in_high = false;
  while (t < end) {
    const double mean_state = std::chrono::duration<double>(in_high ? o.mean_high : o.mean_low).count();
    const TimePoint state_end = std::min(end, t + seconds(exp_seconds(g, mean_state)));
    const double rate = in_high ? high : low;
    // Memoryless: restart the arrival clock at the state boundary.
    TimePoint a = t + seconds(exp_seconds(g, 1.0 / rate));
    while (a < state_end) {
      out.push_back(a);
      a += seconds(exp_seconds(g, 1.0 / rate));
    }
    t = state_end;
    in_high = !in_high;
  }
  return out;
}

}  // namespace nexus::sim
