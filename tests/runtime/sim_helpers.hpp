#pragma once
// Shared helpers of the runtime tests: virtual-time engines over linear profiles.
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "nexus/core/clock.hpp"
#include "nexus/profile/batch_profile.hpp"
#include "nexus/runtime/engine.hpp"
#include "nexus/sim/sim_backend.hpp"
#include "nexus/sim/traffic.hpp"

namespace nexus::testing {

/// ℓ(b) = alpha·b + beta (µs), b = 1..max_batch.
inline BatchProfile linear_profile(const std::string& model, double alpha_us, double beta_us,
                                   int max_batch) {
  std::vector<int> b;
  std::vector<double> l;
  for (int i = 1; i <= max_batch; ++i) {
    b.push_back(i);
    l.push_back(alpha_us * i + beta_us);
  }
  return BatchProfile(model, "sim", b, l);
}

struct SimRig {
  std::shared_ptr<VirtualClock> clock = std::make_shared<VirtualClock>();
  std::unique_ptr<runtime::Engine> engine;

  explicit SimRig(runtime::EngineOptions o) {
    o.clock = clock;
    engine = std::make_unique<runtime::Engine>(std::move(o));
  }

  /// Submits one request of `query` at each arrival time (virtual), then drains.
  /// Returns every result polled; ids submitted go to `ids`.
  std::vector<runtime::QueryResult> run(const std::string& query,
                                        const std::vector<TimePoint>& arrivals, const Tensor& input,
                                        std::vector<runtime::RequestId>* ids = nullptr) {
    std::vector<runtime::QueryResult> out;
    for (TimePoint t : arrivals) {
      engine->run_until(t);
      const auto id = engine->submit(query, input);
      if (ids) ids->push_back(id);
      for (auto& r : engine->poll()) out.push_back(std::move(r));
    }
    engine->run_until_idle();
    for (auto& r : engine->poll()) out.push_back(std::move(r));
    return out;
  }
};

/// Good rate of a result set: completed within the SLO / all.
inline double good_rate(const std::vector<runtime::QueryResult>& rs) {
  if (rs.empty()) return 0;
  std::size_t g = 0;
  for (auto& r : rs) g += r.met_slo ? 1 : 0;
  return double(g) / double(rs.size());
}

/// True when every id appears exactly once among the results (and nothing else does).
inline bool each_exactly_once(const std::vector<runtime::RequestId>& ids,
                              const std::vector<runtime::QueryResult>& rs) {
  std::map<runtime::RequestId, int> seen;
  for (auto& r : rs) ++seen[r.id];
  if (seen.size() != ids.size() || rs.size() != ids.size()) return false;
  for (auto id : ids)
    if (seen[id] != 1) return false;
  return true;
}

}  // namespace nexus::testing
