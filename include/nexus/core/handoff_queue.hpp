#pragma once
// HandoffQueue<T>: a multi-producer, single-consumer queue with batched hand-off. Producers
// push one item under a short lock (an uncontended mutex costs a few tens of ns); the consumer
// takes everything queued in one swap, so its lock is held O(1) regardless of the backlog and
// the buffers are reused (no per-item allocation once warm).
//
// Thread-safety: push/size from any thread; drain_into from one consumer thread at a time.

#include <atomic>
#include <cstddef>
#include <mutex>
#include <vector>

namespace nexus {

template <typename T>
class HandoffQueue {
 public:
  /// Appends item; returns the number of items queued before it (0 means the queue was empty).
  std::size_t push(T item) {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(item));
    const auto n = items_.size() - 1;
    size_.store(n + 1);  // seq_cst: pairs with a consumer's sleeping flag (no fences)
    return n;
  }

  /// Moves every queued item to the end of `out` (in push order) and empties the queue.
  /// `out` is swapped in when empty, so pass the same (cleared) vector each time to reuse
  /// capacity.
  void drain_into(std::vector<T>& out) {
    if (size_.load() == 0) return;
    std::lock_guard lock(mu_);
    if (out.empty()) {
      out.swap(items_);
    } else {
      for (auto& x : items_) out.push_back(std::move(x));
      items_.clear();
    }
    size_.store(0);
  }

  /// Items queued now (a racy snapshot when producers are active).
  std::size_t size() const { return size_.load(); }
  bool empty() const { return size() == 0; }

 private:
  std::mutex mu_;
  std::vector<T> items_;
  std::atomic<std::size_t> size_{0};
};

}  // namespace nexus
