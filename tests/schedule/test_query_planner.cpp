// QueryPlanner: hand-solved chains, forks and DAGs (objective and the slack-spreading read-back
// of the budgets), brute force over the budget grid for random trees and for the layered DAG
// fallback, and every structural error.

#include <catch2/catch.hpp>

#include <functional>
#include <limits>
#include <random>

#include "helpers.hpp"
#include "nexus/core/error.hpp"
#include "nexus/schedule/query_planner.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

ProfileMap chain_profiles() {
  ProfileMap p;
  // X: ℓ = 10, 15, 20, 25 ms → T = 100, 133.3, 150, 160 req/s.
  p.emplace("X", BatchProfile("X", "gpu", {1, 2, 3, 4}, {10000, 15000, 20000, 25000}));
  // Y: ℓ = 20, 30, 40, 50 ms → T = 50, 66.7, 75, 80 req/s.
  p.emplace("Y", BatchProfile("Y", "gpu", {1, 2, 3, 4}, {20000, 30000, 40000, 50000}));
  return p;
}

QuerySpec chain(double fanout) {
  QuerySpec q;
  q.id = "q";
  q.slo = 100ms;
  q.rate_rps = 100;
  q.stages = {{"x", "X", {{"y", fanout}}}, {"y", "Y", {}}};
  return q;
}

// Independent reference: R / (best b/ℓ(b) with 2ℓ(b) ≤ budget), scanning the profile directly.
double stage_cost(const BatchProfile& p, double rate, std::int64_t budget_us) {
  double best = 0;
  for (int b = 1; b <= p.max_batch(); ++b)
    if (2 * p.latency(b).count() <= budget_us) best = std::max(best, p.throughput(b));
  return best > 0 ? rate / best : std::numeric_limits<double>::infinity();
}

}  // namespace

TEST_CASE("hand-solved chain X → Y (γ = 3), SLO 100 ms in 10 ms steps", "[query][known]") {
  // Rates: X 100, Y 300. Costs: X(20) = 1, X(30) = 0.75, X(40) = 0.667, X(≥50) = 0.625;
  // Y(40..50) = 6, Y(60..70) = 4.5, Y(80..90) = 4, Y(100) = 3.75.
  // Splits: 20/80 → 5.0; 30/70 → 5.25; 40/60 → 5.167; 50/50 → 6.625. Best: X 20 ms, Y 80 ms.
  QueryPlanner planner({10});
  const auto split = planner.split(chain(3), chain_profiles());
  CHECK(split.gpus == Approx(5.0));
  CHECK(split.budgets.at("x") == 20ms);
  CHECK(split.budgets.at("y") == 80ms);
  CHECK(split.rates.at("y") == Approx(300));
  CHECK_FALSE(split.layered);
  // With γ = 0.1 (a filter) Y's rate is 10 and X gets more of the budget:
  // 20/80 → 1 + 0.133; 30/70 → 0.75 + 0.15; 40/60 → 0.667 + 0.15 = 0.8167; 50/50 → 0.625 + 0.2.
  const auto filter = planner.split(chain(0.1), chain_profiles());
  CHECK(filter.gpus == Approx(2.0 / 3 + 0.15));
  CHECK(filter.budgets.at("x") == 40ms);
  CHECK(filter.budgets.at("y") == 60ms);
  const auto sessions = QueryPlanner::sessions(chain(3), split);
  REQUIRE(sessions.size() == 2);
  CHECK(sessions[1].id == "q/y");
  CHECK(sessions[1].slo == 80ms);
  CHECK(sessions[1].rate_rps == Approx(300));
}

TEST_CASE("slack is spread: minimal budgets scaled by SLO / longest path, leaves keep the rest",
          "[query][known][slack]") {
  QueryPlanner planner({20});  // 10 ms steps at SLO 200 ms
  // Chain X → Y (γ = 3), SLO 200 ms. Cheapest: X ≥ 50 ms (b = 4, 0.625) + Y ≥ 100 ms (b = 4,
  // 300/80 = 3.75) = 4.375; the DP picks X 50 ms and used to give Y the other 150 ms.
  // Minimal budgets at those costs: X 2·25 = 50 ms, Y 2·50 = 100 ms → L = 150 ms.
  // X = ⌊50000 · 200000 / 150000⌋ = 66666 µs; Y (leaf) = 200000 − 66666 = 133334 µs.
  QuerySpec q = chain(3);
  q.slo = 200ms;
  auto s = planner.split(q, chain_profiles());
  CHECK(s.gpus == Approx(0.625 + 3.75));
  CHECK(s.budgets.at("x").count() == 66666);
  CHECK(s.budgets.at("y").count() == 133334);

  // Fork x → {y (γ = 3), z (model X, γ = 1)}, SLO 200 ms. Cheapest: x 0.625 + y 3.75 + z 0.625
  // = 5.0 (x ≥ 50, y ≥ 100, z ≥ 50 ms; the DP used to give x 50 ms and y, z 150 ms each).
  // L = max(50 + 100, 50 + 50) = 150 ms → x = 66666 µs; y = z = 200000 − 66666 = 133334 µs
  // (z's path is shorter than L, so its leaf keeps the extra rather than being scaled to 66666).
  q.stages = {{"x", "X", {{"y", 3}, {"z", 1}}}, {"y", "Y", {}}, {"z", "X", {}}};
  s = planner.split(q, chain_profiles());
  CHECK(s.gpus == Approx(5.0));
  CHECK(s.budgets.at("x").count() == 66666);
  CHECK(s.budgets.at("y").count() == 133334);
  CHECK(s.budgets.at("z").count() == 133334);

  // Chain a (X) → b (X) → c (Y), γ = 1, SLO 300 ms in 10 ms steps. Cheapest: 0.625 + 0.625 +
  // 100/80 = 2.5 at a, b ≥ 50 and c ≥ 100 ms → L = 200 ms, scale 1.5: a = b = 75 ms, c = 150 ms.
  q.slo = 300ms;
  q.stages = {{"a", "X", {{"b", 1}}}, {"b", "X", {{"c", 1}}}, {"c", "Y", {}}};
  s = QueryPlanner({30}).split(q, chain_profiles());
  CHECK(s.gpus == Approx(2.5));
  CHECK(s.budgets.at("a") == 75ms);
  CHECK(s.budgets.at("b") == 75ms);
  CHECK(s.budgets.at("c") == 150ms);

  // A cheap detector D (peak 5333 req/s at b = 4, 2ℓ = 1.5 ms) before a classifier C (peak
  // 400 req/s at b = 4, 2ℓ = 20 ms), γ = 2, SLO 100 ms in 0.5 ms steps. Cheapest: D ≥ 1.5 ms
  // (100 / 5333.3 = 0.01875) + C ≥ 20 ms (200 / 400 = 0.5); the DP's argmin gave D 1.5 ms.
  // L = 21.5 ms → D = ⌊1500 · 100000 / 21500⌋ = 6976 µs, C = 100000 − 6976 = 93024 µs.
  // That is the exact DP's split (slack_tolerance 0: the headroom rule off). With the rule (2%):
  // D 1.5 ms and C 98.5 ms is only one of many splits of exactly the minimal cost (any D ≥ 1.5 ms
  // with C ≥ 20 ms), and the rule takes the one with the largest min budget / 2ℓ(1) (D 1 ms, C
  // 10 ms): ρ = 9.05 (D ≥ 9.05 → 9.5 ms on the 0.5 ms grid, C ≥ 90.5 ms, 100 ms in all; ρ = 9.1
  // needs 9.5 + 91 > 100). Read-back floors D max(1.5, 9.05) = 9.05 ms, C max(20, 90.5) = 90.5 ms
  // → L = 99.55 ms: D = ⌊9050 · 100000 / 99550⌋ = 9090 µs, C = 100000 − 9090 = 90910 µs.
  ProfileMap dc;
  dc.emplace("D", BatchProfile("D", "gpu", {1, 2, 4}, {500, 600, 750}));
  dc.emplace("C", BatchProfile("C", "gpu", {1, 2, 4}, {5000, 7000, 10000}));
  q.slo = 100ms;
  q.stages = {{"d", "D", {{"c", 2}}}, {"c", "C", {}}};
  s = QueryPlanner({200, 0.0}).split(q, dc);
  CHECK(s.gpus == Approx(100.0 / (4e6 / 750) + 0.5));
  CHECK(s.budgets.at("d").count() == 6976);
  CHECK(s.budgets.at("c").count() == 93024);
  s = QueryPlanner({200, 0.02}).split(q, dc);
  CHECK(s.gpus == Approx(100.0 / (4e6 / 750) + 0.5));
  CHECK(s.gpus_min == Approx(s.gpus));
  CHECK(s.slack_ratio == Approx(9.05));
  CHECK(s.budgets.at("d").count() == 9090);
  CHECK(s.budgets.at("c").count() == 90910);
}

TEST_CASE("headroom rule: a nearly free stage gets more than its minimum at ~the same GPUs",
          "[query][known][slack]") {
  // A cheap detector D' (only b = 1: ℓ = 5 ms, T = 200 req/s, 2ℓ(1) = 10 ms) before a classifier
  // C' (ℓ = 20, 30, 44 ms at b = 1, 2, 3: T = 50, 66.67, 68.18 req/s; 2ℓ = 40, 60, 88 ms), γ = 1,
  // 100 req/s, SLO 100 ms in 10 ms steps. Costs: D' 0.5 at any budget ≥ 10 ms; C' 2.0 at 40–50,
  // 1.5 at 60–80, 1.46667 at 90 ms.
  //   exact minimum: D' 10 + C' 90 → 1.96667 (D' at exactly its 2ℓ(1));
  //   D' 20 + C' 80 → 2.0, 1.69% more: ratios 20/10 = 2 and 80/40 = 2 → ρ = 2 (D' 30 + C' 70 has
  //   ρ = 1.75, D' 40 + C' 60 ρ = 1.5).
  // Old read-back (and tolerance < 1.69%): floors D' 10, C' 88 (b = 3) → L = 98 ms, D' =
  // ⌊10000 · 100000 / 98000⌋ = 10204 µs, C' = 89796 µs. New (2%): floors max(10, 2·10) = 20 and
  // max(60, 2·40) = 80 → L = 100 ms: D' 20 ms, C' 80 ms.
  ProfileMap p;
  p.emplace("D", BatchProfile("D", "gpu", {1}, {5000}));
  p.emplace("C", BatchProfile("C", "gpu", {1, 2, 3}, {20000, 30000, 44000}));
  QuerySpec q;
  q.id = "q";
  q.slo = 100ms;
  q.rate_rps = 100;
  q.stages = {{"d", "D", {{"c", 1}}}, {"c", "C", {}}};
  const auto wide = QueryPlanner({10, 0.02}).split(q, p);
  CHECK(wide.gpus_min == Approx(0.5 + 100.0 / (3e6 / 44000)));
  CHECK(wide.gpus == Approx(2.0));
  CHECK(wide.slack_ratio == Approx(2.0));
  CHECK(wide.budgets.at("d") == 20ms);
  CHECK(wide.budgets.at("c") == 80ms);
  CHECK(QueryPlanner().split(q, p).budgets.at("d") == wide.budgets.at("d"));  // the default is 2%
  for (double tolerance : {0.0, 0.01}) {  // no slack within the tolerance: the exact DP's split
    const auto exact = QueryPlanner({10, tolerance}).split(q, p);
    CHECK(exact.gpus == Approx(exact.gpus_min));
    CHECK(exact.gpus_min == Approx(wide.gpus_min));
    CHECK(exact.slack_ratio == Approx(1.0));
    CHECK(exact.budgets.at("d").count() == 10204);
    CHECK(exact.budgets.at("c").count() == 89796);
  }
  CHECK_THROWS_WITH(QueryPlanner({10, -0.1}).split(q, p), Catch::Contains("slack_tolerance"));
}

TEST_CASE("random trees: the DP equals brute force over the budget grid", "[query][property]") {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 60; ++trial) {
    ProfileMap profiles;
    for (int m = 0; m < 3; ++m) {
      const std::string name = "m" + std::to_string(m);
      profiles.emplace(name, random_profile(rng, name, 16));
    }
    const int n = 1 + static_cast<int>(rng() % 4);
    QuerySpec q;
    q.id = "t";
    q.slo = std::chrono::microseconds(60000 + rng() % 300000);
    q.rate_rps = 10 + rng() % 500;
    std::vector<int> parent(n, -1);
    for (int i = 0; i < n; ++i) {
      q.stages.push_back({"s" + std::to_string(i), "m" + std::to_string(rng() % 3), {}});
      if (i > 0) {
        parent[i] = static_cast<int>(rng() % i);
        q.stages[parent[i]].children.push_back({q.stages[i].id, 0.2 + (rng() % 40) / 10.0});
      }
    }
    const int S = 12;
    QueryPlanner planner({S, 0.0});  // the exact DP (ties broken by the headroom rule)
    const auto rates = QueryPlanner::stage_rates(q);
    // Brute force: every assignment of k_i ∈ 1..S with each root-to-leaf path summing ≤ S.
    double best = std::numeric_limits<double>::infinity();
    std::vector<int> k(n, 1);
    std::function<void()> visit;  // called with k holding one assignment
    std::function<void(int)> rec = [&](int i) {
      if (i == n) {
        visit();
        return;
      }
      int used = 0;
      for (int a = parent[i]; a >= 0; a = parent[a]) used += k[a];
      for (int v = 1; v + used <= S; ++v) {
        k[i] = v;
        rec(i + 1);
      }
    };
    visit = [&] {
      double c = 0;
      for (int j = 0; j < n; ++j)
        c += stage_cost(profiles.at(q.stages[j].model), rates.at(q.stages[j].id), q.slo.count() * k[j] / S);
      best = std::min(best, c);
    };
    rec(0);
    INFO("trial " << trial);
    if (best == std::numeric_limits<double>::infinity()) {
      CHECK_THROWS_AS(planner.split(q, profiles), InfeasibleSlo);
      continue;
    }
    const auto split = planner.split(q, profiles);
    CHECK(split.gpus == Approx(best).epsilon(1e-9));
    // The returned budgets achieve the objective (more time never costs more) and every
    // root-to-leaf path sums to exactly the SLO (inner paths to at most it).
    double c = 0;
    for (int j = 0; j < n; ++j) {
      const auto& st = q.stages[j];
      c += stage_cost(profiles.at(st.model), rates.at(st.id), split.budgets.at(st.id).count());
      std::int64_t path = 0;
      for (int a = j; a >= 0; a = parent[a]) path += split.budgets.at(q.stages[a].id).count();
      CHECK(path <= q.slo.count());
      if (st.children.empty()) CHECK(path == q.slo.count());
    }
    CHECK(c <= best * (1 + 1e-9));

    // Headroom rule at 2%: brute force the largest min_j budget_j / 2ℓ_j(1) over the grid splits
    // that cost ≤ 1.02 · best; the planner's ρ equals it and every returned budget is ≥ ρ · 2ℓ(1).
    const double tol = 0.02;
    double rho_bf = 0;
    visit = [&] {
      double cc = 0, r = std::numeric_limits<double>::infinity();
      for (int j = 0; j < n; ++j) {
        const auto& pr = profiles.at(q.stages[j].model);
        const std::int64_t us = q.slo.count() * k[j] / S;
        cc += stage_cost(pr, rates.at(q.stages[j].id), us);
        r = std::min(r, double(us) / double(2 * pr.latency(1).count()));
      }
      if (cc <= best * (1 + tol + 1e-9)) rho_bf = std::max(rho_bf, r);
    };
    rec(0);
    const auto wide = QueryPlanner({S, tol}).split(q, profiles);
    CHECK(wide.gpus_min == Approx(best).epsilon(1e-9));
    CHECK(wide.gpus <= best * (1 + tol + 1e-9));
    CHECK(wide.slack_ratio == Approx(rho_bf).epsilon(1e-12));
    CHECK(wide.slack_ratio >= split.slack_ratio);
    double cw = 0;
    for (int j = 0; j < n; ++j) {
      const auto& st = q.stages[j];
      const auto us = wide.budgets.at(st.id).count();
      cw += stage_cost(profiles.at(st.model), rates.at(st.id), us);
      CHECK(double(us) >= rho_bf * 2 * profiles.at(st.model).latency(1).count() - 1e-6);
      std::int64_t path = 0;
      for (int a = j; a >= 0; a = parent[a]) path += wide.budgets.at(q.stages[a].id).count();
      CHECK(path <= q.slo.count());
      if (st.children.empty()) CHECK(path == q.slo.count());
    }
    CHECK(cw <= wide.gpus * (1 + 1e-9));
  }
}

TEST_CASE("DAG with a join: layered fallback, same budget per layer", "[query][dag]") {
  // x → {y, z} → w. w's rate adds both parents: 100·2·1 + 100·1·0.5 = 250.
  ProfileMap p = chain_profiles();
  QuerySpec q;
  q.id = "d";
  q.slo = 150ms;
  q.rate_rps = 100;
  q.stages = {{"x", "X", {{"y", 2}, {"z", 1}}},
              {"y", "Y", {{"w", 1}}},
              {"z", "X", {{"w", 0.5}}},
              {"w", "X", {}}};
  const auto rates = QueryPlanner::stage_rates(q);
  CHECK(rates.at("w") == Approx(250));
  const int S = 15;
  const auto split = QueryPlanner({S}).split(q, p);
  CHECK(split.layered);
  CHECK(split.budgets.at("y") == split.budgets.at("z"));
  // The last layer keeps what the first two leave: the longest path sums to exactly the SLO.
  CHECK(split.budgets.at("x") + split.budgets.at("y") + split.budgets.at("w") == q.slo);
  double at_budgets = 0;
  for (const auto& st : q.stages)
    at_budgets += stage_cost(p.at(st.model), rates.at(st.id), split.budgets.at(st.id).count());
  // Brute force over the three layer budgets.
  double best = std::numeric_limits<double>::infinity();
  for (int a = 1; a <= S; ++a)
    for (int b = 1; a + b <= S; ++b)
      for (int c = 1; a + b + c <= S; ++c) {
        auto us = [&](int k) { return q.slo.count() * k / S; };
        const double v = stage_cost(p.at("X"), 100, us(a)) + stage_cost(p.at("Y"), 200, us(b)) +
                         stage_cost(p.at("X"), 100, us(b)) + stage_cost(p.at("X"), 250, us(c));
        best = std::min(best, v);
      }
  CHECK(split.gpus_min == Approx(best));
  CHECK(split.gpus <= best * (1 + 0.02 + 1e-9));
  CHECK(at_budgets <= split.gpus * (1 + 1e-9));
  // Headroom rule per layer (2%): the largest min over layers of budget / n_i, n_i = the largest
  // 2ℓ(1) in the layer (X 20 ms, Y 40 ms: n = 20, 40, 20), over the layer splits within 2%.
  double rho = 0;
  for (int a = 1; a <= S; ++a)
    for (int b = 1; a + b <= S; ++b)
      for (int c = 1; a + b + c <= S; ++c) {
        auto us = [&](int k) { return double(q.slo.count() * k / S); };
        const double v = stage_cost(p.at("X"), 100, us(a)) + stage_cost(p.at("Y"), 200, us(b)) +
                         stage_cost(p.at("X"), 100, us(b)) + stage_cost(p.at("X"), 250, us(c));
        if (v <= best * (1 + 0.02 + 1e-9))
          rho = std::max(rho, std::min({us(a) / 20000, us(b) / 40000, us(c) / 20000}));
      }
  CHECK(split.slack_ratio == Approx(rho));
  CHECK(split.budgets.at("x").count() >= rho * 20000);
  CHECK(split.budgets.at("y").count() >= rho * 40000);
  CHECK(split.budgets.at("w").count() >= rho * 20000);
  // The layered DP without the rule is the exact minimum.
  CHECK(QueryPlanner({S, 0.0}).split(q, p).gpus == Approx(best));
}

TEST_CASE("layered fallback spreads the slack by layer; a shallow leaf keeps the rest",
          "[query][dag][slack]") {
  // x → {y (Y, γ 2), z (X, γ 1), v (X, γ 1)}, y → w (γ 1), z → w (γ 0.5); SLO 300 ms, 10 ms steps.
  // Rates: x 100, y 200, z 100, v 100, w 250. Layers: {x}, {y, z, v}, {w}.
  // Cheapest: x ≥ 50 ms (0.625); layer 1 ≥ 100 ms (y 200/80 = 2.5, z 0.625, v 0.625);
  // w ≥ 50 ms (250/160 = 1.5625) → 5.9375, with 100 ms to spare.
  // Layer minima 50, max(100, 50, 50) = 100, 50 → Σ = 200 ms, scale 1.5: x 75 ms,
  // y = z = 150 ms, w (last layer) = 300 − 225 = 75 ms, and v, a leaf at depth 1, keeps
  // 300 − 75 = 225 ms (every path through v crosses only layer 0 before it).
  QuerySpec q;
  q.id = "d";
  q.slo = 300ms;
  q.rate_rps = 100;
  q.stages = {{"x", "X", {{"y", 2}, {"z", 1}, {"v", 1}}},
              {"y", "Y", {{"w", 1}}},
              {"z", "X", {{"w", 0.5}}},
              {"v", "X", {}},
              {"w", "X", {}}};
  const auto s = QueryPlanner({30}).split(q, chain_profiles());
  CHECK(s.layered);
  CHECK(s.gpus == Approx(0.625 + 2.5 + 0.625 + 0.625 + 1.5625));
  CHECK(s.budgets.at("x") == 75ms);
  CHECK(s.budgets.at("y") == 150ms);
  CHECK(s.budgets.at("z") == 150ms);
  CHECK(s.budgets.at("w") == 75ms);
  CHECK(s.budgets.at("v") == 225ms);
}

TEST_CASE("bad query graphs: clear errors naming the query and stage", "[query][errors]") {
  const auto p = chain_profiles();
  QueryPlanner planner;
  QuerySpec q = chain(1);
  q.stages[1].children.push_back({"x", 1});  // y → x: a cycle, and no root
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("cycle") && Catch::Contains("'q'"));
  q = chain(1);
  q.stages.push_back({"z", "X", {}});  // a second root
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("exactly one root") && Catch::Contains("z"));
  q = chain(1);
  q.stages[0].children.push_back({"nope", 1});
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("unknown stage 'nope'"));
  q = chain(1);
  q.stages[1].model = "missing";
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("'missing'") && Catch::Contains("'y'"));
  q = chain(0);
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("fan-out"));
  q = chain(1);
  q.rate_rps = 0;
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("rate"));
  q = chain(1);
  q.slo = 0ms;
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("SLO"));
  q = chain(1);
  q.stages[1].id = "x";
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("duplicate stage id 'x'"));
  q = chain(1);
  q.stages[0].children[0].stage = "x";
  CHECK_THROWS_WITH(planner.split(q, p), Catch::Contains("itself"));
}

TEST_CASE("an SLO no split meets: InfeasibleSlo with the SLO needed", "[query][errors]") {
  // Tightest path: X needs 2·10 ms, Y 2·20 ms → 60 ms.
  QuerySpec q = chain(1);
  q.slo = 50ms;
  try {
    QueryPlanner({10}).split(q, chain_profiles());
    FAIL("expected InfeasibleSlo");
  } catch (const InfeasibleSlo& e) {
    CHECK(e.required_slo == 60ms);
    CHECK_THAT(std::string(e.what()), Catch::Contains("60.000 ms") && Catch::Contains("'q'"));
  }
  q.slo = 60ms;
  CHECK(QueryPlanner({6}).split(q, chain_profiles()).budgets.at("x") == 20ms);
}
