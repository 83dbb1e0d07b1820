#include "nexus/dispatch/batch_policy.hpp"

#include <algorithm>
#include <cmath>

#include "nexus/core/error.hpp"

namespace nexus::dispatch {

std::string_view to_string(BatchPolicyKind kind) {
  switch (kind) {
    case BatchPolicyKind::kEarlyDrop: return "early_drop";
    case BatchPolicyKind::kLazyDrop: return "lazy_drop";
    case BatchPolicyKind::kAimd: return "aimd";
    case BatchPolicyKind::kMaxBatchTimeout: return "max_batch_timeout";
    case BatchPolicyKind::kTritonDynamic: return "triton_dynamic";
  }
  return "?";
}

BatchPolicyKind parse_batch_policy(std::string_view name) {
  for (auto k : {BatchPolicyKind::kEarlyDrop, BatchPolicyKind::kLazyDrop, BatchPolicyKind::kAimd,
                 BatchPolicyKind::kMaxBatchTimeout, BatchPolicyKind::kTritonDynamic})
    if (to_string(k) == name) return k;
  throw_error(
      "batch policy '{}': expected early_drop, lazy_drop, aimd, max_batch_timeout or triton_dynamic",
      name);
}

LatencyTable::LatencyTable(std::span<const Duration> latencies)
    : lat_(latencies.begin(), latencies.end()) {
  NEXUS_CHECK(!lat_.empty(), "LatencyTable: empty latency list (expected ℓ(1..B))");
  for (std::size_t i = 0; i < lat_.size(); ++i)
    NEXUS_CHECK(lat_[i].count() >= 0, "LatencyTable: ℓ({}) is negative", i + 1);
}

LatencyTable LatencyTable::linear(Duration alpha, Duration beta, int max_batch) {
  NEXUS_CHECK(max_batch >= 1, "LatencyTable::linear: max_batch {} (expected >= 1)", max_batch);
  std::vector<Duration> v;
  for (int b = 1; b <= max_batch; ++b) v.push_back(alpha * b + beta);
  return LatencyTable(v);
}

Duration LatencyTable::operator()(int b) const {
  if (lat_.empty()) return Duration::zero();
  b = std::clamp(b, 1, max_batch());
  return lat_[static_cast<std::size_t>(b - 1)];
}

int LatencyTable::largest_within(Duration budget, int limit) const {
  limit = std::min(limit, max_batch());
  for (int b = limit; b >= 1; --b)
    if ((*this)(b) <= budget) return b;
  return 0;
}

BatchDecision early_drop_decision(const QueueView& q, TimePoint now, const LatencyTable& lat,
                                  int target_batch, int grow_to) {
  const std::size_t n = q.size();
  const std::size_t batch =
      static_cast<std::size_t>(std::max(1, std::min(target_batch, lat.max_batch())));
  for (std::size_t i = 0; i < n; ++i) {
    // The window shrinks when fewer than `batch` requests remain from i on.
    const std::size_t b = std::min(batch, n - i);
    // Sorted by deadline: the window's tightest deadline is its first request's.
    if (q.deadline(i) >= now + lat(static_cast<int>(b))) {
      std::size_t g = b;
      const auto cap = static_cast<std::size_t>(std::min(grow_to, lat.max_batch()));
      while (g < cap && i + g < n && q.deadline(i) >= now + lat(static_cast<int>(g + 1))) ++g;
      return {i, g, std::nullopt};
    }
  }
  return {n, 0, std::nullopt};
}

BatchDecision lazy_drop_decision(const QueueView& q, TimePoint now, const LatencyTable& lat,
                                 int max_batch) {
  const std::size_t n = q.size();
  std::size_t i = 0;
  while (i < n && q.deadline(i) < now + lat(1)) ++i;
  if (i == n) return {n, 0, std::nullopt};
  const int limit = std::min<int>(std::min(max_batch, lat.max_batch()), static_cast<int>(n - i));
  const int b = std::max(1, lat.largest_within(q.deadline(i) - now, limit));
  return {i, static_cast<std::size_t>(b), std::nullopt};
}

namespace {

class EarlyDrop final : public BatchPolicy {
 public:
  explicit EarlyDrop(bool grow) : grow_(grow) {}
  BatchPolicyKind kind() const override { return BatchPolicyKind::kEarlyDrop; }
  BatchDecision decide(const QueueView& q, TimePoint now, const LatencyTable& lat,
                       int target) override {
    return early_drop_decision(q, now, lat, target, grow_ ? lat.max_batch() : 0);
  }

 private:
  bool grow_;
};

class LazyDrop final : public BatchPolicy {
 public:
  BatchPolicyKind kind() const override { return BatchPolicyKind::kLazyDrop; }
  BatchDecision decide(const QueueView& q, TimePoint now, const LatencyTable& lat,
                       int /*target*/) override {
    return lazy_drop_decision(q, now, lat, lat.max_batch());
  }
};

class Aimd final : public BatchPolicy {
 public:
  explicit Aimd(double backoff) : backoff_(backoff) {}
  BatchPolicyKind kind() const override { return BatchPolicyKind::kAimd; }
  BatchDecision decide(const QueueView& q, TimePoint now, const LatencyTable& lat,
                       int /*target*/) override {
    const std::size_t n = q.size();
    std::size_t i = 0;
    while (i < n && q.deadline(i) < now + lat(1)) ++i;  // Clipper drops what is already late
    const int cap = std::min(static_cast<int>(std::floor(size_)), lat.max_batch());
    return {i, std::min<std::size_t>(n - i, static_cast<std::size_t>(std::max(1, cap))),
            std::nullopt};
  }
  void on_batch_done(int /*size*/, bool met) override {
    if (met)
      size_ += 1.0;
    else
      size_ = std::max(1.0, size_ * backoff_);
  }

 private:
  double backoff_;
  double size_ = 1.0;
};

class MaxBatchTimeout final : public BatchPolicy {
 public:
  explicit MaxBatchTimeout(Duration timeout) : timeout_(timeout) {}
  BatchPolicyKind kind() const override { return BatchPolicyKind::kMaxBatchTimeout; }
  BatchDecision decide(const QueueView& q, TimePoint now, const LatencyTable& lat,
                       int target) override {
    const std::size_t n = q.size();
    if (n == 0) return {};
    const auto maxb = static_cast<std::size_t>(std::max(1, std::min(target, lat.max_batch())));
    if (n >= maxb) return {0, maxb, std::nullopt};
    const TimePoint due = q.arrival(0) + timeout_;
    if (now >= due) return {0, n, std::nullopt};
    return {0, 0, due};
  }

 private:
  Duration timeout_;
};

class TritonDynamic final : public BatchPolicy {
 public:
  TritonDynamic(std::vector<int> preferred, Duration delay)
      : preferred_(std::move(preferred)), delay_(delay) {
    for (int p : preferred_)
      NEXUS_CHECK(p >= 1, "triton_dynamic: preferred batch size {} (expected >= 1)", p);
    std::sort(preferred_.begin(), preferred_.end());
  }
  BatchPolicyKind kind() const override { return BatchPolicyKind::kTritonDynamic; }
  BatchDecision decide(const QueueView& q, TimePoint now, const LatencyTable& lat,
                       int target) override {
    const std::size_t n = q.size();
    std::size_t i = 0;
    while (i < n && q.deadline(i) < now) ++i;  // the queue timeout: past its deadline
    const std::size_t m = n - i;
    if (m == 0) return {i, 0, std::nullopt};
    const auto maxb = static_cast<std::size_t>(std::max(1, std::min(target, lat.max_batch())));
    if (m >= maxb) return {i, maxb, std::nullopt};
    for (auto it = preferred_.rbegin(); it != preferred_.rend(); ++it)
      if (static_cast<std::size_t>(*it) <= m && static_cast<std::size_t>(*it) <= maxb)
        return {i, static_cast<std::size_t>(*it), std::nullopt};
    const TimePoint due = q.arrival(i) + delay_;
    if (now >= due) return {i, m, std::nullopt};
    return {i, 0, due};
  }

 private:
  std::vector<int> preferred_;
  Duration delay_;
};

}  // namespace

std::unique_ptr<BatchPolicy> make_batch_policy(const BatchPolicyOptions& o) {
  switch (o.kind) {
    case BatchPolicyKind::kEarlyDrop: return std::make_unique<EarlyDrop>(o.grow_batch);
    case BatchPolicyKind::kLazyDrop: return std::make_unique<LazyDrop>();
    case BatchPolicyKind::kAimd: return std::make_unique<Aimd>(o.aimd_backoff);
    case BatchPolicyKind::kMaxBatchTimeout: return std::make_unique<MaxBatchTimeout>(o.batch_timeout);
    case BatchPolicyKind::kTritonDynamic:
      return std::make_unique<TritonDynamic>(o.preferred_batch_sizes, o.max_queue_delay);
  }
  throw_error("make_batch_policy: unknown kind");
}

}  // namespace nexus::dispatch
