// The Engine is Nexus by default: squishy bin packing (paper §6.1) over the sessions and the
// QueryPlanner's DP split of each query's SLO (§6.2), checked against the lecture's known plan,
// QueryPlanner::split itself, hand-computed SLO minima, and served traffic in virtual time.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

#include "nexus/runtime/planner.hpp"
#include "nexus/schedule/query_planner.hpp"
#include "sim_helpers.hpp"

using namespace nexus;
using namespace nexus::testing;
using namespace std::chrono_literals;
using runtime::Engine;
using runtime::PlannerKind;
using runtime::QueryResult;
using runtime::Reason;
using runtime::RequestId;
using runtime::RequestStatus;
using runtime::SloSplit;

namespace {

constexpr auto kNoEpoch = std::chrono::microseconds(0);

BatchProfile lecture(const std::string& m) {
  return BatchProfile::load(std::string(NEXUS_SOURCE_DIR) + "/tests/fixtures/profiles/lecture/" + m + ".json");
}

runtime::QuerySpec single(const std::string& name, const std::string& model, std::chrono::microseconds slo,
                          double rate) {
  return {.name = name, .slo = slo, .expected_rate_rps = rate, .stages = {{.name = "s", .model = model}}};
}

// A two-stage query det -> rec: each detection yields `fanout` copies of its output; the
// planner is told `expected` (default: the same).
runtime::QuerySpec two_stage(const std::string& name, std::chrono::microseconds slo, double rate, int fanout,
                             double expected = -1) {
  return {.name = name, .slo = slo, .expected_rate_rps = rate,
          .stages = {{.name = "detect", .model = "det",
                      .children = {{.stage = "recognize",
                                    .fanout = [fanout](const runtime::StageView& v) {
                                      return std::vector<Tensor>(static_cast<std::size_t>(fanout), v.outputs.at(0));
                                    },
                                    .expected_fanout = expected >= 0 ? expected : double(fanout)}}},
                     {.name = "recognize", .model = "rec"}}};
}

// The same query as the QueryPlanner sees it.
nexus::QuerySpec planner_query(const std::string& name, std::chrono::microseconds slo, double rate, double fanout) {
  return {.id = name, .slo = slo, .rate_rps = rate,
          .stages = {{.id = "detect", .model = "det", .children = {{.stage = "recognize", .fanout = fanout}}},
                     {.id = "recognize", .model = "rec"}}};
}

// Submits every (time, query) in time order, then drains; returns all results.
std::vector<QueryResult> serve(SimRig& rig, std::vector<std::pair<TimePoint, std::string>> all,
                               std::vector<RequestId>* ids) {
  std::sort(all.begin(), all.end());
  for (auto& [t, q] : all) {
    rig.engine->run_until(t);
    ids->push_back(rig.engine->submit(q, Tensor()));
  }
  rig.engine->run_until_idle();
  return rig.engine->poll();
}

}  // namespace

TEST_CASE("nexus: the default engine packs the lecture's A/B/C as the squishy plan", "[runtime][nexus]") {
  // Lecture / paper Table 2: A (SLO 200 ms, 64 req/s), B (250 ms, 32), C (250 ms, 32). Squishy
  // bin packing: A at batch 8 (75 ms) and B at batch 4 (50 ms) share one device with duty cycle
  // 8/64 s = 125 ms (occupancy (75 + 50)/125 = 1); C alone at batch 5 (ℓ = 68.75 ms, interpolated;
  // 5/32 s = 156.25 ms). The replicate baseline would put all three on every device instead.
  SimRig rig({.devices = "sim:3", .epoch = kNoEpoch});
  for (const char* m : {"A", "B", "C"}) rig.engine->load_model({.name = m, .profile = lecture(m)});
  rig.engine->add_query(single("qa", "A", 200ms, 64));
  rig.engine->add_query(single("qb", "B", 250ms, 32));
  rig.engine->add_query(single("qc", "C", 250ms, 32));
  const Plan plan = rig.engine->plan();
  REQUIRE(plan.num_gpus() == 2);
  CHECK(plan.rejected.empty());
  const GpuPlan* ab = plan.gpu_of("qa/s");
  const GpuPlan* c = plan.gpu_of("qc/s");
  REQUIRE(ab != nullptr);
  REQUIRE(c != nullptr);
  CHECK(ab == plan.gpu_of("qb/s"));
  CHECK(ab != c);
  CHECK(c->sessions.size() == 1);
  CHECK(ab->duty_cycle == 125000us);
  CHECK(ab->find("qa/s")->batch == 8);
  CHECK(ab->find("qb/s")->batch == 4);
  CHECK(c->find("qc/s")->batch == 5);
  CHECK(c->duty_cycle == 156250us);
  // Single-stage queries: the DP gives the stage the whole SLO.
  CHECK(plan.stage_budgets.at("qa/s") == 200ms);
  CHECK(plan.stage_budgets.at("qc/s") == 250ms);
  // stats() carries the same plan.
  const auto st = rig.engine->stats();
  CHECK(st.plan.num_gpus() == 2);
  CHECK(st.plan.gpu_of("qa/s") != nullptr);
  CHECK(st.plan.gpu_of("qa/s")->gpu == ab->gpu);
  CHECK(st.plan.stage_budgets == plan.stage_budgets);

  // Served at 80% of the planned rates: each session runs only on its planned device, the
  // third device stays idle, and >= 99% of requests meet their SLO.
  std::vector<std::pair<TimePoint, std::string>> all;
  for (auto t : sim::poisson_arrivals(0.8 * 64, 20s, 1)) all.emplace_back(t, "qa");
  for (auto t : sim::poisson_arrivals(0.8 * 32, 20s, 2)) all.emplace_back(t, "qb");
  for (auto t : sim::poisson_arrivals(0.8 * 32, 20s, 3)) all.emplace_back(t, "qc");
  std::vector<RequestId> ids;
  const auto rs = serve(rig, all, &ids);
  CHECK(each_exactly_once(ids, rs));
  CHECK(good_rate(rs) >= 0.99);
  for (const auto& r : rs) {
    if (!r.ok()) continue;
    const int want = r.query == "qc" ? c->gpu : ab->gpu;
    CHECK(r.stages.at(0).device == want);
  }
  const auto st2 = rig.engine->stats();
  const int idle = 3 - ab->gpu - c->gpu;  // slots are 0 and 1 in some order
  CHECK(st2.devices.at(static_cast<std::size_t>(idle)).batches == 0);
  CHECK(st2.sessions.at("qa/s").mean_batch > 1.0);
}

TEST_CASE("nexus: the replicate baseline stays selectable", "[runtime][nexus]") {
  SimRig rig({.devices = "sim:3", .epoch = kNoEpoch, .planner_kind = PlannerKind::kReplicate});
  for (const char* m : {"A", "B", "C"}) rig.engine->load_model({.name = m, .profile = lecture(m)});
  rig.engine->add_query(single("qa", "A", 200ms, 64));
  rig.engine->add_query(single("qb", "B", 250ms, 32));
  rig.engine->add_query(single("qc", "C", 250ms, 32));
  const Plan plan = rig.engine->plan();
  REQUIRE(plan.num_gpus() == 3);
  // Every session on every device at its saturated batch: A 2ℓ(b) <= 200 ms -> b = 16
  // (ℓ(16) = 100 ms); B and C 2ℓ(b) <= 250 ms -> b = 16 (125 ms).
  for (const auto& g : plan.gpus) {
    REQUIRE(g.sessions.size() == 3);
    CHECK(g.find("qa/s")->batch == 16);
    CHECK(g.find("qb/s")->batch == 16);
    CHECK(g.find("qc/s")->batch == 16);
  }
  CHECK(plan.route("qa/s").size() == 3);
}

TEST_CASE("nexus: stage budgets are the QueryPlanner's DP split", "[runtime][nexus]") {
  const auto det = linear_profile("det", 2000, 8000, 16);   // ℓ(b) = 2b + 8 ms
  const auto rec = linear_profile("rec", 500, 2000, 64);    // ℓ(b) = 0.5b + 2 ms
  const ProfileMap profiles{{"det", det}, {"rec", rec}};
  // The exact DP (slo_split_slack_tolerance 0); the default's headroom rule is checked below.
  SimRig rig({.devices = "sim:2", .epoch = kNoEpoch, .slo_split_slack_tolerance = 0.0});
  rig.engine->load_model({.name = "det", .profile = det});
  rig.engine->load_model({.name = "rec", .profile = rec});
  rig.engine->add_query(two_stage("faces", 200ms, 50, 3));
  const QueryPlanner exact({200, 0.0});
  const QuerySplit want = exact.split(planner_query("faces", 200ms, 50, 3), profiles);
  INFO("DP budgets at add_query: detect " << want.budgets.at("detect").count() << " us, recognize "
                                          << want.budgets.at("recognize").count() << " us");
  const Plan plan = rig.engine->plan();
  CHECK(plan.stage_budgets.at("faces/detect") == want.budgets.at("detect"));
  CHECK(plan.stage_budgets.at("faces/recognize") == want.budgets.at("recognize"));
  CHECK(want.budgets.at("detect") + want.budgets.at("recognize") <= 200ms);
  // Not the ℓ(1)-proportional split (10 : 2.5 ms -> 160 / 40 ms).
  CHECK(plan.stage_budgets.at("faces/detect") != 160ms);
  // The sessions are planned with their budgets as SLO.
  CHECK(plan.gpu_of("faces/detect")->find("faces/detect")->slo == want.budgets.at("detect"));

  // After an epoch the split follows the measured rates: 200 frames/s (not the expected 50) with
  // 3 faces each (a query that declared 1), in a second engine. At SLO 100 ms the stages compete
  // for time: with γ = 1 the DP gives detect 80 ms, with γ = 3 it moves time to recognize
  // Hand check per frame and GPU-ms: detect 72 ms (b = 14, ℓ = 36 ms) + recognize 28 ms (b = 24,
  // ℓ = 14 ms) costs 36/14 + γ·14/24; detect 80 ms (16, 40 ms) + 20 ms (16, 10 ms) costs
  // 40/16 + γ·10/16: 3.15 > 3.125 at γ = 1, but 4.32 < 4.375 at γ = 3.
  SimRig rig2({.devices = "sim:2", .epoch = std::chrono::seconds(1), .rate_ewma_alpha = 1.0,
               .slo_split_slack_tolerance = 0.0});
  rig2.engine->load_model({.name = "det", .profile = det});
  rig2.engine->load_model({.name = "rec", .profile = rec});
  rig2.engine->add_query(two_stage("faces", 100ms, 50, 3, 1.0));
  const QuerySplit before = exact.split(planner_query("faces", 100ms, 50, 1.0), profiles);
  CHECK(before.budgets.at("detect") == 80ms);
  CHECK(rig2.engine->plan().stage_budgets.at("faces/detect") == before.budgets.at("detect"));
  std::vector<std::pair<TimePoint, std::string>> all;
  for (int i = 0; i < 200; ++i) all.emplace_back(TimePoint{} + std::chrono::microseconds(5000 * i + 1), "faces");
  std::vector<RequestId> ids;
  for (auto& [t, q] : all) {
    rig2.engine->run_until(t);
    ids.push_back(rig2.engine->submit(q, Tensor()));
  }
  rig2.engine->run_until(TimePoint{} + 1s + 1ms);  // the epoch at 1 s re-plans
  const auto st = rig2.engine->stats();
  const double r_det = st.sessions.at("faces/detect").rate_rps;
  const double r_rec = st.sessions.at("faces/recognize").rate_rps;
  CHECK(r_det == Approx(200).margin(1));
  CHECK(r_rec > 2.5 * r_det);  // items of the last frames may still be in flight at the epoch
  const QuerySplit now = exact.split(planner_query("faces", 100ms, r_det, r_rec / r_det), profiles);
  CHECK(now.budgets.at("detect") == 72ms);  // the measured fan-out moved time to recognize
  const Plan p2 = rig2.engine->plan();
  CHECK(p2.stage_budgets.at("faces/detect") == now.budgets.at("detect"));
  CHECK(p2.stage_budgets.at("faces/recognize") == now.budgets.at("recognize"));
  rig2.engine->run_until_idle();
  CHECK(each_exactly_once(ids, rig2.engine->poll()));

  // The proportional split stays selectable: budgets ∝ ℓ(1) = 10 : 2.5 ms of 200 ms.
  SimRig prop({.devices = "sim:2", .epoch = kNoEpoch, .slo_split = SloSplit::kProportional});
  prop.engine->load_model({.name = "det", .profile = det});
  prop.engine->load_model({.name = "rec", .profile = rec});
  prop.engine->add_query(two_stage("faces", 200ms, 50, 3));
  CHECK(prop.engine->plan().stage_budgets.at("faces/detect") == 160ms);
  CHECK(prop.engine->plan().stage_budgets.at("faces/recognize") == 40ms);

  // The default DP (headroom rule, 2%): 2ℓ(1) = 20 and 5 ms, so ρ ≤ 200 / 25 = 8, reached by
  // detect 160 ms (b = 16, 400/s) + recognize 40 ms (2ℓ(b) ≤ 40 → b = 36, 1800/s): GPUs 50/400 +
  // 150/1800 = 0.20833 against the minimum 50/400 + 150/1882.4 (b = 64, 2ℓ = 68 ms) = 0.20469,
  // 1.8% more, within 2%. Here the headroom rule's split is the ℓ(1)-proportional one.
  SimRig wide({.devices = "sim:2", .epoch = kNoEpoch});
  wide.engine->load_model({.name = "det", .profile = det});
  wide.engine->load_model({.name = "rec", .profile = rec});
  wide.engine->add_query(two_stage("faces", 200ms, 50, 3));
  CHECK(wide.engine->plan().stage_budgets.at("faces/detect") == 160ms);
  CHECK(wide.engine->plan().stage_budgets.at("faces/recognize") == 40ms);
  CHECK_THROWS_WITH(SimRig({.devices = "sim:1", .slo_split_slack_tolerance = -1.0}),
                    Catch::Contains("slo_split_slack_tolerance"));
}

TEST_CASE("nexus: an SLO too tight for any split is refused naming stages and a working SLO",
          "[runtime][nexus]") {
  // det needs 2ℓ(1) = 20 ms, rec 2ℓ(1) = 5 ms: the path needs 25 ms (at ε = 25/200 ms the DP's
  // whole steps fit exactly: 160 + 40 steps). Two devices: at those budgets det's duty cycle
  // (<= 10 ms) cannot hold rec and vice versa, so the plan needs one device per stage.
  SimRig rig({.devices = "sim:2", .epoch = kNoEpoch});
  rig.engine->load_model({.name = "det", .profile = linear_profile("det", 2000, 8000, 16)});
  rig.engine->load_model({.name = "rec", .profile = linear_profile("rec", 500, 2000, 64)});
  try {
    rig.engine->add_query(two_stage("faces", 24ms, 10, 2));
    FAIL("add_query accepted an infeasible SLO");
  } catch (const nexus::Error& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK(m.find("'faces'") != std::string::npos);
    CHECK(m.find("SLO 24.000 ms cannot be met") != std::string::npos);
    CHECK(m.find("'detect' needs >= 20.000 ms") != std::string::npos);
    CHECK(m.find("'recognize' needs >= 5.000 ms") != std::string::npos);
    CHECK(m.find("an SLO of 25.000 ms would work") != std::string::npos);
  }
  // A stage that alone exceeds the SLO is named as such.
  CHECK_THROWS_WITH(rig.engine->add_query(two_stage("faces", 15ms, 10, 2)),
                    Catch::Contains("stage 'detect' alone exceeds it") && Catch::Contains("25.000 ms would work"));
  // Nothing was declared: the name is free, and the SLO the message gave is accepted.
  CHECK_THROWS_WITH(rig.engine->submit("faces", Tensor()), Catch::Contains("unknown query"));
  rig.engine->add_query(two_stage("faces", 25ms, 10, 2));
  const Plan plan = rig.engine->plan();
  CHECK(plan.stage_budgets.at("faces/detect") == 20ms);
  CHECK(plan.stage_budgets.at("faces/recognize") == 5ms);
  CHECK(plan.rejected.empty());
  // With pre/post-processing in the profile, the need includes it (PackerOptions subtracts it).
  SimRig pp({.devices = "sim:1", .epoch = kNoEpoch});
  pp.engine->load_model({.name = "m", .profile = BatchProfile("m", "sim", {1, 2}, {10000, 15000}, {}, {},
                                                               3000, 1000)});
  CHECK_THROWS_WITH(pp.engine->add_query(single("q", "m", 23ms, 10)),
                    Catch::Contains("'s' needs >= 24.000 ms") && Catch::Contains("24.000 ms would work"));
}

TEST_CASE("nexus: sessions the planner rejects are answered kRejected with the reason", "[runtime][nexus]") {
  SECTION("the proportional split gives a stage less than it needs") {
    // SLO 20 ms ∝ ℓ(1): det 16 ms < 2ℓ(1) = 20 ms, rec 4 ms < 5 ms: the packer rejects both.
    SimRig rig({.devices = "sim:1", .epoch = kNoEpoch, .slo_split = SloSplit::kProportional});
    rig.engine->load_model({.name = "det", .profile = linear_profile("det", 2000, 8000, 16)});
    rig.engine->load_model({.name = "rec", .profile = linear_profile("rec", 500, 2000, 64)});
    rig.engine->add_query(two_stage("faces", 20ms, 10, 2));
    CHECK(rig.engine->plan().rejected.size() == 2);
    std::vector<RequestId> ids;
    auto rs = rig.run("faces", {TimePoint{} + 1ms, TimePoint{} + 2ms}, Tensor(), &ids);
    REQUIRE(each_exactly_once(ids, rs));
    for (const auto& r : rs) {
      CHECK(r.status == RequestStatus::kRejected);
      CHECK(r.reason == Reason::kNoRoute);
      CHECK(r.message.find("'faces/detect'") != std::string::npos);
      CHECK(r.message.find("needs SLO >= 20.000 ms") != std::string::npos);
    }
  }
  SECTION("a re-plan at measured rates exceeds the cluster limit") {
    // ℓ(b) = 1.5b + 5 ms, SLO 100 ms. At the expected 100 req/s each, both sessions share one
    // device. Measured at 500 req/s each, each needs a device of its own (residual batch 27,
    // occupancy 45.5/54 ms) and max_gpus = 1 leaves one out: its requests are rejected with the
    // packer's reason, the other's still complete; nothing crashes or is lost.
    SimRig rig({.devices = "sim:1", .epoch = std::chrono::seconds(1), .rate_ewma_alpha = 1.0,
                .packer = {.max_gpus = 1, .admission_min_share = 0.0}});
    rig.engine->load_model({.name = "a", .profile = linear_profile("a", 1500, 5000, 32)});
    rig.engine->load_model({.name = "b", .profile = linear_profile("b", 1500, 5000, 32)});
    rig.engine->add_query(single("qa", "a", 100ms, 100));
    rig.engine->add_query(single("qb", "b", 100ms, 100));
    REQUIRE(rig.engine->plan().num_gpus() == 1);
    REQUIRE(rig.engine->plan().rejected.empty());
    std::vector<std::pair<TimePoint, std::string>> all;
    for (int i = 0; i < 750; ++i) {  // 500 req/s each for 1.5 s
      all.emplace_back(TimePoint{} + std::chrono::microseconds(2000 * i + 1), "qa");
      all.emplace_back(TimePoint{} + std::chrono::microseconds(2000 * i + 2), "qb");
    }
    std::vector<RequestId> ids;
    const auto rs = serve(rig, all, &ids);
    REQUIRE(each_exactly_once(ids, rs));
    const Plan plan = rig.engine->plan();
    REQUIRE(plan.rejected.size() == 1);
    const std::string lost = plan.rejected[0].session;
    CHECK(plan.route(lost).empty());
    std::size_t rejected = 0, late_ok = 0;
    for (const auto& r : rs) {
      if (r.status == RequestStatus::kRejected) {
        ++rejected;
        CHECK(r.reason == Reason::kNoRoute);
        CHECK(r.query + "/s" == lost);
        CHECK(r.message.find("cluster limit of 1 GPUs") != std::string::npos);
      }
      if (r.ok() && r.submitted > TimePoint{} + 1s) ++late_ok;
    }
    CHECK(rejected > 200);   // the rejected session's requests after the 1 s re-plan
    CHECK(late_ok > 200);    // the other session is still served
  }
}

TEST_CASE("nexus: squishy + DP serve a multi-session workload at 80% of planned capacity",
          "[runtime][nexus]") {
  // Four single-stage sessions at very different rates and a two-stage query with fan-out 2.
  // The default plans them; the device count is what the plan asks for (no folding). Offered
  // load: Poisson at 80% of every planned rate. Nexus must keep >= 99% good rate.
  const auto m1 = linear_profile("m1", 1500, 5000, 32);   // B(100 ms) = 30, 600 req/s per device
  const auto m2 = linear_profile("m2", 500, 3000, 64);
  const auto m3 = linear_profile("m3", 5000, 20000, 16);
  const auto det = linear_profile("det", 2000, 8000, 16);
  const auto rec = linear_profile("rec", 500, 2000, 64);
  auto setup = [&](SimRig& rig) {
    rig.engine->load_model({.name = "m1", .profile = m1});
    rig.engine->load_model({.name = "m2", .profile = m2});
    rig.engine->load_model({.name = "m3", .profile = m3});
    rig.engine->load_model({.name = "det", .profile = det});
    rig.engine->load_model({.name = "rec", .profile = rec});
    rig.engine->add_query(single("big", "m1", 100ms, 1500));
    rig.engine->add_query(single("mid", "m2", 150ms, 300));
    rig.engine->add_query(single("slow", "m3", 200ms, 40));
    rig.engine->add_query(single("tiny", "m1", 100ms, 20));
    rig.engine->add_query(two_stage("faces", 250ms, 100, 2));
  };
  // How many devices the plan needs.
  int n = 0;
  {
    SimRig probe({.devices = "sim:64", .epoch = kNoEpoch});
    setup(probe);
    n = probe.engine->plan().num_gpus();
  }
  REQUIRE(n >= 3);
  REQUIRE(n < 64);
  SimRig rig({.devices = fmt::format("sim:{}", n), .epoch = kNoEpoch});
  setup(rig);
  const Plan plan = rig.engine->plan();
  REQUIRE(plan.num_gpus() == n);
  CHECK(plan.rejected.empty());
  const std::map<std::string, double> rate{{"big", 1500}, {"mid", 300}, {"slow", 40}, {"tiny", 20}, {"faces", 100}};
  std::vector<std::pair<TimePoint, std::string>> all;
  std::uint64_t seed = 21;
  for (const auto& [q, r] : rate)
    for (auto t : sim::poisson_arrivals(0.8 * r, 10s, seed++)) all.emplace_back(t, q);
  std::vector<RequestId> ids;
  const auto rs = serve(rig, all, &ids);
  CHECK(each_exactly_once(ids, rs));
  std::map<std::string, std::pair<int, int>> per;  // good, all
  for (const auto& r : rs) {
    per[r.query].first += r.met_slo;
    per[r.query].second += 1;
  }
  for (const auto& [q, gc] : per) {
    INFO(q << ": " << gc.first << " / " << gc.second);
    CHECK(double(gc.first) / gc.second >= 0.99);
  }
  INFO("devices " << n << ", lower bound " << plan.lower_bound_gpus);
  CHECK(good_rate(rs) >= 0.99);
}

TEST_CASE("nexus: a query with a join gets the layered DP's budgets", "[runtime][nexus]") {
  // a -> {b, c} -> d: d has two parents, so the QueryPlanner uses its layered DP (one budget per
  // depth). The engine's budgets are those of QueryPlanner::split on the same graph and rates.
  const auto pa = linear_profile("pa", 2000, 8000, 16), pb = linear_profile("pb", 500, 2000, 64),
             pc = linear_profile("pc", 1000, 3000, 32), pd = linear_profile("pd", 300, 1000, 64);
  SimRig rig({.devices = "sim:2", .epoch = kNoEpoch});
  for (const auto& p : {pa, pb, pc, pd}) rig.engine->load_model({.name = p.model(), .profile = p});
  rig.engine->add_query({.name = "j", .slo = 150ms, .expected_rate_rps = 40,
                         .stages = {{.name = "a", .model = "pa",
                                     .children = {{.stage = "b", .expected_fanout = 2}, {.stage = "c"}}},
                                    {.name = "b", .model = "pb", .children = {{.stage = "d"}}},
                                    {.name = "c", .model = "pc", .children = {{.stage = "d", .expected_fanout = 3}}},
                                    {.name = "d", .model = "pd"}}});
  const nexus::QuerySpec q{.id = "j", .slo = 150ms, .rate_rps = 40,
                           .stages = {{"a", "pa", {{"b", 2.0}, {"c", 1.0}}},
                                      {"b", "pb", {{"d", 1.0}}},
                                      {"c", "pc", {{"d", 3.0}}},
                                      {"d", "pd", {}}}};
  const QuerySplit want =
      QueryPlanner().split(q, ProfileMap{{"pa", pa}, {"pb", pb}, {"pc", pc}, {"pd", pd}});
  REQUIRE(want.layered);
  const Plan plan = rig.engine->plan();
  for (const char* s : {"a", "b", "c", "d"}) {
    INFO(s);
    CHECK(plan.stage_budgets.at(std::string("j/") + s) == want.budgets.at(s));
  }
  CHECK(plan.stage_budgets.at("j/b") == plan.stage_budgets.at("j/c"));
  CHECK(plan.stage_budgets.at("j/a") + plan.stage_budgets.at("j/b") + plan.stage_budgets.at("j/d") <= 150ms);
  // It serves: 40 frames/s for 2 s, every request accounted for.
  std::vector<RequestId> ids;
  const auto rs = rig.run("j", sim::poisson_arrivals(40, 2s, 5), Tensor(), &ids);
  CHECK(each_exactly_once(ids, rs));
  CHECK(good_rate(rs) >= 0.99);
}
