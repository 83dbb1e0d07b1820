// Cluster simulator tests: arrival traces, scenario errors, the baseline allocator on hand-checked
// inputs, each baseline's batching on small hand-checked traces, determinism for a seed, and the
// no-loss invariant at 1,000 simulated GPUs.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "nexus/core/error.hpp"
#include "nexus/sim/cluster.hpp"

using namespace nexus;
using namespace nexus::sim;
using namespace std::chrono_literals;

namespace {

const std::filesystem::path kRoot = NEXUS_SOURCE_DIR;

// ℓ(b) = alpha·b + beta µs, b = 1..max_batch.
BatchProfile linear(const std::string& model, double alpha_us, double beta_us, int max_batch) {
  std::vector<int> b;
  std::vector<double> l;
  for (int i = 1; i <= max_batch; ++i) {
    b.push_back(i);
    l.push_back(alpha_us * i + beta_us);
  }
  return BatchProfile(model, "sim", b, l);
}

// One model, one single-stage query, uniform arrivals from one stream.
Scenario one_model(double rate, std::chrono::milliseconds slo, BatchProfile p, Duration duration = 4s) {
  Scenario sc;
  sc.name = "unit";
  sc.duration = duration;
  sc.warmup = 0s;
  sc.epoch = 0s;
  sc.models.push_back({"m", {}, std::move(p)});
  ScenarioQuery q;
  q.name = "q";
  q.slo = slo;
  q.stages.push_back({"s", "m", {}});
  q.arrivals.shape = ArrivalShape::kUniform;
  q.arrivals.rate_rps = rate;
  sc.queries.push_back(q);
  return sc;
}

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / "nexus_sim_tests";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

std::string error_of(const std::filesystem::path& f) {
  try {
    load_scenario(f);
  } catch (const nexus::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("arrival traces: rates, spacing, determinism", "[sim][traffic]") {
  const auto p = poisson_arrivals(1000, 20s, 7);
  CHECK(p.size() == Approx(20000).epsilon(0.03));
  CHECK(p == poisson_arrivals(1000, 20s, 7));
  CHECK(p != poisson_arrivals(1000, 20s, 8));
  const auto u = uniform_arrivals(100, 1s, 3);
  REQUIRE(u.size() == 100);
  for (std::size_t i = 1; i < u.size(); ++i) CHECK((u[i] - u[i - 1]).count() == Approx(1e7).margin(2));
  // MMPP: the long-run mean is the given rate whatever the states.
  const auto m = mmpp_arrivals(500, {{4.0, 100ms}, {1.0, 300ms}, {0.5, 200ms}}, 200s, 5);
  CHECK(double(m.size()) / 200.0 == Approx(500).epsilon(0.05));
  // A rate trace: 2 s at 100/s then 1 s of silence then 1 s at 1000/s (uniform: exact counts).
  const std::vector<RateSegment> tr{{2s, 100}, {1s, 0}, {1s, 1000}};
  const auto t = trace_arrivals(tr, ArrivalShape::kUniform, 1);
  CHECK(t.size() == Approx(1200).margin(2));
  CHECK(std::count_if(t.begin(), t.end(), [](TimePoint x) { return x >= TimePoint{} + 2s && x < TimePoint{} + 3s; }) == 0);
  // Diurnal: the mean of the segments is the mean; trough first, peak in the middle.
  const auto d = diurnal_trace(100, 0.5, 600s, 60);
  double sum = 0;
  for (const auto& s : d) sum += s.rate_rps;
  CHECK(sum / 60 == Approx(100).epsilon(1e-9));
  CHECK(d.front().rate_rps == Approx(50.07).margin(0.01));  // 100·(1 − 0.5·cos(π/60))
  CHECK(d[30].rate_rps == Approx(149.9).margin(0.2));
  CHECK(trace_duration(d) == 600s);
  CHECK_THROWS_AS(poisson_arrivals(-1, 1s, 1), nexus::Error);
  CHECK_THROWS_AS(diurnal_trace(10, 1.5, 1s, 4), nexus::Error);
  CHECK(merge_arrivals({{TimePoint{} + 1ms, TimePoint{} + 3ms}, {TimePoint{} + 2ms}}) ==
        std::vector<TimePoint>{TimePoint{} + 1ms, TimePoint{} + 2ms, TimePoint{} + 3ms});
}

TEST_CASE("shipped scenarios load and name their profile folders", "[sim][scenario]") {
  for (const char* f : {"traffic", "traffic-rush-hour", "game", "clockwork-slo-sweep", "diurnal-100gpu", "cluster-1000gpu",
                        "game-cpu", "traffic-cpu"}) {
    const Scenario sc = load_scenario(kRoot / "sim/scenarios" / (std::string(f) + ".json"));
    CHECK(sc.name == f);
    CHECK(std::filesystem::is_directory(sc.profile_dir));
    CHECK(sc.nominal_rate() > 0);
  }
  const Scenario g = load_scenario(kRoot / "sim/scenarios/game.json");
  CHECK(g.queries.size() == 24);
  // The 4 ResNet-50 variants declare one shared prefix; the LeNet variants none.
  int with_prefix = 0;
  for (const auto& m : g.models) {
    const bool rn = m.name.rfind("resnet50_", 0) == 0;
    CHECK(m.prefix_key == (rn ? "resnet50" : ""));
    with_prefix += rn ? 1 : 0;
    if (rn) CHECK(m.prefix_fraction == Approx(0.98));
  }
  CHECK(with_prefix == 4);
  // The CPU set's game runs the real LeNet (zoo "lenet") for the digits, not a stand-in.
  const Scenario gc = load_scenario(kRoot / "sim/scenarios/game-cpu.json");
  REQUIRE(gc.models.size() == g.models.size());
  for (const auto& m : gc.models)
    CHECK(m.profile.model() == (m.name.rfind("resnet50_", 0) == 0 ? "resnet50" : "lenet"));
  const Scenario t = load_scenario(kRoot / "sim/scenarios/traffic.json");
  CHECK(t.queries[0].stage_multipliers() == std::vector<double>{1.0, 1.0, 2.0});
  CHECK(t.queries[0].longest_path() == 2);
}

TEST_CASE("a bad scenario names the file, the field and what was expected", "[sim][scenario]") {
  const std::string prof = (kRoot / "sim/profiles/h200-2026-11-30").string();
  auto scenario = [&](const std::string& models, const std::string& queries) {
    return "{\"name\": \"x\", \"profiles\": \"" + prof + "\", \"models\": " + models + ", \"queries\": " + queries + "}";
  };
  const std::string ok_models = R"([{"name": "r", "profile": "resnet50@h200-fp16.json"}])";
  const std::string ok_query = R"([{"name": "q", "slo_ms": 50, "stages": [{"name": "s", "model": "r"}], "rate_rps": 10}])";
  CHECK(error_of(write_temp("ok.json", scenario(ok_models, ok_query))).empty());
  auto e = error_of(write_temp("broken.json", "{\"name\": "));
  CHECK_THAT(e, Catch::Contains("broken.json") && Catch::Contains("not valid JSON"));
  e = error_of(write_temp("noprof.json", scenario(R"([{"name": "r", "profile": "lenet@h200.json"}])", ok_query)));
  CHECK_THAT(e, Catch::Contains("noprof.json") && Catch::Contains("models[0].profile") && Catch::Contains("lenet@h200.json"));
  e = error_of(write_temp("unknown.json", scenario(ok_models, R"([{"name": "q", "slo_ms": 50, "stages": [{"name": "s", "model": "lenet"}], "rate_rps": 10}])")));
  CHECK_THAT(e, Catch::Contains("queries[0].stages[0].model") && Catch::Contains("'lenet'"));
  e = error_of(write_temp("slo.json", scenario(ok_models, R"([{"name": "q", "slo_ms": -5, "stages": [{"name": "s", "model": "r"}], "rate_rps": 10}])")));
  CHECK_THAT(e, Catch::Contains("queries[0].slo_ms") && Catch::Contains("> 0"));
  e = error_of(write_temp("rate.json", scenario(ok_models, R"([{"name": "q", "slo_ms": 50, "stages": [{"name": "s", "model": "r"}], "rate_rps": "fast"}])")));
  CHECK_THAT(e, Catch::Contains("queries[0].rate_rps") && Catch::Contains("number"));
  e = error_of(write_temp("noise.json", "{\"name\": \"x\", \"profiles\": \"" + prof +
                                            "\", \"noise\": {\"distribution\": \"cauchy\"}, \"models\": " + ok_models +
                                            ", \"queries\": " + ok_query + "}"));
  CHECK_THAT(e, Catch::Contains("noise.distribution") && Catch::Contains("lognormal"));
  e = error_of(write_temp("prefix.json", scenario(R"([{"name": "r", "profile": "resnet50@h200-fp16.json", "prefix": {"key": "rn", "fraction": 1.5}}])", ok_query)));
  CHECK_THAT(e, Catch::Contains("prefix.json") && Catch::Contains("models[0].prefix.fraction") && Catch::Contains("(0, 1)"));
  e = error_of(write_temp("prefixkey.json", scenario(R"([{"name": "r", "profile": "resnet50@h200-fp16.json", "prefix": {"fraction": 0.9}}])", ok_query)));
  CHECK_THAT(e, Catch::Contains("models[0].prefix.key"));
  // An SLO no plan meets: ResNet-50 takes 3.1 ms at batch 1 -> a 5 ms SLO is refused by name.
  auto sc = load_scenario(write_temp("tight.json", scenario(ok_models, R"([{"name": "q", "slo_ms": 5, "stages": [{"name": "s", "model": "r"}], "rate_rps": 10}])")));
  CHECK_THROWS_WITH(simulate(sc, {.gpus = 2, .duration = 1s}), Catch::Contains("tight.json") && Catch::Contains("SLO"));
  CHECK_THROWS_WITH(simulate(sc, {.gpus = 0}), Catch::Contains("GPU count"));
  CHECK_THROWS_AS(parse_system("tensorrt"), nexus::Error);
  CHECK_THROWS_WITH(parse_ablations("squishy,magic"), Catch::Contains("'magic'"));
}

TEST_CASE("batch-oblivious allocator: GPUs in proportion to rate (hand-checked)", "[sim][baselines]") {
  const std::map<std::string, BatchProfile> profiles{{"m", linear("m", 1000, 4000, 32)}};
  runtime::PlanRequest req;
  req.num_devices = 4;
  req.profiles = &profiles;
  req.sessions = {{"a", "m", 100ms, 100}, {"b", "m", 100ms, 100}, {"c", "m", 100ms, 200}};
  // Shares 1, 1, 2 of 4 GPUs: whole GPUs, one model each.
  for (bool one : {true, false}) {
    const Plan p = make_batch_oblivious_planner({.one_model_per_gpu = one})(req);
    REQUIRE(p.num_gpus() == 4);
    std::map<std::string, int> gpus;
    for (const auto& g : p.gpus) {
      CHECK(g.sessions.size() == 1);
      for (const auto& a : g.sessions) ++gpus[a.session];
      // 2ℓ(b) <= 100 ms with ℓ(b) = b + 4 ms: b = 46 -> capped at 32.
      CHECK(g.sessions[0].batch == 32);
    }
    CHECK(gpus == std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 2}});
  }
  // 2 GPUs, rates 100/100/200: shares 0.5/0.5/1. TF-Serving style packs the halves onto one GPU;
  // Clipper gives every model a GPU while they last: c and a get one each, b shares (least loaded).
  req.num_devices = 2;
  const Plan shared = make_batch_oblivious_planner({.fixed_batch = 8})(req);
  REQUIRE(shared.num_gpus() == 2);
  CHECK(shared.gpus[0].sessions.size() == 1);
  CHECK(shared.gpus[0].sessions[0].session == "c");
  CHECK(shared.gpus[0].sessions[0].batch == 8);
  CHECK(shared.gpus[1].sessions.size() == 2);
  const Plan clipper = make_batch_oblivious_planner({.one_model_per_gpu = true})(req);
  std::size_t total = 0;
  for (const auto& g : clipper.gpus) total += g.sessions.size();
  CHECK(total == 3);
  CHECK(clipper.route("c").size() == 1);
  // Even split budgets replace the engine's.
  const Plan even = make_batch_oblivious_planner({.budgets = {{"a", 20ms}}})(req);
  CHECK(even.stage_budgets.at("a") == 20ms);
}

TEST_CASE("each baseline on a small hand-checked trace", "[sim][baselines]") {
  // One GPU, ℓ(b) = 1 ms·b + 4 ms. Uniform 500 req/s, 100 ms SLO.
  // Nexus plans B = 48 -> capped at 32 (2ℓ(32) = 72 ms <= 100): capacity 32/36 ms = 889 req/s.
  const auto prof = linear("m", 1000, 4000, 32);
  const Scenario light = one_model(500, 100ms, prof);
  for (auto sys : {System::kNexus, System::kClipper, System::kTfServing, System::kTriton}) {
    const SimResult r = simulate(light, {.gpus = 1, .system = sys, .seed = 1});
    INFO(to_string(sys));
    CHECK(r.submitted == 2000);
    CHECK(r.good_rate == 1.0);
    CHECK(r.dropped + r.rejected == 0);
  }
  // Overload at 1500 req/s. TF-Serving (max batch 32, no SLO awareness) never drops: its
  // capacity is 32/36 ms = 889 req/s, so its queue grows and late requests still complete.
  const Scenario heavy = one_model(1500, 100ms, prof, 2s);
  const SimResult tf = simulate(heavy, {.gpus = 1, .system = System::kTfServing});
  CHECK(tf.dropped == 0);
  CHECK(tf.completed + tf.rejected == tf.submitted);
  CHECK(tf.good_rate < 0.5);
  // Nexus early drop sheds the excess and keeps serving ~889 req/s within the SLO.
  const SimResult nx = simulate(heavy, {.gpus = 1, .system = System::kNexus});
  CHECK(nx.dropped > 0);
  CHECK(nx.throughput_rps == Approx(889).epsilon(0.06));
  // Triton drops only requests already past their deadline (queue timeout): everything it
  // completes may be late, but it drops something under overload.
  const SimResult tr = simulate(heavy, {.gpus = 1, .system = System::kTriton});
  CHECK(tr.dropped > 0);
  // Clipper (AIMD + lazy drop) serves some but loses more than Nexus.
  const SimResult cl = simulate(heavy, {.gpus = 1, .system = System::kClipper});
  CHECK(cl.throughput_rps < nx.throughput_rps);
}

TEST_CASE("the simulator is deterministic for a seed", "[sim][determinism]") {
  const Scenario sc = load_scenario(kRoot / "sim/scenarios/traffic.json");
  SimOptions o{.gpus = 4, .system = System::kNexus, .duration = 3s, .seed = 42, .load_scale = 4.0};
  const SimResult a = simulate(sc, o), b = simulate(sc, o);
  CHECK(a.submitted == b.submitted);
  CHECK(a.good == b.good);
  CHECK(a.dropped == b.dropped);
  CHECK(a.stage_items == b.stage_items);
  CHECK(a.p99_latency_ms == b.p99_latency_ms);
  o.seed = 43;
  const SimResult c = simulate(sc, o);
  CHECK(c.stage_items != a.stage_items);  // fan-outs are drawn from the seed
}

TEST_CASE("no request is lost at 1,000 simulated GPUs", "[sim][scale]") {
  const Scenario sc = load_scenario(kRoot / "sim/scenarios/cluster-1000gpu.json");
  // 0.3 virtual seconds of ~134k req/s over 1,000 GPUs; simulate() itself checks that every
  // submitted request ended in exactly one terminal state and nothing is in flight.
  const SimResult r = simulate(sc, {.gpus = 1000, .duration = 300ms, .seed = 3});
  CHECK(r.submitted_total > 30000);
  CHECK(r.completed + r.dropped + r.rejected + r.failed == r.submitted);
  CHECK(r.gpus_used_avg > 300);
  CHECK(r.good_rate > 0.99);
}

TEST_CASE("nexus runs the library's executor defaults; --ablate duty_cycle is the paper's paced schedule",
          "[sim][baselines]") {
  // One GPU, ℓ(b) = 1 ms·b + 4 ms, Poisson 400 req/s, 30 ms SLO. The packer plans a residual GPU:
  // b = largest with ℓ(b) + b/r <= 30 ms -> b = 8 (12 + 20 = 32 > 30 → b = 7: 11 + 17.5 = 28.5),
  // d = b / r ≈ 17.5 ms. Paced, a cycle runs at most b of the Poisson(b) arrivals of one cycle;
  // the excess waits a second cycle, 2d + ℓ(b) > SLO, and is dropped: E[(N−b)+]/b ≈ 14% for b = 7.
  // Work-conserving runs the excess at once and drops almost nothing.
  auto sc = one_model(400, 30ms, linear("m", 1000, 4000, 32), 6s);
  sc.queries[0].arrivals.shape = ArrivalShape::kPoisson;
  const SimResult wc = simulate(sc, {.gpus = 1, .system = System::kNexus, .seed = 5});
  CHECK(wc.executor == "work_conserving");
  Ablations paced;
  paced.duty_cycle = true;
  const SimResult pc = simulate(sc, {.gpus = 1, .system = System::kNexus, .ablate = paced, .seed = 5});
  CHECK(pc.executor == "duty_cycle");
  CHECK(wc.good_rate > 0.99);
  const double lost = double(pc.dropped) / double(pc.submitted);
  CHECK(lost > 0.05);
  CHECK(lost < 0.25);
}

TEST_CASE("tfserving and triton: co-located models contend; nexus and clipper take turns", "[sim][baselines]") {
  // Two models, ℓ(b) = 10 ms whatever b, on one GPU (the allocator co-locates both halves).
  // Poisson 60 req/s each: batches of the two often overlap. Round robin (nexus, clipper) keeps
  // one batch on the device; contending (tfserving, triton), overlapping batches share it.
  auto sc = one_model(60, 200ms, linear("m", 0, 10000, 32), 4s);
  sc.models.push_back({"n", {}, linear("n", 0, 10000, 32)});
  ScenarioQuery q2 = sc.queries[0];
  q2.name = "q2";
  q2.stages[0].model = "n";
  sc.queries.push_back(q2);
  for (auto& q : sc.queries) q.arrivals.shape = ArrivalShape::kPoisson;
  for (auto sys : {System::kNexus, System::kClipper, System::kTfServing, System::kTriton}) {
    INFO(to_string(sys));
    const SimResult r = simulate(sc, {.gpus = 1, .system = sys, .seed = 3});
    const bool contend = sys == System::kTfServing || sys == System::kTriton;
    CHECK(r.executor == (contend ? "concurrent_sessions" : "work_conserving"));
    CHECK(r.completed + r.dropped + r.rejected + r.failed == r.submitted);
    CHECK(r.good_rate > 0.99);
  }
}

TEST_CASE("declared prefixes reach the Engine; --ablate prefix and the baselines run without", "[sim][prefix]") {
  const Scenario g = load_scenario(kRoot / "sim/scenarios/game.json");
  const SimOptions base{.gpus = 4, .duration = 1s, .seed = 2, .load_scale = 0.5};
  const SimResult on = simulate(g, base);
  CHECK(on.prefix_groups == 4);
  CHECK(on.prefix_batching);
  SimOptions off = base;
  off.ablate.prefix = true;
  CHECK(parse_ablations("all").prefix);
  SimOptions clipper = base;
  clipper.system = System::kClipper;
  const SimResult cl = simulate(g, clipper);
  CHECK_FALSE(cl.prefix_batching);
  // The bound is the workload's (the group merged): the same for every system and ablation.
  const SimResult ab = simulate(g, off);
  CHECK_FALSE(ab.prefix_batching);
  CHECK(on.lower_bound_gpus > 0);
  CHECK(ab.lower_bound_gpus == on.lower_bound_gpus);
  CHECK(cl.lower_bound_gpus == on.lower_bound_gpus);
  CHECK(cl.lower_bound_gpus_mean_latency == on.lower_bound_gpus_mean_latency);
}

namespace {
// Two models a, b declaring the prefix "k" at `fraction`; qa: a at 600 req/s (SLO slo_a), qb: b at
// 200 req/s (slo_b), one stage each, uniform arrivals.
Scenario two_declared(BatchProfile a, BatchProfile b, double fraction, std::chrono::milliseconds slo_a,
                      std::chrono::milliseconds slo_b) {
  Scenario sc = one_model(600, slo_a, a, 3s);
  sc.models[0] = {"a", {}, std::move(a), "k", fraction};
  sc.models.push_back({"b", {}, std::move(b), "k", fraction});
  sc.queries[0].stages[0].model = "a";
  ScenarioQuery qb = sc.queries[0];
  qb.name = "qb";
  qb.slo = slo_b;
  qb.stages[0].model = "b";
  qb.arrivals.rate_rps = 200;
  sc.queries.push_back(qb);
  return sc;
}
}  // namespace

TEST_CASE("the simulator's lower bound counts a prefix group at the better of merged and alone, whatever the system",
          "[sim][prefix]") {
  // Both models ℓ(b) = b + 4 ms, b <= 32, fraction 0.5; qa 100 ms SLO, qb 60 ms.
  // Each on its own (B = largest with 2ℓ(B) <= SLO, throughput B/ℓ(B) rises with B):
  //   a: B = 32 (2·36 <= 100), T = 32/36 ms = 888.9/s;  b: B = 26 (2·30 <= 60), T = 866.7/s;
  //   Σ R/T = 600/888.9 + 200/866.7 = 0.675 + 0.2308 = 0.9058.
  // Merged as the Engine plans the group: one session at 800 req/s under the tightest SLO
  // (60 ms); ℓ_group(B) = ℓ_prefix(B) + Σ ℓ_suffix_k(n_k), prefix = suffix = ½ℓ, shares 3:1.
  // For B >= 3 both shares are > 0: 0.5B + 2 + 0.5·n_a + 2 + 0.5·n_b + 2 = B + 6 ms.
  // B = 24 (n = 18/6): ℓ = 30 ms, 2·30 <= 60; B = 25: 31 ms, too slow. T = 24/30 ms = 800/s:
  // 800/800 = 1.0 merged, worse than alone (each fills its batches; merging adds a suffix
  // launch and the tighter SLO), so the bound is 0.9058.
  Scenario sc = two_declared(linear("a", 1000, 4000, 32), linear("b", 1000, 4000, 32), 0.5, 100ms, 60ms);
  const double alone = 600.0 * 36 / 32000 + 200.0 * 30 / 26000;
  const SimOptions base{.gpus = 2, .system = System::kNexus, .seed = 4};
  const SimResult nx = simulate(sc, base);
  CHECK(nx.prefix_batching);
  CHECK(nx.lower_bound_gpus == Approx(alone).margin(1e-9));
  CHECK(nx.lower_bound_gpus_mean_latency == Approx(alone).margin(1e-9));
  CHECK(nx.good_rate > 0.99);
  // The same bound where the system runs each model alone.
  SimOptions off = base;
  off.ablate.prefix = true;
  const SimResult ab = simulate(sc, off);
  CHECK_FALSE(ab.prefix_batching);
  CHECK(ab.lower_bound_gpus == nx.lower_bound_gpus);
  CHECK(ab.lower_bound_gpus_mean_latency == nx.lower_bound_gpus_mean_latency);
  for (auto sys : {System::kClipper, System::kTfServing, System::kTriton}) {
    SimOptions o = base;
    o.system = sys;
    INFO(to_string(sys));
    const SimResult r = simulate(sc, o);
    CHECK_FALSE(r.prefix_batching);
    CHECK(r.lower_bound_gpus == nx.lower_bound_gpus);
    CHECK(r.lower_bound_gpus_mean_latency == nx.lower_bound_gpus_mean_latency);
  }

  // Where merging pays: b has a 40 ms fixed cost (ℓ_b(b) = b + 40 ms) and rides on a's prefix
  // (the group's prefix is member 0's profile), fraction 0.9, both SLOs 100 ms.
  //   Alone: a as above 600/888.9 = 0.675; b: B = 10 (2·50 <= 100), T = 200/s: 200/200 = 1.0;
  //   Σ = 1.675.  Merged: ℓ_group(B) = 0.9(B + 4) + 0.1(n_a + 4) + 0.1(n_b + 40) = B + 8 ms,
  //   B = 32 (2·40 <= 100; n = 24/8), T = 32/40 ms = 800/s: 800/800 = 1.0, the bound.
  Scenario het = two_declared(linear("a", 1000, 4000, 32), linear("b", 1000, 40000, 32), 0.9, 100ms, 100ms);
  const SimResult h = simulate(het, base);
  CHECK(h.lower_bound_gpus == Approx(1.0).margin(1e-9));
  SimOptions hc = base;
  hc.system = System::kClipper;
  CHECK(simulate(het, hc).lower_bound_gpus == h.lower_bound_gpus);
  het.models[0].prefix_key = het.models[1].prefix_key = "";
  CHECK(simulate(het, base).lower_bound_gpus == Approx(600.0 * 36 / 32000 + 1.0).margin(1e-9));
}
