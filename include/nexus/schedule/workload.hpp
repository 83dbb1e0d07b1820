#pragma once
// Workload: the input of nexus-plan, and a one-shot planning function (no epochs) that the tool
// and tests share. JSON:
//   {"sessions": [{"id", "model", "slo_ms", "rate_rps"}],
//    "queries":  [{"id", "slo_ms", "rate_rps",
//                  "stages": [{"id", "model", "children": [{"stage", "fanout"}]}]}]}
// "children" and "fanout" (default 1) are optional; either list may be absent.

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/plan.hpp"
#include "nexus/schedule/query_planner.hpp"
#include "nexus/schedule/session.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

namespace nexus {

struct Workload {
  std::vector<Session> sessions;
  std::vector<QuerySpec> queries;
};

/// Parses the JSON above. Throws nexus::Error naming the item ("sessions[2].slo_ms", the
/// session or query id) and what was expected; non-positive rates or SLOs are errors.
Workload parse_workload(const nlohmann::json& j);
/// Reads a workload file. Throws nexus::Error naming the path on I/O or JSON errors.
Workload load_workload(const std::string& path);

/// Plans a workload once: QueryPlanner for every query, then SquishyBinPacker over all sessions.
/// Structural errors (unknown model, a cycle, two roots, duplicate ids) throw nexus::Error;
/// sessions or queries whose SLO cannot be met are listed in Plan::rejected and the rest is
/// planned.
Plan plan_workload(const Workload& w, const ProfileMap& profiles, const PackerOptions& packer = {},
                   const QueryPlannerOptions& query = {});

}  // namespace nexus
