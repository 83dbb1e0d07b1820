#include "nexus/sim/traffic.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

#include "nexus/core/error.hpp"

namespace nexus::sim {

namespace {

double unit(std::mt19937_64& g) { return double(g() >> 11) * 0x1.0p-53; }  // [0, 1)

// Exponential variate with mean `mean_s` seconds, from the raw generator output (portable).
double exp_seconds(std::mt19937_64& g, double mean_s) { return -std::log(1.0 - unit(g)) * mean_s; }

Duration seconds(double s) { return Duration(static_cast<Duration::rep>(s * 1e9)); }

void check_rate(const char* what, double rate, bool allow_zero = false) {
  NEXUS_CHECK(std::isfinite(rate) && (allow_zero ? rate >= 0 : rate > 0),
              "{}: rate {} req/s (expected {} 0)", what, rate, allow_zero ? ">=" : ">");
}

// Poisson arrivals at `rate` in [t, end) appended to out (memoryless: restart at t).
void poisson_into(std::mt19937_64& g, double rate, TimePoint t, TimePoint end,
                  std::vector<TimePoint>& out) {
  if (rate <= 0) return;
  TimePoint a = t + seconds(exp_seconds(g, 1.0 / rate));
  while (a < end) {
    out.push_back(a);
    a += seconds(exp_seconds(g, 1.0 / rate));
  }
}

}  // namespace

std::vector<TimePoint> poisson_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                        TimePoint start) {
  check_rate("poisson_arrivals", rate_rps);
  std::mt19937_64 g(seed);
  std::vector<TimePoint> out;
  out.reserve(static_cast<std::size_t>(rate_rps * std::chrono::duration<double>(duration).count() * 1.05) + 16);
  poisson_into(g, rate_rps, start, start + duration, out);
  return out;
}

std::vector<TimePoint> uniform_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                        TimePoint start) {
  check_rate("uniform_arrivals", rate_rps);
  std::mt19937_64 g(seed);
  const double gap = 1.0 / rate_rps;
  std::vector<TimePoint> out;
  const TimePoint end = start + duration;
  const double phase = unit(g) * gap;
  for (std::int64_t k = 0;; ++k) {
    const TimePoint a = start + seconds(phase + double(k) * gap);
    if (a >= end) break;
    out.push_back(a);
  }
  return out;
}

std::vector<TimePoint> bursty_arrivals(double rate_rps, Duration duration, std::uint64_t seed,
                                       BurstyOptions o, TimePoint start) {
  check_rate("bursty_arrivals", rate_rps);
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
    poisson_into(g, in_high ? high : low, t, state_end, out);
    t = state_end;
    in_high = !in_high;
  }
  return out;
}

std::vector<TimePoint> mmpp_arrivals(double rate_rps, const std::vector<MmppState>& states,
                                     Duration duration, std::uint64_t seed, TimePoint start) {
  check_rate("mmpp_arrivals", rate_rps);
  NEXUS_CHECK(!states.empty(), "mmpp_arrivals: no state (expected >= 1)");
  double weighted = 0, total = 0;
  for (std::size_t i = 0; i < states.size(); ++i) {
    NEXUS_CHECK(std::isfinite(states[i].relative_rate) && states[i].relative_rate > 0,
                "mmpp_arrivals: state {} relative_rate {} (expected > 0)", i, states[i].relative_rate);
    NEXUS_CHECK(states[i].mean_dwell.count() > 0, "mmpp_arrivals: state {} mean_dwell must be > 0", i);
    const double d = std::chrono::duration<double>(states[i].mean_dwell).count();
    weighted += states[i].relative_rate * d;
    total += d;
  }
  const double scale = rate_rps * total / weighted;  // long-run mean = rate_rps
  std::mt19937_64 g(seed);
  std::vector<TimePoint> out;
  const TimePoint end = start + duration;
  TimePoint t = start;
  std::size_t s = 0;
  while (t < end) {
    const double dwell = std::chrono::duration<double>(states[s].mean_dwell).count();
    const TimePoint state_end = std::min(end, t + seconds(exp_seconds(g, dwell)));
    poisson_into(g, scale * states[s].relative_rate, t, state_end, out);
    t = state_end;
    if (states.size() > 1) {
      const auto k = static_cast<std::size_t>(unit(g) * double(states.size() - 1));
      s = (s + 1 + std::min(k, states.size() - 2)) % states.size();
    }
  }
  return out;
}

std::vector<TimePoint> trace_arrivals(const std::vector<RateSegment>& trace, ArrivalShape shape,
                                      std::uint64_t seed, TimePoint start) {
  std::mt19937_64 g(seed);
  std::vector<TimePoint> out;
  TimePoint t = start;
  double carry = unit(g);  // uniform: phase in units of the gap, carried across segments
  for (std::size_t i = 0; i < trace.size(); ++i) {
    const auto& seg = trace[i];
    check_rate("trace_arrivals segment", seg.rate_rps, true);
    NEXUS_CHECK(seg.length.count() >= 0, "trace_arrivals: segment {} has a negative length", i);
    const TimePoint end = t + seg.length;
    if (shape == ArrivalShape::kPoisson) {
      poisson_into(g, seg.rate_rps, t, end, out);
    } else if (seg.rate_rps > 0) {
      const double gap = 1.0 / seg.rate_rps;
      double x = carry * gap;  // seconds after t of the next arrival
      const double len = std::chrono::duration<double>(seg.length).count();
      while (x < len) {
        out.push_back(t + seconds(x));
        x += gap;
      }
      carry = (x - len) / gap;
    }
    t = end;
  }
  return out;
}

std::vector<RateSegment> diurnal_trace(double mean_rps, double amplitude, Duration period,
                                       int segments) {
  check_rate("diurnal_trace mean", mean_rps);
  NEXUS_CHECK(amplitude >= 0 && amplitude < 1, "diurnal_trace: amplitude {} (expected in [0, 1))",
              amplitude);
  NEXUS_CHECK(segments >= 1, "diurnal_trace: segments {} (expected >= 1)", segments);
  NEXUS_CHECK(period.count() > 0, "diurnal_trace: period must be > 0");
  std::vector<RateSegment> out;
  const Duration piece = period / segments;
  for (int i = 0; i < segments; ++i) {
    const double x = (double(i) + 0.5) / double(segments);
    out.push_back({piece, mean_rps * (1 + amplitude * std::sin(2 * std::numbers::pi * x - std::numbers::pi / 2))});
  }
  return out;
}

Duration trace_duration(const std::vector<RateSegment>& trace) {
  Duration d{0};
  for (const auto& s : trace) d += s.length;
  return d;
}

std::vector<TimePoint> merge_arrivals(std::vector<std::vector<TimePoint>> streams) {
  // Pairwise rounds: O(n log k) for k streams (merging each stream into the growing result was
  // O(n k)). The output is the same sorted sequence.
  if (streams.empty()) return {};
  while (streams.size() > 1) {
    std::vector<std::vector<TimePoint>> next;
    next.reserve((streams.size() + 1) / 2);
    for (std::size_t i = 0; i + 1 < streams.size(); i += 2) {
      std::vector<TimePoint> m(streams[i].size() + streams[i + 1].size());
      std::merge(streams[i].begin(), streams[i].end(), streams[i + 1].begin(), streams[i + 1].end(), m.begin());
      next.push_back(std::move(m));
    }
    if (streams.size() % 2) next.push_back(std::move(streams.back()));
    streams = std::move(next);
  }
  return std::move(streams.front());
}

}  // namespace nexus::sim
