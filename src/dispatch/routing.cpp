#include "nexus/dispatch/routing.hpp"

#include <algorithm>
#include <cmath>
#include <queue>
#include <utility>

namespace nexus::dispatch {

RoutingTable::RoutingTable(const std::vector<int>& devices, const std::vector<double>& weights,
                           int period) {
  double total = 0;
  for (std::size_t i = 0; i < devices.size() && i < weights.size(); ++i)
    total += std::max(0.0, weights[i]);
  if (total <= 0) return;
  if (period <= 0)
    period = static_cast<int>(std::clamp<std::size_t>(devices.size() * 64, 128, 65536));
  // Stride scheduling (Waldspurger & Weihl, 1995): device i is due every 1/share_i picks, first
  // at half a stride; each pick takes the device due earliest (ties: the lower index). This is
  // the smooth interleaving of weighted round robin (for weights 1/2, 1/4, 1/4: 0,1,2,0 repeated)
  // at O(log devices) per slot: one period costs O(period log devices), where comparing every
  // device at every slot cost O(period · devices) = O(64 · devices²) (0.1 s per session at
  // 1,000 devices, paid at every plan swap).
  using Due = std::pair<double, std::size_t>;  // (pass, index)
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due;
  std::vector<double> stride(devices.size(), 0.0);
  for (std::size_t i = 0; i < devices.size() && i < weights.size(); ++i)
    if (weights[i] > 0) {
      stride[i] = total / weights[i];
      due.push({0.5 * stride[i], i});
    }
  cycle_.reserve(static_cast<std::size_t>(period));
  for (int k = 0; k < period; ++k) {
    auto [pass, i] = due.top();
    due.pop();
    cycle_.push_back(devices[i]);
    due.push({pass + stride[i], i});
  }
}

}  // namespace nexus::dispatch
