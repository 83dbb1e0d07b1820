#include "nexus/runtime/planner.hpp"

namespace nexus::runtime {

PlannerFn make_squishy_planner(PackerOptions options) {
  return [options](const PlanRequest& req) {
    // A plan never needs more GPUs than the engine has devices: when the load does not fit,
    // admission control decides openly who is served at what rate (Plan::rejected says so).
    PackerOptions o = options;
    if (req.num_devices > 0 && (o.max_gpus <= 0 || o.max_gpus > req.num_devices)) o.max_gpus = req.num_devices;
    return admit_and_pack(req.sessions, *req.profiles, o, req.running);
  };
}

PlannerFn make_replicate_planner() {
  return [](const PlanRequest& req) {
    Plan plan;
    for (int g = 0; g < req.num_devices; ++g) {
      GpuPlan gp;
      gp.gpu = g;
      plan.gpus.push_back(gp);
    }
    for (const auto& s : req.sessions) {
      const BatchProfile& p = req.profiles->at(s.model);
      int batch = 1;
      for (int b = p.max_batch(); b >= 1; --b)
        if (2 * p.latency(b) <= s.slo) {
          batch = b;
          break;
        }
      std::vector<Route> routes;
      for (int g = 0; g < req.num_devices; ++g) {
        SessionAllocation a;
        a.session = s.id;
        a.model = s.model;
        a.batch = batch;
        a.latency = p.latency(batch);
        a.rate_rps = s.rate_rps / req.num_devices;
        a.slo = s.slo;
        plan.gpus[static_cast<std::size_t>(g)].sessions.push_back(a);
        routes.push_back({g, 1.0 / req.num_devices, a.rate_rps});
      }
      plan.routes[s.id] = routes;
    }
    for (auto& g : plan.gpus) {
      std::chrono::microseconds sum{0};
      for (auto& a : g.sessions) sum += a.latency;
      g.duty_cycle = sum;
      g.occupancy = g.sessions.empty() ? 0.0 : 1.0;
    }
    return plan;
  };
}

}  // namespace nexus::runtime
