// Scheduler (epoch loop): EWMA, epoch and early triggers, stable GPU numbering, queries and
// rejections; plus the workload parser behind nexus-plan.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "nexus/core/error.hpp"
#include "nexus/schedule/scheduler.hpp"
#include "nexus/schedule/workload.hpp"

using namespace nexus;
using namespace nexus::test;

TEST_CASE("EWMA of observed rates", "[scheduler]") {
  Scheduler s(lecture_profiles());
  s.add_session(session("A", "A", 200, 100));
  s.observe("A", 200);  // 0.3·200 + 0.7·100 = 130
  CHECK(s.estimated_rate("A") == Approx(130));
  s.observe("A", 0);    // 0.7·130 = 91
  CHECK(s.estimated_rate("A") == Approx(91));
  CHECK_THROWS_WITH(s.observe("nope", 1), Catch::Contains("'nope'"));
  CHECK_THROWS_AS(s.observe("A", -1), Error);
}

TEST_CASE("epochs: every 30 s, early when a rate leaves [0.8, 1.1], never before 10 s",
          "[scheduler]") {
  Scheduler s(lecture_profiles());
  s.add_session(session("A", "A", 200, 64));
  s.add_session(session("B", "B", 250, 32));
  CHECK(s.replan_due(0s));
  CHECK(s.tick(0s).has_value());
  CHECK_FALSE(s.replan_due(5s));
  s.observe("A", 64 * 1.05);  // within the watermarks
  CHECK_FALSE(s.replan_due(15s));
  CHECK(s.replan_due(30s));  // the regular epoch
  for (int i = 0; i < 5; ++i) s.observe("A", 200);  // A triples
  CHECK_FALSE(s.replan_due(9s));  // minimum epoch
  CHECK(s.replan_due(10s));
  const auto plan = s.tick(10s);
  REQUIRE(plan.has_value());
  CHECK(plan->planned_rate("A") == Approx(s.estimated_rate("A")));
  CHECK_FALSE(s.replan_due(12s));
  s.add_session(session("C", "C", 250, 32));  // a new session re-plans at once
  CHECK(s.replan_due(12s));
}

TEST_CASE("scheduler options are validated", "[scheduler][errors]") {
  SchedulerOptions o;
  o.epoch = 20s;
  o.min_epoch = 25s;
  CHECK_THROWS_WITH(Scheduler(lecture_profiles(), o), Catch::Contains("minimum epoch"));
  o = {};
  o.min_epoch = 0s;
  CHECK_THROWS_WITH(Scheduler(lecture_profiles(), o), Catch::Contains("minimum epoch must be > 0"));
  o.min_epoch = 2s;  // as given (virtual-time engines use short epochs)
  Scheduler s(lecture_profiles(), o);
  s.add_session(session("A", "A", 200, 64));
  s.replan(0s);
  for (int i = 0; i < 10; ++i) s.observe("A", 500);
  CHECK_FALSE(s.replan_due(1s));
  CHECK(s.replan_due(2s));
}

TEST_CASE("bad sessions and queries are refused at declaration", "[scheduler][errors]") {
  Scheduler s(lecture_profiles());
  CHECK_THROWS_WITH(s.add_session(session("x", "nope", 100, 5)), Catch::Contains("'nope'"));
  CHECK_THROWS_WITH(s.add_session(session("x", "A", 100, 0)), Catch::Contains("rate"));
  s.add_session(session("x", "A", 100, 5));
  CHECK_THROWS_WITH(s.add_session(session("x", "A", 100, 5)), Catch::Contains("duplicate"));
  QuerySpec q{"q", 300ms, 10, {{"a", "A", {{"b", 1}}}, {"b", "B", {{"a", 1}}}}};
  CHECK_THROWS_WITH(s.add_query(q), Catch::Contains("cycle"));
  CHECK_THROWS_WITH(s.remove("zzz"), Catch::Contains("'zzz'"));
}

TEST_CASE("stabilize_gpu_numbering restores slots of a permuted plan", "[scheduler]") {
  Plan prev;
  for (int g = 0; g < 3; ++g) {
    GpuPlan gp;
    gp.gpu = g;
    gp.sessions.push_back({"s" + std::to_string(g), "A", 4, 50ms, 10.0, 200ms});
    prev.gpus.push_back(gp);
  }
  Plan next = prev;
  std::swap(next.gpus[0], next.gpus[2]);
  for (int g = 0; g < 3; ++g) next.gpus[g].gpu = g;
  CHECK(stabilize_gpu_numbering(prev, next) == 0);
  for (int g = 0; g < 3; ++g) CHECK(next.gpus[g].sessions[0].session == "s" + std::to_string(g));
  // A new GPU takes a fresh slot; a session that really moved is counted.
  Plan grown = prev;
  grown.gpus.push_back(grown.gpus[1]);
  grown.gpus[3].sessions[0].session = "s9";
  std::swap(grown.gpus[0].sessions[0].session, grown.gpus[3].sessions[0].session);  // s0 ↔ s9
  for (int g = 0; g < 4; ++g) grown.gpus[g].gpu = g;
  // s0 now sits on the fourth GPU; matching gives that GPU slot 0 again and s9 the new slot 3,
  // so only s9 (new) counts as moved.
  const int moved = stabilize_gpu_numbering(prev, grown);
  CHECK(moved == 1);
  CHECK(grown.gpus[0].sessions[0].session == "s0");
  CHECK(grown.gpus[3].sessions[0].session == "s9");
  CHECK(grown.gpus[1].sessions[0].session == "s1");
  CHECK(grown.gpus[2].sessions[0].session == "s2");
}

TEST_CASE("re-planning with small rate changes moves few sessions", "[scheduler]") {
  std::mt19937_64 rng(3);
  ProfileMap profiles;
  for (int m = 0; m < 5; ++m) {
    const std::string name = "m" + std::to_string(m);
    profiles.emplace(name, random_profile(rng, name, 32));
  }
  Scheduler s(profiles);
  for (int i = 0; i < 40; ++i)
    s.add_session(session("s" + std::to_string(i), "m" + std::to_string(i % 5), 100 + 10 * (i % 20),
                          20 + 37 * i));
  s.replan(0s);
  const auto before = s.plan();
  for (int i = 0; i < 40; ++i) s.observe("s" + std::to_string(i), (20 + 37 * i) * (i == 7 ? 1.5 : 1.0));
  s.replan(30s);
  // Only sessions whose packing changed may move; with one rate changed most keep their GPUs.
  CHECK(s.moved_sessions() < 20);
  CHECK(s.plan().num_gpus() >= before.num_gpus() - 1);
}

TEST_CASE("queries in the scheduler: stage budgets, infeasible queries rejected", "[scheduler]") {
  Scheduler s(lecture_profiles());
  s.add_session(session("solo", "C", 250, 32));
  s.add_query({"ok", 500ms, 20, {{"a", "A", {{"b", 2}}}, {"b", "B", {}}}});
  s.add_query({"tight", 150ms, 20, {{"a", "A", {{"b", 2}}}, {"b", "B", {}}}});  // needs 200 ms
  const Plan& plan = s.replan(0s);
  CHECK(plan.stage_budgets.count("ok/a"));
  CHECK(plan.stage_budgets.at("ok/a") + plan.stage_budgets.at("ok/b") <= 500ms);
  CHECK(plan.planned_rate("ok/b") == Approx(40));
  REQUIRE(plan.rejected.size() == 1);
  CHECK(plan.rejected[0].session == "tight");
  CHECK(plan.rejected[0].required_slo == 200ms);
  CHECK(plan.planned_rate("solo") == Approx(32));
}

TEST_CASE("workload JSON: parsing, planning and errors naming the item", "[workload]") {
  const auto profiles = lecture_profiles();
  auto j = nlohmann::json::parse(R"({
    "sessions": [{"id": "A", "model": "A", "slo_ms": 200, "rate_rps": 64},
                 {"id": "B", "model": "B", "slo_ms": 250, "rate_rps": 32},
                 {"id": "C", "model": "C", "slo_ms": 250, "rate_rps": 32},
                 {"id": "T", "model": "A", "slo_ms": 50, "rate_rps": 5}],
    "queries": [{"id": "q", "slo_ms": 400, "rate_rps": 10,
                 "stages": [{"id": "det", "model": "A", "children": [{"stage": "rec", "fanout": 3}]},
                            {"id": "rec", "model": "B"}]}]})");
  const Workload w = parse_workload(j);
  CHECK(w.sessions.size() == 4);
  CHECK(w.queries[0].stages[0].children[0].fanout == 3);
  const Plan plan = plan_workload(w, profiles);
  REQUIRE(plan.rejected.size() == 1);
  CHECK(plan.rejected[0].session == "T");
  CHECK(plan.stage_budgets.size() == 2);
  const auto out = plan.to_json();
  CHECK(out["num_gpus"] == plan.num_gpus());
  CHECK(out["gpus"][0].contains("duty_cycle_us"));
  CHECK(out["stage_budgets_ms"].contains("q/det"));
  CHECK(out["rejected"][0]["session"] == "T");

  auto err = [](const std::string& text) {
    try {
      parse_workload(nlohmann::json::parse(text));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_THAT(err(R"({"sessions": [{"id": "x", "model": "A", "slo_ms": 100}]})"),
             Catch::Contains("sessions[0]") && Catch::Contains("rate_rps"));
  CHECK_THAT(err(R"({"sessions": [{"id": "x", "model": "A", "slo_ms": -1, "rate_rps": 3}]})"),
             Catch::Contains("'x'") && Catch::Contains("slo_ms must be > 0"));
  CHECK_THAT(err(R"({"sessions": [{"id": "x", "model": "A", "slo_ms": 10, "rate_rps": "fast"}]})"),
             Catch::Contains("rate_rps must be a number"));
  CHECK_THAT(err(R"({"sessions": {}})"), Catch::Contains("'sessions' must be an array"));
  // Regression (fuzz_workload): rate_rps 2.4e32 overflowed the packer's GPU count (UB).
  CHECK_THAT(err(R"({"sessions": [{"id": "x", "model": "A", "slo_ms": 50, "rate_rps": 2.4e32}]})"),
             Catch::Contains("'x'") && Catch::Contains("rate_rps must be at most"));
  CHECK_THAT(err(R"({"queries": [{"id": "q", "slo_ms": 100, "rate_rps": 1, "stages": [
                 {"id": "a", "model": "A", "children": [{"stage": "b", "fanout": 1e9}]},
                 {"id": "b", "model": "B"}]}]})"),
             Catch::Contains("fanout must be at most"));
  CHECK_THAT(err(R"({"queries": [{"id": "q", "slo_ms": 100, "rate_rps": 1, "stages": [
                 {"id": "a", "model": "A"}, {"id": "b", "model": "B"}]}]})"),
             Catch::Contains("exactly one root"));
  CHECK_THAT(err(R"({"queries": [{"id": "q", "slo_ms": 100, "rate_rps": 1, "stages": [
                 {"id": "a", "model": "A", "children": [{"stage": "b"}]},
                 {"id": "b", "model": "B", "children": [{"stage": "a"}]}]}]})"),
             Catch::Contains("cycle"));
  CHECK_THROWS_WITH(plan_workload(parse_workload(nlohmann::json::parse(
                        R"({"sessions": [{"id": "x", "model": "zzz", "slo_ms": 10, "rate_rps": 3}]})")),
                                  profiles),
                    Catch::Contains("'zzz'"));
  CHECK_THROWS_WITH(load_workload("/nonexistent.json"), Catch::Contains("/nonexistent.json"));
}

TEST_CASE("a re-plan keeps the running plan while it still has the capacity", "[scheduler]") {
  Scheduler s(lecture_profiles());
  s.add_session(session("A", "A", 200, 64));
  s.add_session(session("B", "B", 250, 32));
  s.add_session(session("C", "C", 250, 32));
  const Plan first = s.replan(0s);
  REQUIRE(first.num_gpus() == 2);
  // C's GPU runs batch 5 every 156.25 ms: capacity 32 req/s exactly; A's GPU: A 8/125 ms = 64.
  // A drops to 50 req/s: the fresh packing saves no GPU and the old one still serves → kept.
  for (int i = 0; i < 20; ++i) s.observe("A", 50);
  const Plan& second = s.replan(30s);
  CHECK(s.moved_sessions() == 0);
  CHECK(second.num_gpus() == 2);
  CHECK(second.planned_rate("A") == Approx(s.estimated_rate("A")));
  for (std::size_t g = 0; g < first.gpus.size(); ++g)
    CHECK(second.gpus[g].duty_cycle == first.gpus[g].duty_cycle);
  // A grows beyond its GPU's capacity: a new plan.
  for (int i = 0; i < 20; ++i) s.observe("A", 400);
  const Plan& third = s.replan(60s);
  CHECK(third.planned_rate("A") == Approx(s.estimated_rate("A")));
  CHECK(third.num_gpus() > 2);
  std::vector<Session> now;
  for (const char* id : {"A", "B", "C"}) {
    const auto* m = id == std::string("A") ? "A" : id;
    now.push_back(session(id, m, id == std::string("A") ? 200 : 250, s.estimated_rate(id)));
  }
  CHECK(validate_plan(third, now, lecture_profiles(), {}).empty());
}

TEST_CASE("property: every epoch's plan is valid for the estimated rates", "[scheduler][property]") {
  std::mt19937_64 rng(11);
  ProfileMap profiles;
  for (int m = 0; m < 4; ++m) {
    const std::string name = "m" + std::to_string(m);
    profiles.emplace(name, random_profile(rng, name, 32));
  }
  Scheduler s(profiles);
  std::vector<Session> declared;
  for (int i = 0; i < 25; ++i) {
    declared.push_back(session("s" + std::to_string(i), "m" + std::to_string(i % 4),
                               60 + static_cast<double>(rng() % 300), 5.0 + static_cast<double>(rng() % 400)));
    s.add_session(declared.back());
  }
  std::uniform_real_distribution<double> drift(0.6, 1.5);
  int replans = 0, moved = 0;
  for (int epoch = 0; epoch < 60; ++epoch) {
    const auto now = std::chrono::seconds(10 * epoch);
    for (auto& d : declared) s.observe(d.id, s.estimated_rate(d.id) * drift(rng));
    if (!s.tick(now)) continue;
    ++replans;
    moved += s.moved_sessions();
    std::vector<Session> current = declared;
    for (auto& c : current) c.rate_rps = std::max(1.0, s.estimated_rate(c.id));
    const auto errors = validate_plan(s.plan(), current, profiles, {});
    INFO("epoch " << epoch << ": " << (errors.empty() ? "" : errors.front()));
    REQUIRE(errors.empty());
  }
  CHECK(replans >= 6);
  CHECK(moved < replans * 25);  // far from reshuffling everything every time
}
