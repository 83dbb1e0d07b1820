#pragma once
// BatchPolicy: decides, for one session queue ordered by deadline, which requests to drop and
// how many to run as the next batch (Nexus §4.3, §6.3; paper notes §4).
//
//   kEarlyDrop  Nexus: a window of the planned batch size B slides over the queue; the first
//               window whose earliest deadline d_i satisfies now + ℓ(B') <= d_i, with
//               B' = min(B, requests from i on), is run; every request ahead of it is dropped.
//               With grow_batch (the authors' later "free lunch" step, notes §4), the batch then
//               grows past B, up to max_batch, while the window's earliest deadline still holds.
//   kLazyDrop   the conventional baseline: drop only requests that cannot finish even alone
//               (deadline < now + ℓ(1)), then run the largest batch that still meets the
//               earliest remaining deadline.
//   kAimd       Clipper-style adaptive batching: batch size grows by 1 while batches meet the
//               SLO and is cut by 10% when one does not; late requests are dropped lazily.
//   kMaxBatchTimeout  TF-Serving style: run max_batch when queued, else wait until the oldest
//               request has waited `batch_timeout`, then run what is there; never drops.
//   kTritonDynamic  Triton-style dynamic batcher (NVIDIA Triton model configuration,
//               "dynamic_batching": preferred_batch_size, max_queue_delay_microseconds, and a
//               queue policy with a timeout): drop requests whose deadline has passed (the queue
//               timeout, its only drop); run max batch (the plan's size) when queued, else the
//               largest preferred size that is queued, else wait until the oldest request has
//               waited max_queue_delay and run what is there.
//
// Thread-safety: a BatchPolicy object belongs to one (session, executor) pair and is used by
// that executor's thread only.

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "nexus/core/clock.hpp"

namespace nexus::dispatch {

enum class BatchPolicyKind { kEarlyDrop, kLazyDrop, kAimd, kMaxBatchTimeout, kTritonDynamic };

std::string_view to_string(BatchPolicyKind kind);
/// Parses "early_drop", "lazy_drop", "aimd", "max_batch_timeout", "triton_dynamic"; throws
/// nexus::Error otherwise.
BatchPolicyKind parse_batch_policy(std::string_view name);

/// Read-only view of a session queue in deadline order (index 0 = earliest deadline).
class QueueView {
 public:
  virtual ~QueueView() = default;
  virtual std::size_t size() const = 0;
  virtual TimePoint deadline(std::size_t i) const = 0;
  /// When request i arrived at this session (for timeout-based policies).
  virtual TimePoint arrival(std::size_t i) const = 0;
};

/// A QueueView over plain vectors (tests, simulators).
class VectorQueueView final : public QueueView {
 public:
  VectorQueueView(std::span<const TimePoint> deadlines, std::span<const TimePoint> arrivals = {})
      : deadlines_(deadlines), arrivals_(arrivals) {}
  std::size_t size() const override { return deadlines_.size(); }
  TimePoint deadline(std::size_t i) const override { return deadlines_[i]; }
  TimePoint arrival(std::size_t i) const override {
    return arrivals_.empty() ? TimePoint{} : arrivals_[i];
  }

 private:
  std::span<const TimePoint> deadlines_;
  std::span<const TimePoint> arrivals_;
};

/// Batch latency ℓ(b) for b = 1..max_batch (µs granularity is enough; ns stored).
class LatencyTable {
 public:
  LatencyTable() = default;
  /// latencies[b-1] = ℓ(b). Throws nexus::Error if empty or not positive.
  explicit LatencyTable(std::span<const Duration> latencies);
  /// ℓ(b) = alpha·b + beta for b = 1..max_batch (the linear model of §3).
  static LatencyTable linear(Duration alpha, Duration beta, int max_batch);

  int max_batch() const { return static_cast<int>(lat_.size()); }
  /// ℓ(b); b is clamped to [1, max_batch].
  Duration operator()(int b) const;
  /// The largest b <= limit with ℓ(b) <= budget, or 0 if none.
  int largest_within(Duration budget, int limit) const;

 private:
  std::vector<Duration> lat_;
};

/// The policy's answer: drop the first `drop` requests, then run the next `take` as one batch.
/// take == 0 means run nothing now; `wait_until` (if set) says when to ask again even without
/// new arrivals (the timeout policy).
struct BatchDecision {
  std::size_t drop = 0;
  std::size_t take = 0;
  std::optional<TimePoint> wait_until;
};

struct BatchPolicyOptions {
  BatchPolicyKind kind = BatchPolicyKind::kEarlyDrop;
  /// kMaxBatchTimeout: how long the oldest request may wait for a fuller batch.
  Duration batch_timeout = std::chrono::milliseconds(5);
  /// kEarlyDrop, batch growth (an option, not the paper's schedule): grow the batch past the
  /// plan's size, up to max_batch, while the earliest deadline allows. On by default (measured:
  /// docs/architecture.md "Defaults"), although a batch larger than planned lengthens the duty
  /// cycle of every session sharing the device.
  bool grow_batch = true;
  /// kAimd: multiplicative decrease factor on an SLO miss (Clipper uses 0.9).
  double aimd_backoff = 0.9;
  /// kTritonDynamic: batch sizes run as soon as that many requests are queued (sorted or not;
  /// sizes above the plan's batch are ignored); empty = only the plan's batch.
  std::vector<int> preferred_batch_sizes{};
  /// kTritonDynamic: how long the oldest request may wait for a preferred batch.
  Duration max_queue_delay = std::chrono::microseconds(100);
};

class BatchPolicy {
 public:
  virtual ~BatchPolicy() = default;
  virtual BatchPolicyKind kind() const = 0;
  /// Decides at time `now` for `queue`; `target_batch` is the plan's batch size for this session
  /// on this executor; ℓ comes from `latency`.
  virtual BatchDecision decide(const QueueView& queue, TimePoint now, const LatencyTable& latency,
                               int target_batch) = 0;
  /// Feedback after a batch ran: its size and whether every request met its deadline.
  virtual void on_batch_done(int /*size*/, bool /*all_met_deadline*/) {}
};

std::unique_ptr<BatchPolicy> make_batch_policy(const BatchPolicyOptions& options);

/// The sliding-window early-drop decision alone (exposed for tests and the simulator).
/// `grow_to` > target_batch enables the free-lunch growth up to that size.
BatchDecision early_drop_decision(const QueueView& queue, TimePoint now,
                                  const LatencyTable& latency, int target_batch, int grow_to = 0);
/// The lazy-drop decision alone.
BatchDecision lazy_drop_decision(const QueueView& queue, TimePoint now,
                                 const LatencyTable& latency, int max_batch);

}  // namespace nexus::dispatch
