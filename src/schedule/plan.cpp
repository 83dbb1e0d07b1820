// Plan: routing tables and JSON output.

#include "nexus/schedule/plan.hpp"

#include <nlohmann/json.hpp>

namespace nexus {

const std::vector<Route>& Plan::route(const std::string& session) const {
  static const std::vector<Route> kEmpty;
  auto it = routes.find(session);
  return it == routes.end() ? kEmpty : it->second;
}

double Plan::planned_rate(const std::string& session) const {
  double r = 0.0;
  for (const auto& g : gpus)
    for (const auto& a : g.sessions)
      if (a.session == session) r += a.rate_rps;
  return r;
}

void Plan::rebuild_routes() {
  routes.clear();
  for (const auto& g : gpus)
    for (const auto& a : g.sessions) routes[a.session].push_back({g.gpu, 0.0, a.rate_rps});
  for (auto& [id, table] : routes) {
    double total = 0.0;
    for (const auto& r : table) total += r.rate_rps;
    for (auto& r : table)
      r.weight = total > 0 ? r.rate_rps / total : 1.0 / static_cast<double>(table.size());
  }
}

nlohmann::json Plan::to_json() const {
  nlohmann::json j;
  j["num_gpus"] = num_gpus();
  j["lower_bound_gpus"] = lower_bound_gpus;
  auto gs = nlohmann::json::array();
  for (const auto& g : gpus) {
    nlohmann::json jg;
    jg["gpu"] = g.gpu;
    jg["duty_cycle_us"] = g.duty_cycle.count();
    jg["occupancy"] = g.occupancy;
    jg["memory_bytes"] = g.memory_bytes;
    jg["saturated"] = g.saturated;
    auto ss = nlohmann::json::array();
    for (const auto& a : g.sessions) {
      ss.push_back({{"session", a.session},
                    {"model", a.model},
                    {"batch", a.batch},
                    {"latency_us", a.latency.count()},
                    {"rate_rps", a.rate_rps},
                    {"slo_ms", static_cast<double>(a.slo.count()) / 1000.0}});
      if (!a.prefix_group.empty()) ss.back()["prefix_group"] = a.prefix_group;
    }
    jg["sessions"] = std::move(ss);
    gs.push_back(std::move(jg));
  }
  j["gpus"] = std::move(gs);
  auto budgets = nlohmann::json::object();
  for (const auto& [k, v] : stage_budgets) budgets[k] = static_cast<double>(v.count()) / 1000.0;
  j["stage_budgets_ms"] = std::move(budgets);
  auto rej = nlohmann::json::array();
  for (const auto& r : rejected) {
    nlohmann::json jr{{"session", r.session}, {"reason", r.reason}};
    if (r.required_slo.count() > 0)
      jr["required_slo_ms"] = static_cast<double>(r.required_slo.count()) / 1000.0;
    if (r.demanded_rps > 0) {
      jr["served_rps"] = r.served_rps;
      jr["demanded_rps"] = r.demanded_rps;
    }
    rej.push_back(std::move(jr));
  }
  j["rejected"] = std::move(rej);
  auto routes_j = nlohmann::json::object();
  for (const auto& [id, table] : routes) {
    auto t = nlohmann::json::array();
    for (const auto& r : table) t.push_back({{"gpu", r.gpu}, {"weight", r.weight}, {"rate_rps", r.rate_rps}});
    routes_j[id] = std::move(t);
  }
  j["routes"] = std::move(routes_j);
  return j;
}

}  // namespace nexus
