// Workload parsing and one-shot planning (nexus-plan).

#include "nexus/schedule/workload.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>

#include "nexus/core/error.hpp"

namespace nexus {

namespace {

using json = nlohmann::json;

const json& need(const json& j, const char* key, const std::string& where) {
  NEXUS_CHECK(j.is_object(), "workload: {} must be a JSON object", where);
  NEXUS_CHECK(j.contains(key), "workload: {} is missing '{}'", where, key);
  return j.at(key);
}

std::string need_string(const json& j, const char* key, const std::string& where) {
  const json& v = need(j, key, where);
  NEXUS_CHECK(v.is_string() && !v.get<std::string>().empty(),
              "workload: {}.{} must be a non-empty string", where, key);
  return v.get<std::string>();
}

// Upper bounds on numbers from a workload file: beyond them the packer's GPU counts overflow or
// it would allocate millions of GPU plans (found by fuzz/fuzz_workload: rate_rps 2.4e32).
constexpr double kMaxRateRps = 1e6;      // per session or query
constexpr double kMaxSloMs = 1e7;        // 2.8 hours
constexpr double kMaxFanout = 1e3;

double need_positive(const json& j, const char* key, const std::string& where, double max) {
  const json& v = need(j, key, where);
  NEXUS_CHECK(v.is_number(), "workload: {}.{} must be a number", where, key);
  const double x = v.get<double>();
  NEXUS_CHECK(std::isfinite(x) && x > 0, "workload: {}.{} must be > 0 (got {})", where, key, x);
  NEXUS_CHECK(x <= max, "workload: {}.{} must be at most {} (got {})", where, key, max, x);
  return x;
}

std::chrono::microseconds ms_to_us(double ms) {
  return std::chrono::microseconds(static_cast<std::int64_t>(std::llround(ms * 1000.0)));
}

}  // namespace

Workload parse_workload(const json& j) {
  NEXUS_CHECK(j.is_object(), "workload: expected a JSON object with 'sessions' and/or 'queries'");
  Workload w;
  std::set<std::string> ids;
  if (j.contains("sessions")) {
    const json& ss = j.at("sessions");
    NEXUS_CHECK(ss.is_array(), "workload: 'sessions' must be an array");
    for (std::size_t i = 0; i < ss.size(); ++i) {
      std::string where = fmt::format("sessions[{}]", i);
      Session s;
      s.id = need_string(ss[i], "id", where);
      where += " ('" + s.id + "')";
      s.model = need_string(ss[i], "model", where);
      s.slo = ms_to_us(need_positive(ss[i], "slo_ms", where, kMaxSloMs));
      s.rate_rps = need_positive(ss[i], "rate_rps", where, kMaxRateRps);
      NEXUS_CHECK(ids.insert(s.id).second, "workload: duplicate id '{}'", s.id);
      w.sessions.push_back(std::move(s));
    }
  }
  if (j.contains("queries")) {
    const json& qs = j.at("queries");
    NEXUS_CHECK(qs.is_array(), "workload: 'queries' must be an array");
    for (std::size_t i = 0; i < qs.size(); ++i) {
      std::string where = fmt::format("queries[{}]", i);
      QuerySpec q;
      q.id = need_string(qs[i], "id", where);
      where += " ('" + q.id + "')";
      q.slo = ms_to_us(need_positive(qs[i], "slo_ms", where, kMaxSloMs));
      q.rate_rps = need_positive(qs[i], "rate_rps", where, kMaxRateRps);
      const json& st = need(qs[i], "stages", where);
      NEXUS_CHECK(st.is_array() && !st.empty(), "workload: {}.stages must be a non-empty array", where);
      for (std::size_t k = 0; k < st.size(); ++k) {
        const std::string sw = fmt::format("{}.stages[{}]", where, k);
        QueryStage stage;
        stage.id = need_string(st[k], "id", sw);
        stage.model = need_string(st[k], "model", sw);
        if (st[k].contains("children")) {
          const json& ch = st[k].at("children");
          NEXUS_CHECK(ch.is_array(), "workload: {}.children must be an array", sw);
          for (std::size_t c = 0; c < ch.size(); ++c) {
            const std::string cw = fmt::format("{}.children[{}]", sw, c);
            QueryEdge e;
            e.stage = need_string(ch[c], "stage", cw);
            if (ch[c].contains("fanout")) e.fanout = need_positive(ch[c], "fanout", cw, kMaxFanout);
            stage.children.push_back(std::move(e));
          }
        }
        q.stages.push_back(std::move(stage));
      }
      NEXUS_CHECK(ids.insert(q.id).second, "workload: duplicate id '{}'", q.id);
      QueryPlanner::stage_rates(q);  // structural checks: unknown stage, cycle, roots
      w.queries.push_back(std::move(q));
    }
  }
  return w;
}

Workload load_workload(const std::string& path) {
  std::ifstream in(path);
  NEXUS_CHECK(in.good(), "workload {}: cannot open file", path);
  json j;
  try {
    in >> j;
  } catch (const json::exception& e) {
    throw_error("workload {}: invalid JSON ({})", path, e.what());
  }
  try {
    return parse_workload(j);
  } catch (const json::exception& e) {
    throw_error("workload {}: malformed ({})", path, e.what());
  }
}

Plan plan_workload(const Workload& w, const ProfileMap& profiles, const PackerOptions& packer,
                   const QueryPlannerOptions& query) {
  std::vector<Session> sessions = w.sessions;
  for (const auto& s : sessions)
    NEXUS_CHECK(profiles.count(s.model), "session '{}': no batching profile for model '{}'", s.id,
                s.model);
  Plan plan;
  std::vector<Rejection> rejected;
  QueryPlanner planner(query, packer);
  for (const auto& q : w.queries) {
    for (const auto& st : q.stages)
      NEXUS_CHECK(profiles.count(st.model),
                  "query '{}': stage '{}' names model '{}' with no batching profile", q.id, st.id,
                  st.model);
    try {
      const QuerySplit split = planner.split(q, profiles);
      for (const auto& [stage, budget] : split.budgets) plan.stage_budgets[q.id + "/" + stage] = budget;
      for (auto& s : QueryPlanner::sessions(q, split)) sessions.push_back(std::move(s));
    } catch (const InfeasibleSlo& e) {
      rejected.push_back({q.id, e.what(), e.required_slo});
    }
  }
  auto budgets = std::move(plan.stage_budgets);
  plan = SquishyBinPacker(packer).pack(sessions, profiles);
  plan.stage_budgets = std::move(budgets);
  plan.rejected.insert(plan.rejected.begin(), rejected.begin(), rejected.end());
  return plan;
}

}  // namespace nexus
