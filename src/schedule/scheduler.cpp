// Scheduler: epoch re-planning with EWMA rates and stable GPU numbering.

#include "nexus/schedule/scheduler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nexus {

Scheduler::Scheduler(ProfileMap profiles, SchedulerOptions options)
    : profiles_(std::move(profiles)), options_(options) {
  NEXUS_CHECK(options_.min_epoch.count() > 0, "scheduler: the minimum epoch must be > 0 (got {} us)",
              options_.min_epoch.count());
  NEXUS_CHECK(options_.epoch >= options_.min_epoch,
              "scheduler: epoch {} us is shorter than the minimum epoch {} us",
              options_.epoch.count(), options_.min_epoch.count());
  NEXUS_CHECK(options_.low_watermark > 0 && options_.low_watermark <= 1.0 &&
                  options_.high_watermark >= 1.0,
              "scheduler: watermarks must satisfy 0 < low <= 1 <= high (got {}, {})",
              options_.low_watermark, options_.high_watermark);
  NEXUS_CHECK(options_.ewma_alpha > 0 && options_.ewma_alpha <= 1,
              "scheduler: ewma_alpha must be in (0, 1] (got {})", options_.ewma_alpha);
}

void Scheduler::add_session(const Session& s) {
  NEXUS_CHECK(!s.id.empty(), "scheduler: session with model '{}' has an empty id", s.model);
  NEXUS_CHECK(!sessions_.count(s.id) && !queries_.count(s.id), "scheduler: duplicate id '{}'", s.id);
  NEXUS_CHECK(std::isfinite(s.rate_rps) && s.rate_rps > 0,
              "session '{}': rate must be > 0 req/s (got {})", s.id, s.rate_rps);
  NEXUS_CHECK(s.slo.count() > 0, "session '{}': SLO must be > 0", s.id);
  NEXUS_CHECK(profiles_.count(s.model), "session '{}': no batching profile for model '{}'", s.id,
              s.model);
  sessions_[s.id] = s;
  rate_[s.id] = s.rate_rps;
  dirty_ = true;
}

void Scheduler::add_query(const QuerySpec& q) {
  NEXUS_CHECK(!sessions_.count(q.id) && !queries_.count(q.id), "scheduler: duplicate id '{}'", q.id);
  QueryPlanner::stage_rates(q);  // validates the graph
  for (const auto& st : q.stages)
    NEXUS_CHECK(profiles_.count(st.model),
                "query '{}': stage '{}' names model '{}' with no batching profile", q.id, st.id,
                st.model);
  queries_[q.id] = q;
  rate_[q.id] = q.rate_rps;
  dirty_ = true;
}

void Scheduler::remove(const std::string& id) {
  NEXUS_CHECK(sessions_.erase(id) + queries_.erase(id) == 1, "scheduler: unknown id '{}'", id);
  rate_.erase(id);
  dirty_ = true;
}

void Scheduler::add_profile(const std::string& model, BatchProfile profile) {
  profiles_.insert_or_assign(model, std::move(profile));
}

void Scheduler::set_slo(const std::string& id, std::chrono::microseconds slo) {
  auto it = sessions_.find(id);
  NEXUS_CHECK(it != sessions_.end(), "scheduler: set_slo for unknown session '{}'", id);
  NEXUS_CHECK(slo.count() > 0, "session '{}': SLO must be > 0 (got {} us)", id, slo.count());
  it->second.slo = slo;
}

void Scheduler::observe(const std::string& id, double rate_rps) {
  auto it = rate_.find(id);
  NEXUS_CHECK(it != rate_.end(), "scheduler: rate sample for unknown id '{}'", id);
  NEXUS_CHECK(std::isfinite(rate_rps) && rate_rps >= 0,
              "scheduler: rate sample for '{}' must be >= 0 (got {})", id, rate_rps);
  it->second = options_.ewma_alpha * rate_rps + (1 - options_.ewma_alpha) * it->second;
}

double Scheduler::estimated_rate(const std::string& id) const {
  auto it = rate_.find(id);
  NEXUS_CHECK(it != rate_.end(), "scheduler: unknown id '{}'", id);
  return it->second;
}

bool Scheduler::replan_due(std::chrono::microseconds now) const {
  if (!has_plan_ || dirty_) return true;
  const auto since = now - last_plan_;
  if (since >= options_.epoch) return true;
  if (since < options_.min_epoch) return false;
  for (const auto& [id, planned] : planned_rate_) {
    auto it = rate_.find(id);
    if (it == rate_.end()) continue;
    const double est = std::max(it->second, options_.min_rate_rps);
    if (est < options_.low_watermark * planned || est > options_.high_watermark * planned)
      return true;
  }
  return false;
}

std::vector<Session> Scheduler::current_sessions(Plan& plan) const {
  std::vector<Session> out;
  for (const auto& [id, s] : sessions_) {
    Session c = s;
    c.rate_rps = std::max(rate_.at(id), options_.min_rate_rps);
    out.push_back(c);
  }
  QueryPlanner planner(options_.query, options_.packer);
  for (const auto& [id, q] : queries_) {
    QuerySpec c = q;
    c.rate_rps = std::max(rate_.at(id), options_.min_rate_rps);
    try {
      const QuerySplit split = planner.split(c, profiles_);
      for (const auto& [stage, budget] : split.budgets) plan.stage_budgets[id + "/" + stage] = budget;
      for (auto& s : QueryPlanner::sessions(c, split)) out.push_back(std::move(s));
    } catch (const InfeasibleSlo& e) {
      plan.rejected.push_back({id, e.what(), e.required_slo});
    }
  }
  return out;
}

const Plan& Scheduler::replan(std::chrono::microseconds now) {
  Plan next;
  const std::vector<Session> sessions = current_sessions(next);
  auto budgets = std::move(next.stage_budgets);
  auto rejected = std::move(next.rejected);
  if (options_.planner) {
    next = options_.planner(sessions, has_plan_ ? &plan_ : nullptr);
  } else {
    std::set<std::string> running;
    if (has_plan_)
      for (const auto& [id, table] : plan_.routes)
        if (!table.empty()) running.insert(id);
    next = admit_and_pack(sessions, profiles_, options_.packer, running);
  }
  for (auto& [k, v] : budgets) next.stage_budgets.emplace(k, v);
  next.rejected.insert(next.rejected.begin(), rejected.begin(), rejected.end());
  std::optional<Plan> kept = has_plan_ && !fresh_ ? keep_previous(sessions, next) : std::nullopt;
  fresh_ = false;
  ++replans_;
  if (kept) {
    moved_ = 0;
    ++kept_count_;
    plan_ = std::move(*kept);
  } else {
    moved_ = has_plan_ && options_.stabilize ? stabilize_gpu_numbering(plan_, next) : 0;
    plan_ = std::move(next);
  }
  planned_rate_.clear();
  for (const auto& [id, r] : rate_) planned_rate_[id] = std::max(r, options_.min_rate_rps);
  has_plan_ = true;
  dirty_ = false;
  last_plan_ = now;
  return plan_;
}

std::optional<Plan> Scheduler::keep_previous(const std::vector<Session>& sessions,
                                             const Plan& next) const {
  // Keep the running plan when the fresh one saves no GPU and the running one still serves
  // every session (same sessions and SLOs, no new rejections, capacity b/d ≥ the new rate):
  // nothing moves. The rates it routes are rescaled to the new estimates.
  if (next.num_gpus() < plan_.num_gpus() || next.rejected.size() != plan_.rejected.size())
    return std::nullopt;
  std::map<std::string, const Session*> by_id;
  for (const auto& s : sessions) by_id[s.id] = &s;
  std::map<std::string, double> capacity, old_rate;
  for (const auto& g : plan_.gpus)
    for (const auto& a : g.sessions) {
      auto it = by_id.find(a.session);
      if (it == by_id.end() || it->second->slo != a.slo) return std::nullopt;
      capacity[a.session] += double(a.batch) * 1e6 / double(g.duty_cycle.count());
      old_rate[a.session] += a.rate_rps;
    }
  for (const auto& s : sessions) {
    const bool rejected_now = std::any_of(next.rejected.begin(), next.rejected.end(),
                                          [&](const Rejection& r) { return r.session == s.id; });
    if (rejected_now) continue;
    if (!capacity.count(s.id) || capacity[s.id] < s.rate_rps) return std::nullopt;
  }
  Plan kept = plan_;
  for (auto& g : kept.gpus)
    for (auto& a : g.sessions) {
      const double cap = double(a.batch) * 1e6 / double(g.duty_cycle.count());
      const double scaled = a.rate_rps * by_id.at(a.session)->rate_rps / old_rate.at(a.session);
      a.rate_rps = std::min(cap, scaled);
    }
  // Shares capped at a GPU's capacity may now sum below the rate: top up where room is left.
  for (const auto& s : sessions) {
    if (!capacity.count(s.id)) continue;
    double missing = s.rate_rps - [&] {
      double r = 0;
      for (const auto& g : kept.gpus)
        for (const auto& a : g.sessions)
          if (a.session == s.id) r += a.rate_rps;
      return r;
    }();
    for (auto& g : kept.gpus)
      for (auto& a : g.sessions) {
        if (a.session != s.id || missing <= 0) continue;
        const double room = double(a.batch) * 1e6 / double(g.duty_cycle.count()) - a.rate_rps;
        const double add = std::min(room, missing);
        a.rate_rps += add;
        missing -= add;
      }
  }
  kept.rebuild_routes();
  kept.lower_bound_gpus = next.lower_bound_gpus;
  kept.stage_budgets = next.stage_budgets;
  kept.rejected = next.rejected;
  return kept;
}

std::optional<Plan> Scheduler::tick(std::chrono::microseconds now) {
  if (!replan_due(now)) return std::nullopt;
  return replan(now);
}

int stabilize_gpu_numbering(const Plan& prev, Plan& next) {
  const int n_old = prev.num_gpus(), n_new = next.num_gpus();
  const int n_cmp = std::min(n_old, n_new);
  // overlap(old g, new h) = Σ over shared sessions of min(rate_old, rate_new), summed in the
  // order (h's sessions, then g's) of a direct double loop, but visiting only the old slots that
  // share a session with h: O(pairs that overlap), not O(GPUs² · sessions²) string compares.
  std::unordered_map<std::string_view, std::vector<std::pair<int, double>>> old_slots;
  for (int g = 0; g < n_cmp; ++g)
    for (const auto& b : prev.gpus[static_cast<std::size_t>(g)].sessions)
      old_slots[b.session].emplace_back(g, b.rate_rps);
  std::vector<std::tuple<double, int, int>> pairs;
  std::vector<double> ov(static_cast<std::size_t>(n_cmp), 0.0);
  std::vector<char> seen(static_cast<std::size_t>(n_cmp), 0);
  std::vector<int> touched;
  for (int h = 0; h < n_new; ++h) {
    for (const auto& a : next.gpus[static_cast<std::size_t>(h)].sessions) {
      auto it = old_slots.find(a.session);
      if (it == old_slots.end()) continue;
      for (const auto& [g, rate] : it->second) {
        const auto gi = static_cast<std::size_t>(g);
        if (!seen[gi]) {
          seen[gi] = 1;
          touched.push_back(g);
        }
        ov[gi] += std::min(a.rate_rps, rate);
      }
    }
    for (int g : touched) {
      const auto gi = static_cast<std::size_t>(g);
      if (ov[gi] > 0) pairs.emplace_back(-ov[gi], h, g);
      ov[gi] = 0.0;
      seen[gi] = 0;
    }
    touched.clear();
  }
  std::sort(pairs.begin(), pairs.end());  // largest overlap first; ties by index
  std::vector<int> slot(n_new, -1);
  std::vector<bool> taken(n_new, false);
  for (auto [neg, h, g] : pairs) {
    if (slot[h] >= 0 || taken[g]) continue;
    slot[h] = g;
    taken[g] = true;
  }
  int free_slot = 0;
  for (int h = 0; h < n_new; ++h) {
    if (slot[h] >= 0) continue;
    while (taken[free_slot]) ++free_slot;
    slot[h] = free_slot;
    taken[free_slot] = true;
  }
  std::vector<GpuPlan> gpus(n_new);
  for (int h = 0; h < n_new; ++h) {
    gpus[slot[h]] = std::move(next.gpus[h]);
    gpus[slot[h]].gpu = slot[h];
  }
  next.gpus = std::move(gpus);
  next.rebuild_routes();
  // A session moved if the set of slots serving it changed.
  std::map<std::string, std::set<int>> before, after;
  for (const auto& g : prev.gpus)
    for (const auto& a : g.sessions) before[a.session].insert(g.gpu);
  for (const auto& g : next.gpus)
    for (const auto& a : g.sessions) after[a.session].insert(g.gpu);
  std::set<std::string> ids;
  for (const auto& [id, s] : before) ids.insert(id);
  for (const auto& [id, s] : after) ids.insert(id);
  int moved = 0;
  for (const auto& id : ids)
    if (before[id] != after[id]) ++moved;
  return moved;
}

}  // namespace nexus
