#pragma once
// RoutingTable: how the Dispatcher spreads one session's requests over the devices that serve
// it, in proportion to the plan's weights (paper §7 routing tables; notes §7: the original
// frontend's default is deficit round robin). The table precomputes one period of smooth
// weighted round robin by stride scheduling (each device due every 1/share picks, the earliest
// due first), in O(period · log devices), so routing a request is one atomic increment and one
// array read, with no lock on the submit path.
//
// Thread-safety: immutable after construction; pick() may be called from any thread.

#include <atomic>
#include <cstdint>
#include <vector>

namespace nexus::dispatch {

class RoutingTable {
 public:
  /// `devices[i]` receives a share weights[i] / Σ weights (weights >= 0, Σ > 0; else empty
  /// table). `period` is the cycle length, shares are exact to 1/period; 0 picks
  /// 64 × devices (at least 128, at most 65536), so each device's share is within ~1/64 of it.
  RoutingTable(const std::vector<int>& devices, const std::vector<double>& weights,
               int period = 0);

  bool empty() const { return cycle_.empty(); }
  /// The device for the k-th request of the session.
  int pick(std::uint64_t k) const { return cycle_[k % cycle_.size()]; }
  const std::vector<int>& cycle() const { return cycle_; }

 private:
  std::vector<int> cycle_;
};

}  // namespace nexus::dispatch
