#include "nexus/sim/baselines.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "nexus/core/error.hpp"
#include "nexus/runtime/planner.hpp"

namespace nexus::sim {

std::string_view to_string(System s) {
  switch (s) {
    case System::kNexus: return "nexus";
    case System::kClipper: return "clipper";
    case System::kTfServing: return "tfserving";
    case System::kTriton: return "triton";
  }
  return "?";
}

System parse_system(std::string_view name) {
  for (auto s : {System::kNexus, System::kClipper, System::kTfServing, System::kTriton})
    if (to_string(s) == name) return s;
  throw_error("system '{}': expected nexus, clipper, tfserving or triton", name);
}

std::string Ablations::to_string() const {
  std::string out;
  auto add = [&](bool on, const char* n) {
    if (!on) return;
    if (!out.empty()) out += ',';
    out += n;
  };
  add(squishy, "squishy");
  add(query_dp, "query_dp");
  add(early_drop, "early_drop");
  add(duty_cycle, "duty_cycle");
  add(prefix, "prefix");
  return out.empty() ? "none" : out;
}

Ablations parse_ablations(std::string_view list) {
  Ablations a;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    const std::size_t end = std::min(list.find(',', pos), list.size());
    const std::string_view w = list.substr(pos, end - pos);
    if (w == "squishy") a.squishy = true;
    else if (w == "query_dp") a.query_dp = true;
    else if (w == "early_drop") a.early_drop = true;
    else if (w == "duty_cycle") a.duty_cycle = true;
    else if (w == "prefix") a.prefix = true;
    else if (w == "all") a.squishy = a.query_dp = a.early_drop = a.prefix = true;  // every Nexus feature
    else if (!w.empty() && w != "none")
      throw_error("--ablate '{}': expected squishy, query_dp, early_drop, duty_cycle, prefix or all",
                  w);
    pos = end + 1;
  }
  return a;
}

namespace {

int saturated_or_fixed(const BatchProfile& p, std::chrono::microseconds budget, int fixed) {
  if (fixed > 0) return std::min(fixed, p.max_batch());
  for (int b = p.max_batch(); b >= 1; --b)
    if (2 * p.latency(b) <= budget) return b;
  return 1;
}

}  // namespace

runtime::PlannerFn make_batch_oblivious_planner(BatchObliviousOptions o) {
  return [o](const runtime::PlanRequest& req) {
    const int n = req.num_devices;
    NEXUS_CHECK(n >= 1, "batch-oblivious allocator: no devices");
    std::vector<Session> sessions = req.sessions;
    for (auto& s : sessions)
      if (auto it = o.budgets.find(s.id); it != o.budgets.end()) s.slo = it->second;
    const std::size_t ns = sessions.size();
    double total = 0;
    for (const auto& s : sessions) total += s.rate_rps;
    std::vector<double> share(ns);
    for (std::size_t i = 0; i < ns; ++i) share[i] = total > 0 ? n * sessions[i].rate_rps / total : double(n) / double(ns);

    // GPU g -> (session, fraction of the GPU).
    std::vector<std::vector<std::pair<std::size_t, double>>> gpus(static_cast<std::size_t>(n));
    std::vector<double> load(static_cast<std::size_t>(n), 0.0);
    int next = 0;
    auto least_loaded = [&] {
      return static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    };
    if (o.one_model_per_gpu) {
      // Whole GPUs: at least one each (while GPUs last), the rest by largest remainder.
      std::vector<int> count(ns, 0);
      std::vector<std::size_t> order(ns);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return share[a] > share[b]; });
      int used = 0;
      for (auto i : order)
        if (used < n) {
          count[i] = 1;
          ++used;
        }
      for (auto i : order) {
        const int extra = std::max(0, static_cast<int>(std::floor(share[i])) - count[i]);
        const int give = std::min(extra, n - used);
        count[i] += give;
        used += give;
      }
      while (used < n) {  // largest remainder of share - count
        std::size_t best = order[0];
        double bestr = -1e300;
        for (auto i : order)
          if (count[i] > 0 && share[i] - count[i] > bestr) {
            bestr = share[i] - count[i];
            best = i;
          }
        ++count[best];
        ++used;
      }
      for (auto i : order)
        for (int k = 0; k < count[i]; ++k) {
          gpus[static_cast<std::size_t>(next)].push_back({i, 1.0});
          load[static_cast<std::size_t>(next)] = 1.0;
          ++next;
        }
      // Sessions left without a GPU (more sessions than GPUs) share the least-loaded ones.
      for (auto i : order)
        if (count[i] == 0) {
          const auto g = least_loaded();
          gpus[g].push_back({i, share[i]});
          load[g] += share[i];
        }
    } else {
      // Whole parts dedicated, fractional parts first-fit decreasing onto the remaining GPUs.
      std::vector<std::pair<double, std::size_t>> frac;
      for (std::size_t i = 0; i < ns; ++i) {
        int whole = static_cast<int>(std::floor(share[i] + 1e-9));
        for (int k = 0; k < whole && next < n; ++k) {
          gpus[static_cast<std::size_t>(next)].push_back({i, 1.0});
          load[static_cast<std::size_t>(next)] = 1.0;
          ++next;
        }
        const double f = share[i] - whole;
        if (f > 1e-9 || whole == 0) frac.push_back({std::max(f, 1e-9), i});
      }
      std::stable_sort(frac.begin(), frac.end(), [](auto& a, auto& b) { return a.first > b.first; });
      for (auto [f, i] : frac) {
        std::size_t g = static_cast<std::size_t>(n);
        for (std::size_t k = static_cast<std::size_t>(next); k < static_cast<std::size_t>(n); ++k)
          if (load[k] + f <= 1.0 + 1e-9) {
            g = k;
            break;
          }
        if (g == static_cast<std::size_t>(n)) g = least_loaded();
        gpus[g].push_back({i, f});
        load[g] += f;
      }
    }

    Plan plan;
    std::vector<double> weight_sum(ns, 0.0);
    for (int g = 0; g < n; ++g)
      for (auto [i, f] : gpus[static_cast<std::size_t>(g)]) weight_sum[i] += f;
    for (int g = 0; g < n; ++g) {
      GpuPlan gp;
      gp.gpu = g;
      std::chrono::microseconds cycle{0};
      for (auto [i, f] : gpus[static_cast<std::size_t>(g)]) {
        const Session& s = sessions[i];
        const BatchProfile& p = req.profiles->at(s.model);
        SessionAllocation a;
        a.session = s.id;
        a.model = s.model;
        a.batch = saturated_or_fixed(p, s.slo, o.fixed_batch);
        a.latency = p.latency(a.batch);
        a.rate_rps = s.rate_rps * f / weight_sum[i];
        a.slo = s.slo;
        cycle += a.latency;
        plan.routes[s.id].push_back({g, f / weight_sum[i], a.rate_rps});
        gp.sessions.push_back(a);
      }
      gp.duty_cycle = cycle;
      gp.occupancy = gp.sessions.empty() ? 0.0 : 1.0;
      plan.gpus.push_back(std::move(gp));
    }
    for (const auto& [id, b] : o.budgets) plan.stage_budgets[id] = b;
    return plan;
  };
}

runtime::PlannerFn make_squishy_with_budgets(PackerOptions packer,
                                             std::map<std::string, std::chrono::microseconds> budgets) {
  auto squishy = runtime::make_squishy_planner(packer);
  return [squishy, budgets](const runtime::PlanRequest& req) {
    runtime::PlanRequest r = req;
    for (auto& s : r.sessions)
      if (auto it = budgets.find(s.id); it != budgets.end()) s.slo = it->second;
    Plan p = squishy(r);
    for (const auto& [id, b] : budgets) p.stage_budgets[id] = b;
    return p;
  };
}

}  // namespace nexus::sim
