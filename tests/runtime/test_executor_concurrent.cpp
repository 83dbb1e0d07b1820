// ExecutorOptions::concurrent_sessions: co-located sessions contend (the TF-Serving-like and
// Triton-like baselines; the original code's GpuExecutorNoMultiBatching, paper Fig. 14). Each
// session starts its own batch whenever it has none in flight, and the batches in flight share
// the simulated device as a processor-sharing server (k in flight: each at 1/k of its solo
// speed). The completion times below are computed by hand from a constant ℓ(b) = 10 ms.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/runtime/planner.hpp"
#include "sim_helpers.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace nexus::testing;
using namespace std::chrono_literals;

namespace {

// Both sessions on device 0, planned batch 8 each, in model order (A first).
Plan both_on_gpu0(const PlanRequest& req) {
  Plan p;
  GpuPlan g;
  g.gpu = 0;
  g.duty_cycle = 20ms;
  for (const auto& s : req.sessions) g.sessions.push_back({s.id, s.model, 8, 10ms, 50.0, s.slo, {}});
  std::sort(g.sessions.begin(), g.sessions.end(),
            [](const SessionAllocation& x, const SessionAllocation& y) { return x.model < y.model; });
  p.gpus.push_back(g);
  p.rebuild_routes();
  return p;
}

EngineOptions options(bool concurrent, sim::SimLatency latency = {}) {
  return {.devices = "sim:1",
          .executor = {.concurrent_sessions = concurrent},
          .epoch = std::chrono::microseconds(0),
          .planner = both_on_gpu0,
          .sim_latency = latency,
          .prefix_batching = false};
}

struct Stage {
  std::string query;
  Duration started, finished;  // since time 0
};

/// Submits (time since 0, query) in order, drains, and returns each request's one stage by id.
std::map<RequestId, Stage> serve(bool concurrent, const std::vector<std::pair<Duration, std::string>>& arrivals) {
  SimRig rig(options(concurrent));
  // ℓ(b) = 10 ms for every b (noise-free: SimLatency's default draws the profile's mean).
  rig.engine->load_model({.name = "A", .profile = linear_profile("A", 0, 10000, 16)});
  rig.engine->load_model({.name = "B", .profile = linear_profile("B", 0, 10000, 16)});
  rig.engine->add_query({.name = "qa", .slo = 1s, .stages = {{.name = "s", .model = "A"}}});
  rig.engine->add_query({.name = "qb", .slo = 1s, .stages = {{.name = "s", .model = "B"}}});
  std::vector<RequestId> ids;
  std::vector<QueryResult> rs;
  for (const auto& [t, q] : arrivals) {
    rig.engine->run_until(TimePoint{} + t);
    ids.push_back(rig.engine->submit(q, Tensor()));
  }
  rig.engine->run_until_idle();
  for (auto& r : rig.engine->poll()) rs.push_back(std::move(r));
  REQUIRE(each_exactly_once(ids, rs));
  std::map<RequestId, Stage> out;
  for (const auto& r : rs) {
    REQUIRE(r.status == RequestStatus::kCompleted);
    REQUIRE(r.stages.size() == 1);
    out[r.id] = {r.query, r.stages[0].started - TimePoint{}, r.stages[0].finished - TimePoint{}};
  }
  return out;
}

}  // namespace

TEST_CASE("concurrent sessions: two batches starting together each take 2x their solo time",
          "[runtime][executor][concurrent]") {
  const auto s = serve(true, {{0ms, "qa"}, {0ms, "qb"}});
  REQUIRE(s.size() == 2);
  for (const auto& [id, st] : s) {
    INFO(st.query);
    CHECK(st.started == 0ms);
    CHECK(st.finished == 20ms);  // 10 ms solo at 1/2 speed
  }
}

TEST_CASE("concurrent sessions: a batch starting half-way through another's", "[runtime][executor][concurrent]") {
  // A alone 0-5 ms does 5 of its 10 ms; then A and B share: A's last 5 ms take 10 → A ends at
  // 15. B did 5 ms of work by 15, alone for its last 5 → ends at 20.
  SECTION("two batches") {
    const auto s = serve(true, {{0ms, "qa"}, {5ms, "qb"}});
    REQUIRE(s.size() == 2);
    const Stage& a = s.begin()->second;
    const Stage& b = std::next(s.begin())->second;
    CHECK(a.query == "qa");
    CHECK(a.started == 0ms);
    CHECK(a.finished == 15ms);
    CHECK(b.started == 5ms);
    CHECK(b.finished == 20ms);
  }
  SECTION("a session's own batches still run one after another") {
    // A2 (at 1 ms) waits for A1's batch, starts at 15 with B's 5 ms left: both at 1/2 speed, B
    // ends at 25; A2 did 5 of 10 ms by then, alone for the rest → 30. 30 ms of work, busy 0-30.
    const auto s = serve(true, {{0ms, "qa"}, {1ms, "qa"}, {5ms, "qb"}});
    REQUIRE(s.size() == 3);
    auto it = s.begin();
    const Stage a1 = it->second, a2 = (++it)->second, b = (++it)->second;
    CHECK(a1.query == "qa");
    CHECK(a2.query == "qa");
    CHECK(b.query == "qb");
    CHECK(a1.started == 0ms);
    CHECK(a1.finished == 15ms);
    CHECK(b.started == 5ms);
    CHECK(b.finished == 25ms);
    CHECK(a2.started == 15ms);
    CHECK(a2.finished == 30ms);
  }
}

TEST_CASE("concurrent sessions off: one batch at a time, round robin (unchanged)", "[runtime][executor][concurrent]") {
  const auto s = serve(false, {{0ms, "qa"}, {5ms, "qb"}});
  REQUIRE(s.size() == 2);
  const Stage& a = s.begin()->second;
  const Stage& b = std::next(s.begin())->second;
  CHECK(a.started == 0ms);
  CHECK(a.finished == 10ms);
  CHECK(b.started == 10ms);  // waits for A's batch to leave the device
  CHECK(b.finished == 20ms);
  const auto t = serve(false, {{0ms, "qa"}, {0ms, "qb"}});
  std::vector<Duration> ends;
  for (const auto& [id, st] : t) ends.push_back(st.finished);
  std::sort(ends.begin(), ends.end());
  CHECK(ends == std::vector<Duration>{10ms, 20ms});
}

namespace {

struct NoisyRun {
  std::vector<std::tuple<RequestId, std::string, Duration, Duration, int>> stages;
  int overlaps = 0;     // batches that started while another session's batch was in flight
  bool exactly_once = false;
};

NoisyRun noisy(std::uint64_t seed) {
  SimRig rig(options(true, {.distribution = sim::SimLatency::Distribution::kLognormal, .min_cv = 0.2,
                            .slow_probability = 0.05, .slow_factor = 3, .seed = seed}));
  rig.engine->load_model({.name = "A", .profile = linear_profile("A", 500, 3000, 16)});
  rig.engine->load_model({.name = "B", .profile = linear_profile("B", 800, 2000, 16)});
  rig.engine->add_query({.name = "qa", .slo = 60ms, .stages = {{.name = "s", .model = "A"}}});
  rig.engine->add_query({.name = "qb", .slo = 60ms, .stages = {{.name = "s", .model = "B"}}});
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(1.0 / 1.5);  // ms: ~670 req/s each, past capacity
  std::vector<RequestId> ids;
  std::vector<QueryResult> rs;
  double ta = 0, tb = 0;
  while (std::min(ta, tb) < 500) {
    const bool a = ta <= tb;
    double& t = a ? ta : tb;
    rig.engine->run_until(TimePoint{} + std::chrono::microseconds(static_cast<std::int64_t>(t * 1000)));
    ids.push_back(rig.engine->submit(a ? "qa" : "qb", Tensor()));
    t += gap(rng);
  }
  rig.engine->run_until_idle();
  for (auto& r : rig.engine->poll()) rs.push_back(std::move(r));
  NoisyRun out;
  out.exactly_once = each_exactly_once(ids, rs);
  std::map<std::pair<Duration, std::string>, Duration> batches;  // (start, query) → end
  for (const auto& r : rs)
    for (const auto& st : r.stages) {
      out.stages.emplace_back(r.id, r.query, st.started - TimePoint{}, st.finished - TimePoint{}, st.batch_size);
      batches[{st.started - TimePoint{}, r.query}] = st.finished - TimePoint{};
    }
  std::sort(out.stages.begin(), out.stages.end());
  for (const auto& [k, end] : batches)
    for (const auto& [k2, end2] : batches)
      if (k2.second != k.second && k2.first < k.first && end2 > k.first) {
        ++out.overlaps;
        break;
      }
  return out;
}

}  // namespace

TEST_CASE("concurrent sessions: noisy overload ends every request once, overlaps, and is deterministic for a seed",
          "[runtime][executor][concurrent]") {
  const NoisyRun r1 = noisy(11), r2 = noisy(11), r3 = noisy(12);
  CHECK(r1.exactly_once);
  CHECK(r3.exactly_once);
  REQUIRE(r1.stages.size() > 100);
  CHECK(r1.overlaps > 10);  // the sessions' batches do share the device
  CHECK(r1.stages == r2.stages);
  CHECK(r1.stages != r3.stages);
}

TEST_CASE("concurrent sessions: refused outside simulated devices and with prefix batching",
          "[runtime][executor][concurrent]") {
  EngineOptions o = options(true);
  o.devices = "cpu";
  CHECK_THROWS_AS(SimRig(o), nexus::Error);
  EngineOptions p = options(true);
  p.prefix_batching = true;
  CHECK_THROWS_WITH(SimRig(p), Catch::Contains("prefix_batching"));
  EngineOptions real = options(true);
  CHECK_THROWS_WITH(Engine(real), Catch::Contains("virtual time"));
}
