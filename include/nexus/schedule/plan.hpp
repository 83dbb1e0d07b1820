#pragma once
// Plan: the Scheduler's output (paper §6.1, Fig. 6 "execution schedules" + "routing tables").
// For each GPU: its sessions, each with a batch size, planning latency ℓ(b) and the rate the GPU
// serves for it; the GPU's duty cycle d, occupancy Σℓ(b_i)/d and memory. For each session: the
// routing weights over GPUs (proportional to the rate each GPU serves; they sum to 1). Plus the
// fractional lower bound Σ_i R_i / T_i(B_i), the query stage budgets and the rejected sessions.
//
// Invariants a valid plan satisfies (checked by tests, see validate()):
//   Σ_g rate(s, g) ≥ R_s for every planned session; occupancy ≤ 1; memory ≤ capacity;
//   d + ℓ(b) ≤ SLO_eff for shared GPUs, 2ℓ(B) ≤ SLO_eff for saturated ones (SLO_eff = SLO minus
//   pre/post-processing and the fixed overhead of PackerOptions).
//
// A GPU index is a logical slot 0..num_gpus()-1; the Engine maps slots to devices. Re-planning
// keeps slot numbers stable where it can (Scheduler).

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace nexus {

/// One session's share of one GPU.
struct SessionAllocation {
  std::string session;                    ///< Session::id
  std::string model;
  int batch = 0;                          ///< batch size run once per duty cycle
  std::chrono::microseconds latency{0};   ///< planning latency ℓ(batch)
  double rate_rps = 0.0;                  ///< rate this GPU serves for the session (≤ batch/d)
  std::chrono::microseconds slo{0};       ///< the session's SLO (stage budget for query stages)
  /// Prefix batching (paper §6.3): the id of the prefix group session this session was planned
  /// in (the Engine plans a group as one session and gives each member its share: `batch` is
  /// the member's share of the group's batch, `latency` the group's ℓ(B), `rate_rps` its share
  /// of the group's rate); empty when the session runs on its own.
  std::string prefix_group;
};

/// One GPU's schedule: run one batch of each session, round robin, once per duty cycle.
struct GpuPlan {
  int gpu = 0;                                ///< logical slot
  std::chrono::microseconds duty_cycle{0};    ///< d; for a saturated GPU d = ℓ(B)
  double occupancy = 0.0;                     ///< Σ ℓ(b_i) / d, ≤ 1
  std::size_t memory_bytes = 0;               ///< Σ m_i(b_i) (weights + activations)
  bool saturated = false;                     ///< dedicated to one session at its max batch B
  std::vector<SessionAllocation> sessions;

  /// The allocation of `session` on this GPU, or nullptr if it has none here.
  const SessionAllocation* find(const std::string& session) const {
    for (const auto& a : sessions)
      if (a.session == session) return &a;
    return nullptr;
  }
};

/// One entry of a session's routing table.
struct Route {
  int gpu = 0;
  double weight = 0.0;     ///< share of the session's requests to send to this GPU (Σ = 1)
  double rate_rps = 0.0;   ///< planned rate on that GPU
};

/// A session no GPU can serve, or serve in full, and why (e.g. "needs SLO ≥ 62 ms", or the
/// admission control's decision under a cluster limit).
struct Rejection {
  std::string session;
  std::string reason;
  std::chrono::microseconds required_slo{0};  ///< smallest SLO that would work, 0 if unknown
  double served_rps = 0.0;     ///< rate still planned for it (> 0: admitted in part), req/s
  double demanded_rps = 0.0;   ///< its rate as planned for, req/s (0 if not a capacity decision)
};

struct Plan {
  std::vector<GpuPlan> gpus;
  /// session id → routing table over GPUs.
  std::map<std::string, std::vector<Route>> routes;
  /// "query/stage" → stage latency budget chosen by the QueryPlanner.
  std::map<std::string, std::chrono::microseconds> stage_budgets;
  std::vector<Rejection> rejected;
  /// Σ_i R_i / T_i(B_i) over planned sessions (fractional, paper's "aggressive lower bound").
  double lower_bound_gpus = 0.0;

  int num_gpus() const { return static_cast<int>(gpus.size()); }
  /// Routing table of a session; empty if the session is not planned.
  const std::vector<Route>& route(const std::string& session) const;
  /// The first GPU (in slot order) that serves `session`, or nullptr if none does.
  const GpuPlan* gpu_of(const std::string& session) const {
    for (const auto& g : gpus)
      if (g.find(session)) return &g;
    return nullptr;
  }
  /// Total rate planned for a session over all GPUs.
  double planned_rate(const std::string& session) const;
  /// Rebuilds `routes` from `gpus` (weights ∝ rate).
  void rebuild_routes();
  /// JSON as printed by nexus-plan: {"num_gpus", "lower_bound_gpus", "gpus": [...],
  /// "stage_budgets_ms": {...}, "rejected": [...], "routes": {...}}.
  nlohmann::json to_json() const;
};

}  // namespace nexus
