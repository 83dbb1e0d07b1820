#pragma once
// Dispatcher: the data plane's routing step (paper §7, Fig. 6 "routing tables"; notes §7).
// For every session it holds a RoutingTable over the devices that serve it, with the plan's
// weights (deficit / smooth weighted round robin), and picks the device for each request.
// Queues, deadline order and admission control live with the device's executor (one queue per
// session and device, bounded); the Dispatcher only chooses where a request goes.
//
// Plan swaps: set_routes() publishes a new table with one atomic store; a route() racing with it
// uses the old or the new table, never a freed one (retired tables are kept until the
// Dispatcher is destroyed: one small table per session per re-plan).
//
// Thread-safety: route()/has_route() from any number of threads, lock-free; set_routes() from
// any thread (serialised internally).

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "nexus/dispatch/routing.hpp"

namespace nexus::dispatch {

class Dispatcher {
 public:
  static constexpr int kMaxSessions = 512;

  Dispatcher() = default;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  /// Routes `session` over `devices` with shares ∝ `weights` (empty or all-zero: no route).
  /// Throws nexus::Error if session is outside [0, kMaxSessions) or the sizes differ.
  void set_routes(int session, const std::vector<int>& devices, const std::vector<double>& weights);

  /// The device for the next request of `session`, or -1 when no device is planned for it.
  int route(int session) {
    const RoutingTable* t = tables_[static_cast<std::size_t>(session)].load(std::memory_order_acquire);
    if (t == nullptr || t->empty()) return -1;
    return t->pick(counters_[static_cast<std::size_t>(session)].n.fetch_add(1, std::memory_order_relaxed));
  }
  bool has_route(int session) const {
    const RoutingTable* t = tables_[static_cast<std::size_t>(session)].load(std::memory_order_acquire);
    return t != nullptr && !t->empty();
  }

 private:
  struct alignas(64) Counter {  // one cache line each: producers of different sessions don't share
    std::atomic<std::uint64_t> n{0};
  };
  std::array<std::atomic<const RoutingTable*>, kMaxSessions> tables_{};
  std::array<Counter, kMaxSessions> counters_{};
  std::mutex mu_;
  std::vector<std::unique_ptr<RoutingTable>> all_tables_;  // current and retired
};

}  // namespace nexus::dispatch
