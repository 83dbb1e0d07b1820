#pragma once
// Clock: the one source of time for the Scheduler, Dispatcher, BatchPolicy and GpuExecutor.
// SteadyClock reads std::chrono::steady_clock; VirtualClock holds a time that only moves when
// the simulator advances it, so the same data-plane logic runs deterministically in virtual
// time (DESIGN.md "Time").
//
// Thread-safety: now() may be called from any thread on both clocks. VirtualClock::advance_to
// is meant for the one thread that drives a simulation; sleep_until on a VirtualClock blocks
// until another thread advances time past the target (or returns at once if it already is).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace nexus {

/// Durations inside the data plane are nanoseconds; convert with std::chrono::duration_cast.
using Duration = std::chrono::nanoseconds;
/// A point in time of some Clock. Virtual clocks start at TimePoint{} (zero).
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

class Clock {
 public:
  virtual ~Clock() = default;
  /// The current time.
  virtual TimePoint now() const = 0;
  /// Blocks the calling thread until now() >= t.
  virtual void sleep_until(TimePoint t) = 0;
  /// True for a simulated clock (time moves only when advanced).
  virtual bool is_virtual() const = 0;
};

/// Wall-clock time from std::chrono::steady_clock.
class SteadyClock final : public Clock {
 public:
  TimePoint now() const override {
    return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now());
  }
  void sleep_until(TimePoint t) override { std::this_thread::sleep_until(t); }
  bool is_virtual() const override { return false; }
};

/// Simulated time: starts at `start` and moves forward only by advance_to/advance. Never moves
/// backwards (advance_to an earlier time is a no-op).
class VirtualClock final : public Clock {
 public:
  explicit VirtualClock(TimePoint start = TimePoint{}) : now_ns_(start.time_since_epoch().count()) {}

  TimePoint now() const override {
    return TimePoint(Duration(now_ns_.load(std::memory_order_acquire)));
  }
  void sleep_until(TimePoint t) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return now() >= t; });
  }
  bool is_virtual() const override { return true; }

  /// Sets the time to max(now(), t) and wakes sleepers whose time has come.
  void advance_to(TimePoint t) {
    {
      std::lock_guard lock(mu_);
      const auto v = t.time_since_epoch().count();
      if (v > now_ns_.load(std::memory_order_relaxed)) now_ns_.store(v, std::memory_order_release);
    }
    cv_.notify_all();
  }
  void advance(Duration d) { advance_to(now() + d); }

 private:
  std::atomic<Duration::rep> now_ns_;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace nexus
