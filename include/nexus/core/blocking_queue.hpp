#pragma once
// BlockingQueue<T>: an unbounded multi-producer, multi-consumer FIFO with a timed, batched pop.
// The Engine's completion queue: executors push finished QueryResults, poll() pops them.
//
// Thread-safety: every member may be called from any thread.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <algorithm>
#include <mutex>
#include <vector>

namespace nexus {

template <typename T>
class BlockingQueue {
 public:
  void push(T item) {
    bool wake;
    {
      std::lock_guard lock(mu_);
      items_.push_back(std::move(item));
      wake = waiters_ > 0;
    }
    if (wake) cv_.notify_one();  // no futex call when nobody waits
  }

  /// Appends every item of `items` (moved out, in order) under one lock; leaves it empty.
  void push_all(std::vector<T>& items) {
    if (items.empty()) return;
    bool wake;
    {
      std::lock_guard lock(mu_);
      if (items_.empty() && head_ == 0)
        items_.swap(items);
      else
        for (auto& x : items) items_.push_back(std::move(x));
      wake = waiters_ > 0;
    }
    items.clear();
    if (wake) cv_.notify_all();
  }

  /// Pops up to `max` items; waits up to `timeout` (wall time) for the first one.
  std::vector<T> pop_some(std::size_t max, std::chrono::nanoseconds timeout) {
    std::vector<T> out;
    std::unique_lock lock(mu_);
    if (head_ == items_.size() && timeout.count() > 0) {
      ++waiters_;
      cv_.wait_for(lock, timeout, [&] { return head_ != items_.size() || woken_; });
      --waiters_;
    }
    woken_ = false;
    const std::size_t avail = items_.size() - head_;
    if (avail == 0) return out;
    if (head_ == 0 && max >= avail) {  // take everything: O(1)
      out.swap(items_);
      return out;
    }
    const std::size_t k = std::min(max, avail);
    out.reserve(k);
    for (std::size_t i = 0; i < k; ++i) out.push_back(std::move(items_[head_ + i]));
    head_ += k;
    if (head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ > 1024 && head_ * 2 > items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
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
    return items_.size() - head_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<T> items_;  // [head_, size) are queued; a vector so hand-offs can swap buffers
  std::size_t head_ = 0;
  int waiters_ = 0;
  bool woken_ = false;
};

}  // namespace nexus
