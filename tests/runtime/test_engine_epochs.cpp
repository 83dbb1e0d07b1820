// The Engine's epochs are nexus::Scheduler's (issue #10): rates sampled every min_epoch into an
// EWMA, a re-plan every epoch or early when a rate leaves [0.8, 1.1] × planned (never before
// min_epoch), and the running plan kept when re-planning saves nothing. Virtual time with noisy
// batch durations (lognormal, 10% std, 0.1% slow batches at 3x).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "sim_helpers.hpp"

using namespace nexus;
using namespace nexus::testing;
using namespace std::chrono_literals;
using runtime::QueryResult;

namespace {

constexpr sim::SimLatency kNoise{.distribution = sim::SimLatency::Distribution::kLognormal,
                                 .min_cv = 0.1, .slow_probability = 0.001, .slow_factor = 3.0, .seed = 11};

// Submits `rate` req/s of `query` over [from, to) (evenly spaced), polling as it goes.
void drive(SimRig& rig, const std::string& query, double rate, TimePoint from, TimePoint to,
           std::vector<QueryResult>* out) {
  const auto gap = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(1.0 / rate));
  for (TimePoint t = from; t < to; t += gap) {
    rig.engine->run_until(t);
    rig.engine->submit(query, Tensor());
    for (auto& r : rig.engine->poll()) out->push_back(std::move(r));
  }
  rig.engine->run_until(to);
}

TimePoint sec(double s) {
  return TimePoint{} + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

}  // namespace

TEST_CASE("epochs: the engine re-plans early when a rate jumps, not before min_epoch", "[runtime][epochs]") {
  // ℓ(b) = 1.5b + 5 ms, SLO 100 ms, planned at 100 req/s. Regular epoch 30 s, min_epoch 2 s.
  // At 4 s the rate quadruples: the sample at 6 s leaves the band and the engine re-plans then,
  // long before the regular epoch.
  SimRig rig({.devices = "sim:2", .epoch = 30s, .min_epoch = 2s, .rate_ewma_alpha = 1.0, .sim_latency = kNoise});
  rig.engine->load_model({.name = "m", .profile = linear_profile("m", 1500, 5000, 32)});
  rig.engine->add_query({.name = "q", .slo = 100ms, .expected_rate_rps = 100, .stages = {{.name = "s", .model = "m"}}});
  REQUIRE(rig.engine->stats().replans == 1);
  std::vector<QueryResult> rs;
  drive(rig, "q", 100, sec(0), sec(4.5), &rs);
  CHECK(rig.engine->stats().replans == 1);  // samples at 2 s and 4 s were in the band
  CHECK(rig.engine->plan().planned_rate("q/s") == Approx(100).epsilon(0.01));
  drive(rig, "q", 400, sec(4.5), sec(6.5), &rs);
  const auto st = rig.engine->stats();
  CHECK(st.replans == 2);  // early, at the 6 s sample
  CHECK(rig.engine->plan().planned_rate("q/s") >= 300);
  drive(rig, "q", 400, sec(6.5), sec(10), &rs);
  rig.engine->run_until_idle();
  for (auto& r : rig.engine->poll()) rs.push_back(std::move(r));
  std::size_t late_good = 0, late = 0;
  for (const auto& r : rs)
    if (r.submitted >= sec(6.5)) {
      ++late;
      late_good += r.met_slo ? 1 : 0;
    }
  CHECK(double(late_good) / double(late) >= 0.99);
}

TEST_CASE("epochs: a re-plan that saves nothing keeps the running plan", "[runtime][epochs]") {
  // Planned at 100 req/s on the one device; the rate falls to 60 (below 0.8 × 100): the early
  // re-plan at the 6 s sample would still need one device, so the running plan stays (same
  // batch and duty cycle; only its planned rate follows the estimate). Re-packing from scratch
  // would have chosen a smaller batch for 60 req/s.
  SimRig rig({.devices = "sim:1", .epoch = 30s, .min_epoch = 2s, .rate_ewma_alpha = 1.0, .sim_latency = kNoise});
  rig.engine->load_model({.name = "m", .profile = linear_profile("m", 1500, 5000, 32)});
  rig.engine->add_query({.name = "q", .slo = 100ms, .expected_rate_rps = 100, .stages = {{.name = "s", .model = "m"}}});
  const Plan before = rig.engine->plan();
  REQUIRE(before.num_gpus() == 1);
  std::vector<QueryResult> rs;
  drive(rig, "q", 100, sec(0), sec(4), &rs);
  drive(rig, "q", 60, sec(4), sec(8), &rs);
  const auto st = rig.engine->stats();
  CHECK(st.replans == 2);
  CHECK(st.plans_kept == 1);
  const Plan after = rig.engine->plan();
  REQUIRE(after.num_gpus() == 1);
  CHECK(after.gpus[0].duty_cycle == before.gpus[0].duty_cycle);
  CHECK(after.gpus[0].sessions.at(0).batch == before.gpus[0].sessions.at(0).batch);
  CHECK(after.planned_rate("q/s") == Approx(60).epsilon(0.02));
  // What a fresh packing would have done differs (so keeping is a decision, not a no-op).
  const Plan fresh = SquishyBinPacker().pack({{.id = "q/s", .model = "m", .slo = 100ms, .rate_rps = 60}},
                                             {{"m", linear_profile("m", 1500, 5000, 32)}});
  CHECK(fresh.gpus.at(0).sessions.at(0).batch != before.gpus[0].sessions.at(0).batch);
  rig.engine->run_until_idle();
  for (auto& r : rig.engine->poll()) rs.push_back(std::move(r));
  CHECK(good_rate(rs) >= 0.99);
}

TEST_CASE("epochs: bad epoch options are refused naming the option", "[runtime][epochs][errors]") {
  CHECK_THROWS_WITH(SimRig({.devices = "sim:1", .epoch = 30s, .min_epoch = 0s}), Catch::Contains("min_epoch"));
  CHECK_THROWS_WITH(SimRig({.devices = "sim:1", .rate_ewma_alpha = 0.0}), Catch::Contains("ewma_alpha"));
  CHECK_THROWS_WITH(SimRig({.devices = "sim:1", .low_watermark = 1.5}), Catch::Contains("watermarks"));
}
