#pragma once
// BlockingQueue<T>: an unbounded multi-producer, multi-consumer FIFO with a timed, batched pop.
// The Engine's completion queue: executors push finished QueryResults, poll() pops them.
//
// Thread-safety: every member may be called from any thread.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

namespace nexus {

template <typename T>
class BlockingQueue {
 public:
  void push(T item) {
    {
      std::lock_guard lock(mu_);
      items_.push_back(std::move(item));
    }
    cv_.notify_one();
  }

  /// Appends every item of `items` (moved out, in order) under one lock; leaves it empty.
  void push_all(std::vector<T>& items) {
    if (items.empty()) return;
    {
      std::lock_guard lock(mu_);
      for (auto& x : items) items_.push_back(std::move(x));
    }
    items.clear();
    cv_.notify_all();
  }

  /// Pops up to `max` items; waits up to `timeout` (wall time) for the first one.
  std::vector<T> pop_some(std::size_t max, std::chrono::nanoseconds timeout) {
    std::vector<T> out;
    std::unique_lock lock(mu_);
    if (items_.empty() && timeout.count() > 0)
      cv_.wait_for(lock, timeout, [&] { return !items_.empty() || woken_; });
    woken_ = false;
    while (!items_.empty() && out.size() < max) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    return out;
  }

  /// Wakes every waiting pop_some (e.g. at shutdown).
  void wake_all() {
    {
      std::lock_guard lock(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_;
  bool woken_ = false;
};

}  // namespace nexus
