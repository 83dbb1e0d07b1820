#pragma once
// Scheduler: the control plane's epoch loop (paper §6.1, §7; notes §7), the one epoch mechanism
// of Nexus: the Engine runs it (EngineOptions::epoch / min_epoch). It holds the sessions and
// queries, an EWMA of each one's observed rate, and the current Plan. Every epoch (default 30 s)
// — or early, once the minimum epoch (default 10 s) has passed, when some session's rate leaves
// [0.8, 1.1] × its planned rate — it re-plans: QueryPlanner splits each query's SLO, the planner
// (default: SquishyBinPacker with admission control, admit_and_pack, the running plan's sessions
// first) packs all sessions, then the new GPUs are matched to the old slots by session
// overlap (greedy on the overlap in served rate) so that few sessions move between GPUs. If
// the new packing would save no GPU and the running plan still has the capacity (Σ b/d) for
// every session's new rate with unchanged SLOs, the running plan is kept (only its rate shares
// and routing weights are updated): nothing moves.
//
// Time is passed in (`now`, any monotonic clock's time since epoch), so the Scheduler is pure
// and runs unchanged on a VirtualClock. Sessions whose SLO cannot be met are in
// Plan::rejected with the SLO they would need; nothing throws for that.
//
// Thread-safety: not synchronised. The Engine calls it from one control thread (or under a lock)
// and publishes the Plan to the data plane.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/plan.hpp"
#include "nexus/schedule/query_planner.hpp"
#include "nexus/schedule/session.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

namespace nexus {

struct SchedulerOptions {
  PackerOptions packer;
  QueryPlannerOptions query;
  std::chrono::microseconds epoch{std::chrono::seconds(30)};
  std::chrono::microseconds min_epoch{std::chrono::seconds(10)};  ///< clamped to ≥ 10 s
  double ewma_alpha = 0.3;     ///< weight of the newest rate sample
  double low_watermark = 0.8;  ///< early re-plan when rate < low × planned
  double high_watermark = 1.1; ///< early re-plan when rate > high × planned
  double min_rate_rps = 1.0;   ///< floor on a session's planned rate, so it stays routable
  /// Plans the sessions (SLO = stage budget, rate = estimate) given the running plan (null
  /// before the first). Empty: admit_and_pack(sessions, profiles, packer, the running plan's
  /// routed sessions). Its Plan::stage_budgets entries win over the query splits'.
  std::function<Plan(const std::vector<Session>& sessions, const Plan* running)> planner;
  /// Renumber a new plan's GPUs to keep sessions on their slots (stabilize_gpu_numbering).
  bool stabilize = true;
};

class Scheduler {
 public:
  /// Throws nexus::Error if min_epoch <= 0, epoch < min_epoch or a watermark is out of order.
  explicit Scheduler(ProfileMap profiles, SchedulerOptions options = {});

  /// Declares a session with its initial (expected) rate. Throws nexus::Error on a duplicate id,
  /// a non-positive rate or SLO, or a model without a profile.
  void add_session(const Session& session);
  /// Declares a query (validated as in QueryPlanner). Its stages become sessions "<query>/<stage>".
  void add_query(const QuerySpec& query);
  /// Forgets a session or query. Throws nexus::Error if unknown.
  void remove(const std::string& id);
  /// Adds (or replaces) a model's batching profile.
  void add_profile(const std::string& model, BatchProfile profile);
  /// Changes a session's SLO (e.g. its stage budget after a re-split); the next re-plan uses it.
  /// Does not by itself make a re-plan due. Throws nexus::Error if unknown or slo <= 0.
  void set_slo(const std::string& id, std::chrono::microseconds slo);

  /// Feeds one rate sample (req/s) for a session or query id (queries: the root rate);
  /// folded into the EWMA. Throws nexus::Error if unknown or negative.
  void observe(const std::string& id, double rate_rps);
  /// Current EWMA rate of a session or query.
  double estimated_rate(const std::string& id) const;

  /// True when a re-plan is due at `now`: no plan yet, the set of sessions changed, an epoch has
  /// passed, or (after min_epoch) a rate left the watermarks.
  bool replan_due(std::chrono::microseconds now) const;
  /// Re-plans now, unconditionally, from the estimated rates; returns the new plan.
  const Plan& replan(std::chrono::microseconds now);
  /// Re-plans if replan_due(now); returns the new plan when it did.
  std::optional<Plan> tick(std::chrono::microseconds now);

  /// The next re-plan packs afresh: it does not keep the running plan, even when that would save
  /// no GPU (e.g. the Engine's prefix groups changed, so the running plan's merged sessions are
  /// stale).
  void invalidate_plan() { fresh_ = true; dirty_ = true; }

  const Plan& plan() const { return plan_; }
  /// Sessions whose GPU slots changed in the last re-plan (moved, added or removed).
  int moved_sessions() const { return moved_; }
  /// Re-plans so far, and how many of them kept the running plan (nothing saved).
  std::uint64_t replans() const { return replans_; }
  std::uint64_t plans_kept() const { return kept_count_; }

 private:
  std::vector<Session> current_sessions(Plan& plan) const;
  std::optional<Plan> keep_previous(const std::vector<Session>& sessions, const Plan& next) const;

  ProfileMap profiles_;
  SchedulerOptions options_;
  std::map<std::string, Session> sessions_;
  std::map<std::string, QuerySpec> queries_;
  std::map<std::string, double> rate_;  // EWMA per session / query id
  Plan plan_;
  bool has_plan_ = false;
  bool dirty_ = true;
  bool fresh_ = false;  // invalidate_plan(): the next re-plan does not keep the running plan
  std::map<std::string, double> planned_rate_;  // rate each session / query was planned for
  std::chrono::microseconds last_plan_{0};
  int moved_ = 0;
  std::uint64_t replans_ = 0, kept_count_ = 0;
};

/// Renumbers `next`'s GPUs so that slot g holds, where possible, the sessions slot g held in
/// `prev` (greedy maximum overlap of served rate). Returns the number of sessions whose set of
/// slots changed.
int stabilize_gpu_numbering(const Plan& prev, Plan& next);

}  // namespace nexus
