// The micro-benchmark scenario families (paper Figs. 9, 14, 15; sim/scenarios/micro-*.json, made
// by benchmarks/eval/micro_scenarios.py): each loads, and each shows its feature's mechanism on
// one simulated GPU at a load checked by hand from the H200 profiles (docs/evaluation.md,
// "Micro-benchmarks"). ResNet-50: ℓ(1) = 3.13, ℓ(2) = 4.11, ℓ(8) = 7.22 ms; GoogLeNet: ℓ(32) = 9.87 ms.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "nexus/sim/cluster.hpp"

using namespace nexus;
using namespace nexus::sim;
using namespace std::chrono_literals;

namespace {

const std::filesystem::path kRoot = NEXUS_SOURCE_DIR;

Scenario micro(const std::string& name) { return load_scenario(kRoot / "sim/scenarios" / (name + ".json")); }

const SimSessionDetail& only_session(const SimResult& r) {
  REQUIRE(r.sessions.size() == 1);
  return r.sessions.begin()->second;
}

}  // namespace

TEST_CASE("the micro-benchmark scenario families load, on the H200 set", "[sim][scenario][micro]") {
  std::vector<std::string> names;
  for (int slo : {50, 100})
    for (int k = 1; k <= 10; ++k) names.push_back("micro-prefix-slo" + std::to_string(slo) + "-k" + std::to_string(k));
  for (int slo : {50, 100, 200}) names.push_back("micro-multiplex-slo" + std::to_string(slo));
  for (int slo : {15, 25, 50, 100}) names.push_back("micro-earlydrop-slo" + std::to_string(slo));
  for (const auto& n : names) {
    INFO(n);
    const Scenario sc = micro(n);
    CHECK(sc.name == n);
    CHECK(sc.profile_dir.filename() == "h200-2026-11-30");
    CHECK(sc.nominal_rate() > 0);
  }
  // Fig. 15(a): K variants, all declaring the one resnet50 prefix, each its own query and rate.
  const Scenario p = micro("micro-prefix-slo50-k7");
  REQUIRE(p.models.size() == 7);
  REQUIRE(p.queries.size() == 7);
  for (const auto& m : p.models) {
    CHECK(m.prefix_key == "resnet50");
    CHECK(m.prefix_fraction == Approx(0.98));
  }
  for (const auto& q : p.queries) {
    CHECK(q.slo == 50ms);
    CHECK(q.arrivals.rate_rps == p.queries[0].arrivals.rate_rps);
  }
  // Fig. 14: 4 GoogLeNet copies, each its own model (so the baselines cannot merge them).
  const Scenario m = micro("micro-multiplex-slo100");
  REQUIRE(m.models.size() == 4);
  for (const auto& mm : m.models) CHECK(mm.profile.model() == "googlenet");
  CHECK(micro("micro-earlydrop-slo25").queries.at(0).slo == 25ms);
}

TEST_CASE("Fig. 15 prefix batching: one variant runs the same either way; ten need it", "[sim][micro][prefix]") {
  // K = 1: a prefix group needs two members, so prefix batching changes nothing: the same seed
  // gives the same run, request for request, even under overload (1,000 req/s > 1/ℓ(1)·b).
  const Scenario one = micro("micro-prefix-slo50-k1");
  SimOptions on{.gpus = 1, .duration = 3s, .seed = 4, .load_scale = 20};
  SimOptions off = on;
  off.ablate.prefix = true;
  const SimResult a = simulate(one, on), b = simulate(one, off);
  CHECK(a.submitted == b.submitted);
  CHECK(a.good == b.good);
  CHECK(a.dropped == b.dropped);
  CHECK(a.p99_latency_ms == b.p99_latency_ms);
  CHECK(a.stage_items == b.stage_items);
  // K = 10 at 40 req/s each (400 req/s), 50 ms SLO. Without prefix batching a round of the ten
  // variants at b = 1 takes 10·ℓ(1) = 31.3 ms: at most 319 req/s; b = 2 needs r >= 2 / (50 − ℓ(2))
  // = 43.6 req/s per variant (wait d = b/r plus the batch within the SLO), so 40 req/s fits
  // neither and requests are late or dropped. With it the ten are one 400 req/s session: b = 8,
  // d = 20 ms, ℓ(8) + d = 27 ms <= 50.
  const Scenario ten = micro("micro-prefix-slo50-k10");
  on.load_scale = off.load_scale = 0.8;
  on.duration = off.duration = 4s;
  const SimResult with = simulate(ten, on), without = simulate(ten, off);
  CHECK(with.prefix_batching);
  CHECK_FALSE(without.prefix_batching);
  CHECK(with.offered_rps == Approx(400).epsilon(0.1));
  CHECK(with.good_rate > 0.99);
  CHECK(without.good_rate < 0.95);
}

TEST_CASE("Fig. 14 multiplexing: contention costs the baselines at a tight SLO, not at a loose one",
          "[sim][micro][baselines]") {
  // 4 GoogLeNet copies at 600 req/s each (2,400 req/s). Nexus runs them round robin on the one
  // GPU. TF-Serving and Triton run each copy's batches at once (processor sharing): 4 batches of
  // 32 in flight take 4·ℓ(32) = 39.5 ms each, so a request waiting for the next batch misses a
  // 50 ms SLO, but fits 200 ms.
  for (int slo : {50, 200}) {
    const Scenario sc = micro("micro-multiplex-slo" + std::to_string(slo));
    for (auto sys : {System::kNexus, System::kTfServing, System::kTriton}) {
      INFO(slo << " ms, " << to_string(sys));
      const SimResult r = simulate(sc, {.gpus = 1, .system = sys, .duration = 3s, .seed = 1, .load_scale = 2.4});
      CHECK(r.offered_rps == Approx(2400).epsilon(0.1));
      CHECK(r.completed + r.dropped + r.rejected + r.failed == r.submitted);
      if (sys == System::kNexus || slo == 200)
        CHECK(r.good_rate > 0.99);
      else
        CHECK(r.good_rate < 0.95);
    }
  }
}

TEST_CASE("Fig. 9 early drop: under overload lazy drop runs smaller batches and serves less", "[sim][micro]") {
  // One ResNet-50, 15 ms SLO, Poisson 1,000 req/s: above what either policy serves (~800 at 99%
  // good). Early drop sheds the head of the queue to keep the planned batch; lazy drop sizes the
  // batch by the oldest request's remaining budget, so an old head forces a small batch, whose
  // higher cost per item makes more requests late (paper §4.3, Fig. 5).
  const Scenario sc = micro("micro-earlydrop-slo15");
  SimOptions early{.gpus = 1, .duration = 3s, .seed = 1, .load_scale = 2};
  SimOptions lazy = early;
  lazy.ablate.early_drop = true;
  const SimResult e = simulate(sc, early), l = simulate(sc, lazy);
  CHECK(e.offered_rps == Approx(1000).epsilon(0.1));
  CHECK(only_session(e).mean_batch > 1.5 * only_session(l).mean_batch);
  CHECK(e.throughput_rps > 1.2 * l.throughput_rps);
  CHECK(e.completed + e.dropped + e.rejected + e.failed == e.submitted);
  CHECK(l.completed + l.dropped + l.rejected + l.failed == l.submitted);
}
