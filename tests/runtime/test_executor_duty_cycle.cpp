// The executor runs the plan's duty cycle (paper §6.1; issue #10): each cycle one batch of up to
// the planned size of each session on the device, round robin in plan order, the next cycle d
// after this one started; work conservation and batch growth are options. Batch durations are
// drawn with noise (lognormal, 10% std), never the planner's own numbers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <vector>

#include "nexus/runtime/planner.hpp"
#include "sim_helpers.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace nexus::testing;
using namespace std::chrono_literals;

namespace {

// A fixed plan on one device: A at batch 4, then B at batch 2, duty cycle 50 ms.
// ℓ_A(b) = 2b + 4 ms, ℓ_B(b) = 3b + 3 ms: ℓ_A(4) + ℓ_B(2) = 21 ms ≤ 50 ms.
Plan fixed_plan(const PlanRequest& req) {
  Plan p;
  GpuPlan g;
  g.gpu = 0;
  g.duty_cycle = 50ms;
  for (const auto& s : req.sessions) {
    const bool a = s.model == "A";
    g.sessions.push_back({s.id, s.model, a ? 4 : 2, a ? 12ms : 9ms, a ? 80.0 : 40.0, s.slo, {}});
  }
  std::sort(g.sessions.begin(), g.sessions.end(),
            [](const SessionAllocation& x, const SessionAllocation& y) { return x.model < y.model; });
  p.gpus.push_back(g);
  p.rebuild_routes();
  return p;
}

struct Run {
  std::vector<std::pair<TimePoint, std::string>> batches;  // (start, session) of every batch
  std::map<std::string, int> max_batch;
};

Run overload(bool work_conserving, bool grow, int mult = 1) {
  SimRig rig({.devices = "sim:1",
              .batch_policy = {.grow_batch = grow},
              .executor = {.work_conserving = work_conserving},
              .epoch = std::chrono::microseconds(0),
              .planner = fixed_plan,
              .sim_latency = {.distribution = sim::SimLatency::Distribution::kLognormal, .min_cv = 0.1, .seed = 7}});
  rig.engine->load_model({.name = "A", .profile = linear_profile("A", 2000, 4000, 32)});
  rig.engine->load_model({.name = "B", .profile = linear_profile("B", 3000, 3000, 32)});
  rig.engine->add_query({.name = "qa", .slo = 400ms, .stages = {{.name = "s", .model = "A"}}});
  rig.engine->add_query({.name = "qb", .slo = 400ms, .stages = {{.name = "s", .model = "B"}}});
  // mult × twice the planned rate of each (160 and 80 req/s) for 2 s: queues never run dry.
  for (int i = 0; i < 320 * mult; ++i) {
    rig.engine->run_until(TimePoint{} + std::chrono::microseconds(6250 * i / mult));
    rig.engine->submit("qa", Tensor());
    if (i % 2 == 0) rig.engine->submit("qb", Tensor());
  }
  rig.engine->run_until_idle();
  Run out;
  std::map<std::pair<TimePoint, std::string>, int> seen;
  for (const auto& r : rig.engine->poll())
    for (const auto& st : r.stages) {
      seen[{st.started, r.query}] = st.batch_size;
      out.max_batch[r.query] = std::max(out.max_batch[r.query], st.batch_size);
    }
  for (const auto& [k, n] : seen) out.batches.push_back(k);
  return out;
}

}  // namespace

TEST_CASE("executor: one batch of each session per duty cycle, in plan order, at most the planned size",
          "[runtime][executor]") {
  const Run run = overload(false, false);
  REQUIRE(run.batches.size() > 20);
  CHECK(run.max_batch.at("qa") <= 4);
  CHECK(run.max_batch.at("qb") <= 2);
  // Per cycle: A then B, and consecutive cycles (A's batches) start ≥ d = 50 ms apart.
  TimePoint last_a{};
  bool have_a = false;
  for (std::size_t i = 0; i < run.batches.size(); ++i) {
    INFO("batch " << i);
    CHECK(run.batches[i].second == (i % 2 == 0 ? "qa" : "qb"));
    if (run.batches[i].second == "qa") {
      if (have_a) CHECK(run.batches[i].first - last_a >= 50ms);
      last_a = run.batches[i].first;
      have_a = true;
    }
  }
}

TEST_CASE("executor: work conservation and batch growth are options", "[runtime][executor]") {
  SECTION("work-conserving: the next cycle starts when the device would idle") {
    const Run run = overload(true, false);
    CHECK(run.max_batch.at("qa") <= 4);
    // Cycles of ~21 ms instead of 50: some consecutive A batches start < 50 ms apart.
    int short_gaps = 0;
    TimePoint last{};
    for (const auto& [t, q] : run.batches)
      if (q == "qa") {
        if (last != TimePoint{} && t - last < 40ms) ++short_gaps;
        last = t;
      }
    CHECK(short_gaps > 10);
  }
  SECTION("batch growth: batches grow past the planned size") {
    const Run run = overload(true, true, 4);
    CHECK(run.max_batch.at("qa") > 4);
  }
}
