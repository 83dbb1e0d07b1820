#include "nexus/dispatch/routing.hpp"

#include <algorithm>
#include <cmath>

namespace nexus::dispatch {

RoutingTable::RoutingTable(const std::vector<int>& devices, const std::vector<double>& weights,
                           int period) {
  double total = 0;
  for (std::size_t i = 0; i < devices.size() && i < weights.size(); ++i)
    total += std::max(0.0, weights[i]);
  if (total <= 0) return;
  if (period <= 0)
    period = static_cast<int>(std::clamp<std::size_t>(devices.size() * 64, 128, 65536));
  // Smooth weighted round robin (nginx): each turn every device gains its weight, the one with
  // the largest credit is chosen and pays the total. The sequence interleaves devices evenly.
  std::vector<double> credit(devices.size(), 0.0);
  cycle_.reserve(static_cast<std::size_t>(period));
  for (int k = 0; k < period; ++k) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      credit[i] += std::max(0.0, weights[i]) / total;
      if (credit[i] > credit[best]) best = i;
    }
    credit[best] -= 1.0;
    cycle_.push_back(devices[best]);
  }
}

}  // namespace nexus::dispatch
