#include "nexus/dispatch/dispatcher.hpp"

#include "nexus/core/error.hpp"

namespace nexus::dispatch {

void Dispatcher::set_routes(int session, const std::vector<int>& devices,
                            const std::vector<double>& weights) {
  NEXUS_CHECK(session >= 0 && session < kMaxSessions, "Dispatcher::set_routes: session {} outside [0, {})",
              session, kMaxSessions);
  NEXUS_CHECK(devices.size() == weights.size(),
              "Dispatcher::set_routes: {} devices but {} weights for session {}", devices.size(),
              weights.size(), session);
  auto table = std::make_unique<RoutingTable>(devices, weights);
  std::lock_guard lock(mu_);
  tables_[static_cast<std::size_t>(session)].store(table.get(), std::memory_order_release);
  all_tables_.push_back(std::move(table));
}

}  // namespace nexus::dispatch
