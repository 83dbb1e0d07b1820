#pragma once
// Metrics of the data plane: per session and per query arrivals, completions, good rate, drops
// by reason, latency histograms (p50/p90/p99/max), achieved batch sizes; per device busy time
// and occupancy. Counters are relaxed atomics updated by the executor threads; snapshots are
// plain values. nexus_observe exports them in the Prometheus exposition format (/metrics).
//
// Thread-safety: LatencyHistogram::record and the counters may be updated from any thread;
// snapshot() may race with updates (each counter is read atomically, the set is not a
// consistent cut).

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nexus/core/clock.hpp"

namespace nexus::runtime {

/// Upper bounds, in seconds, of the latency buckets a LatencySummary carries (the Prometheus
/// histogram buckets of nexus_observe).
inline constexpr std::array<double, 13> kLatencyBucketsSeconds{
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

/// Percentiles of a latency histogram, in microseconds, plus its cumulative bucket counts.
struct LatencySummary {
  std::uint64_t count = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0, mean_us = 0;
  double sum_seconds = 0;
  /// cumulative[i] = latencies <= kLatencyBucketsSeconds[i] (to the histogram's 4.4% bucket
  /// resolution: a log bucket counts below a bound when its upper edge is).
  std::array<std::uint64_t, kLatencyBucketsSeconds.size()> cumulative{};
};

/// A log-bucketed latency histogram: 16 buckets per power of two of microseconds, so bucket k
/// holds [2^((k-1)/16), 2^(k/16)) µs and a percentile is accurate to 2^(1/16) - 1 = 4.4% (it
/// reports the bucket's upper bound, capped at the maximum). The bucket index comes from the
/// float's exponent and top mantissa bits: no log() on the hot path.
class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 16;
  static constexpr int kBuckets = 32 * kSubBuckets;   // up to 2^32 µs
  static constexpr double kBase = 1.0442737824274138;  // 2^(1/16)

  static int bucket_of(Duration d) {
    const double us = double(d.count()) * 1e-3;
    if (!(us >= 1.0)) return 0;
    int exp = 0;
    const double m = std::frexp(us, &exp);  // us = m·2^exp, m in [0.5, 1)
    // position within the octave [2^(exp-1), 2^exp): sub = floor((2m - 1)·16)
    const int sub = static_cast<int>((2.0 * m - 1.0) * kSubBuckets);
    const int k = 1 + (exp - 1) * kSubBuckets + sub;
    return std::min(k, kBuckets - 1);
  }
  static double upper_us(int k) { return k == 0 ? 1.0 : std::exp2(double(k) / kSubBuckets); }

  void record(Duration d) {
    buckets_[static_cast<std::size_t>(bucket_of(d))].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    const auto ns = static_cast<std::uint64_t>(std::max<Duration::rep>(0, d.count()));
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
    auto m = max_ns_.load(std::memory_order_relaxed);
    while (ns > m && !max_ns_.compare_exchange_weak(m, ns, std::memory_order_relaxed)) {
    }
  }

  LatencySummary summary() const {
    LatencySummary s;
    std::array<std::uint64_t, kBuckets> b{};
    for (int k = 0; k < kBuckets; ++k)
      b[static_cast<std::size_t>(k)] = buckets_[static_cast<std::size_t>(k)].load(std::memory_order_relaxed);
    for (auto x : b) s.count += x;
    if (s.count == 0) return s;
    for (int k = 0; k < kBuckets; ++k)
      for (std::size_t i = 0; i < kLatencyBucketsSeconds.size(); ++i)
        if (upper_us(k) <= kLatencyBucketsSeconds[i] * 1e6 * (1 + 1e-9))
          s.cumulative[i] += b[static_cast<std::size_t>(k)];
    s.sum_seconds = double(sum_ns_.load(std::memory_order_relaxed)) * 1e-9;
    s.max_us = double(max_ns_.load(std::memory_order_relaxed)) / 1000.0;
    s.mean_us = double(sum_ns_.load(std::memory_order_relaxed)) / 1000.0 / double(s.count);
    auto pct = [&](double q) {
      const auto rank = static_cast<std::uint64_t>(std::ceil(q * double(s.count)));
      std::uint64_t acc = 0;
      for (int k = 0; k < kBuckets; ++k) {
        acc += b[static_cast<std::size_t>(k)];
        if (acc >= std::max<std::uint64_t>(rank, 1)) return std::min(s.max_us, upper_us(k));
      }
      return s.max_us;
    };
    s.p50_us = pct(0.50);
    s.p90_us = pct(0.90);
    s.p99_us = pct(0.99);
    return s;
  }

  /// Cumulative counts at the given upper bounds (µs), for Prometheus buckets.
  std::vector<std::uint64_t> cumulative(const std::vector<double>& bounds_us) const {
    std::vector<std::uint64_t> out(bounds_us.size(), 0);
    for (int k = 0; k < kBuckets; ++k) {
      const double upper = upper_us(k);
      const auto n = buckets_[static_cast<std::size_t>(k)].load(std::memory_order_relaxed);
      for (std::size_t i = 0; i < bounds_us.size(); ++i)
        if (upper <= bounds_us[i] * (1 + 1e-9)) out[i] += n;
    }
    return out;
  }
  double sum_seconds() const { return double(sum_ns_.load(std::memory_order_relaxed)) * 1e-9; }
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets> buckets_{};
  std::atomic<std::uint64_t> count_{0}, sum_ns_{0}, max_ns_{0};
};

/// A session (one query stage) as seen by the executors.
struct SessionMetricsSnapshot {
  std::uint64_t arrivals = 0;        ///< stage items routed to the session
  std::uint64_t completions = 0;     ///< items that ran and were post-processed
  std::uint64_t good = 0;            ///< completions within the item's stage deadline
  std::map<std::string, std::uint64_t> drops;  ///< by Reason name (deadline, queue_full, ...)
  std::uint64_t batches = 0;
  double mean_batch = 0.0;           ///< achieved batch size
  std::map<int, std::uint64_t> batch_sizes;   ///< batch size → count
  LatencySummary latency;            ///< enqueue → post-processed, per item
  double rate_rps = 0.0;             ///< EWMA arrival rate from the epoch loop
  /// Admission: "served" (in full), "partial" (admitted at planned_rate_rps < its rate) or
  /// "rejected" (no route), with the planner's reason for the last two.
  std::string admission = "served";
  std::string admission_reason;
  double planned_rate_rps = 0.0;     ///< rate the current plan serves for it, req/s
};

/// A query, end to end.
struct QueryMetricsSnapshot {
  std::uint64_t arrivals = 0, completions = 0, good = 0, dropped = 0, rejected = 0, failed = 0;
  std::map<std::string, std::uint64_t> reasons;  ///< non-completed results by Reason name
  LatencySummary latency;            ///< submit → result, completed requests
  double good_rate() const { return arrivals ? double(good) / double(arrivals) : 0.0; }
};

/// A prefix group (paper §6.3, docs/prefix_batching.md): models that share a prefix, planned as
/// one session and run as merged batches (the prefix once, each suffix on its slice).
struct PrefixGroupMetricsSnapshot {
  std::string key;                   ///< the declared key, or "prefix-<hash>" for hashed graphs
  bool declared = false;             ///< from ModelSpec::declared_prefix (no graph)
  std::vector<std::string> members;  ///< member model names
  std::vector<std::string> sessions; ///< sessions the current plan runs in the group
  std::size_t shared_weight_bytes = 0;  ///< prefix weights, held once (0 for declared groups)
  /// Weight bytes of one merged runner (prefix once + suffixes) and of the members loaded one
  /// by one (prefix per member + suffixes); 0 where nothing runs merged weights (sim devices).
  std::size_t weights_bytes = 0, unshared_weights_bytes = 0;
  /// Σ over devices of the runner's Backend::device_bytes (the prefix once + every suffix): what
  /// the process holds for the members, whose own backends are released there (0 on sim devices).
  std::size_t device_bytes = 0;
  std::uint64_t batches = 0;         ///< merged batches run (all devices)
  std::uint64_t items = 0;           ///< items in them
  double mean_batch = 0.0;           ///< items / batches
  int max_batch_seen = 0;            ///< the largest merged batch run
  std::map<int, std::uint64_t> batch_sizes;  ///< merged batch size → count
};

struct DeviceMetricsSnapshot {
  int device = 0;
  std::string name;
  std::uint64_t batches = 0;
  std::uint64_t items = 0;
  double busy_seconds = 0.0;         ///< time inside Backend::run (virtual: Σ ℓ(b))
  double occupancy = 0.0;            ///< busy / elapsed since the engine started
};

}  // namespace nexus::runtime
