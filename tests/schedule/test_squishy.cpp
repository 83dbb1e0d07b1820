// SquishyBinPacker: known answers (paper Table 2 / lecture, the saturate split, the notes'
// vgg16 max batches), rejections and bad input, and invariants over thousands of random
// workloads, plus the exact reference on small instances.

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "helpers.hpp"
#include "nexus/core/error.hpp"
#include "nexus/schedule/exact_packer.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

using namespace nexus;
using namespace nexus::test;

TEST_CASE("paper Table 2: A and B share one GPU, C gets its own (notes §2.3 item 6)",
          "[schedule][known]") {
  const auto profiles = lecture_profiles();
  const std::vector<Session> sessions{session("A", "A", 200, 64), session("B", "B", 250, 32),
                                      session("C", "C", 250, 32)};
  const Plan plan = SquishyBinPacker().pack(sessions, profiles);
  REQUIRE(plan.num_gpus() == 2);
  CHECK(plan.rejected.empty());
  const GpuPlan* ga = plan.gpu_of("A");
  REQUIRE(ga != nullptr);
  CHECK(ga == plan.gpu_of("B"));
  CHECK(ga != plan.gpu_of("C"));
  CHECK_FALSE(ga->saturated);
  // A at batch 8 (75 ms) in a duty cycle of 125 ms = 8/64 s; B at batch 4 (50 ms): 125 + 50 ≤ 250.
  CHECK(ga->duty_cycle == 125000us);
  CHECK(ga->find("A")->batch == 8);
  CHECK(ga->find("A")->latency == 75000us);
  CHECK(ga->find("B")->batch == 4);
  CHECK(ga->find("B")->latency == 50000us);
  CHECK(ga->occupancy == Approx(1.0));
  CHECK(ga->memory_bytes == 1500000000u + 1000000000u);
  // C alone: largest b with ℓ(b) + b/32 ≤ 250 ms. Table batches give b = 4; with the linear
  // interpolation of the sparse table b = 5 (ℓ = 68.75 ms, 5/32 s = 156.25 ms → 225 ms).
  const GpuPlan* gc = plan.gpu_of("C");
  CHECK(gc->find("C")->batch == 5);
  CHECK(gc->duty_cycle == 156250us);
  // Lower bound: 64/160 + 32/128 + 32/128 = 0.9 GPUs.
  CHECK(plan.lower_bound_gpus == Approx(0.9));
  CHECK(validate_plan(plan, sessions, profiles, {}).empty());
  // Routing: each session has one GPU with weight 1.
  CHECK(plan.route("A").size() == 1);
  CHECK(plan.route("A")[0].weight == Approx(1.0));
  // The exact reference agrees: {A,B} fits one GPU, {A,C} does not, 2 GPUs are optimal.
  CHECK(fits_one_gpu({sessions[0], sessions[1]}, profiles, {}));
  CHECK_FALSE(fits_one_gpu({sessions[0], sessions[2]}, profiles, {}));
  CHECK(exact_min_gpus(sessions, profiles, {}) == 2);
}

TEST_CASE("lecture: memory limits change who shares", "[schedule][known]") {
  const auto profiles = lecture_profiles();
  const std::vector<Session> sessions{session("A", "A", 200, 64), session("B", "B", 250, 32),
                                      session("C", "C", 250, 32)};
  PackerOptions o;
  // A(8) 1.5 GB + B(4) 1.0 GB = 2.5 GB does not fit in 2.4 GB; B(5) 1.125 GB + C(5) 1.125 GB
  // = 2.25 GB does (d = 156.25 ms: 68.75 + 60 ms ≤ d), so B moves to C: still 2 GPUs.
  o.gpu_memory_bytes = 2400000000;
  Plan plan = SquishyBinPacker(o).pack(sessions, profiles);
  CHECK(plan.num_gpus() == 2);
  CHECK(plan.gpu_of("B") == plan.gpu_of("C"));
  CHECK(plan.gpu_of("B")->memory_bytes == 2250000000u);
  CHECK(validate_plan(plan, sessions, profiles, o).empty());
  CHECK(exact_min_gpus(sessions, profiles, o) == 2);
  // At 2.2 GB Algorithm 1 finds no merge (it never shortens a cycle below min(d1, d2)), so it
  // uses 3 GPUs. The exact search finds 2: B(4) + C(4) at d = 125 ms: 2.0 GB, 50 + 60 ≤ 125 ms,
  // 125 + 60 ≤ 250 ms. A known gap of the greedy, kept as in the paper.
  o.gpu_memory_bytes = 2200000000;
  plan = SquishyBinPacker(o).pack(sessions, profiles);
  CHECK(plan.num_gpus() == 3);
  CHECK(validate_plan(plan, sessions, profiles, o).empty());
  CHECK(exact_min_gpus(sessions, profiles, o) == 2);
  CHECK(fits_one_gpu({session("B", "B", 250, 32), session("C", "C", 250, 32)}, profiles, o));
}

TEST_CASE("saturate split: 1100 req/s at best 125 req/s (b = 16) → 8 full GPUs + residual",
          "[schedule][known]") {
  // ℓ(b) = 48 + 5b ms: ℓ(16) = 128 ms, so T(16) = 125 req/s; SLO 300 ms ≥ 2·128.
  std::vector<int> b;
  std::vector<double> lat;
  for (int i = 1; i <= 16; ++i) {
    b.push_back(i);
    lat.push_back((48 + 5.0 * i) * 1000);
  }
  ProfileMap profiles;
  profiles.emplace("M", BatchProfile("M", "gpu", b, lat));
  const std::vector<Session> sessions{session("s", "M", 300, 1100)};
  const Plan plan = SquishyBinPacker().pack(sessions, profiles);
  int full = 0;
  for (const auto& g : plan.gpus) {
    if (!g.saturated) continue;
    ++full;
    CHECK(g.sessions[0].batch == 16);
    CHECK(g.duty_cycle == 128000us);
    CHECK(g.sessions[0].rate_rps == Approx(125.0));
  }
  CHECK(full == 8);
  REQUIRE(plan.num_gpus() == 9);
  // Residual 100 req/s: b = 16 (128 + 160 ≤ 300 ms), d = 160 ms, occupancy 0.8.
  const GpuPlan& r = plan.gpus.back();
  CHECK_FALSE(r.saturated);
  CHECK(r.sessions[0].rate_rps == Approx(100.0));
  CHECK(r.sessions[0].batch == 16);
  CHECK(r.duty_cycle == 160000us);
  CHECK(r.occupancy == Approx(0.8));
  CHECK(plan.lower_bound_gpus == Approx(8.8));
  CHECK(plan.route("s").size() == 9);
  CHECK(plan.route("s")[0].weight == Approx(125.0 / 1100));
  CHECK(validate_plan(plan, sessions, profiles, {}).empty());
}

TEST_CASE("notes §8: vgg16 max batch 3/11/24/50 at SLO 50/100/200/400 ms (original rules)",
          "[schedule][known]") {
  // ×1.15 on mean + std, minus 2 ms network and pre/post (mean + std) × 1.15, budget/2.
  const auto profiles = ModelStore(fixture_dir("titanx")).profiles_for("", {1.0, 1.15});
  const BatchProfile& p = profiles.at("vgg16");
  const auto pre = std::chrono::microseconds(5569), post = std::chrono::microseconds(4);
  auto max_batch = [&](int slo_ms) {
    return saturated_batch(p, std::chrono::milliseconds(slo_ms) - 2ms - pre - post);
  };
  CHECK(max_batch(50) == 3);
  CHECK(max_batch(100) == 11);
  CHECK(max_batch(200) == 24);
  CHECK(max_batch(400) == 50);
}

TEST_CASE("residual_batch is Algorithm 1 line 13", "[schedule][known]") {
  const auto profiles = lecture_profiles();
  CHECK(residual_batch(profiles.at("A"), 200ms, 64) == 8);
  CHECK(residual_batch(profiles.at("B"), 250ms, 32) == 5);
  CHECK(residual_batch(profiles.at("A"), 40ms, 64) == 0);
}

TEST_CASE("an SLO no batch meets is rejected with the SLO it needs; the rest is planned",
          "[schedule][errors]") {
  const auto profiles = lecture_profiles();
  const std::vector<Session> sessions{session("tight", "A", 90, 10), session("ok", "B", 250, 32)};
  const Plan plan = SquishyBinPacker().pack(sessions, profiles);
  REQUIRE(plan.rejected.size() == 1);
  CHECK(plan.rejected[0].session == "tight");
  CHECK(plan.rejected[0].required_slo == 100ms);  // 2 × ℓ(1) = 2 × 50 ms
  CHECK_THAT(plan.rejected[0].reason, Catch::Contains("100.000 ms") && Catch::Contains("'A'"));
  CHECK(plan.num_gpus() == 1);
  CHECK(plan.route("tight").empty());
  CHECK(validate_plan(plan, sessions, profiles, {}).empty());
}

TEST_CASE("pre/post-processing and the fixed overhead come out of the SLO", "[schedule]") {
  ProfileMap profiles;
  profiles.emplace("M", BatchProfile("M", "gpu", {1, 2}, {10000, 15000}, {}, {}, 3000, 2000));
  // SLO 24 ms: 24 − 5 = 19 < 2·10 → rejected, needs 25 ms.
  Plan plan = SquishyBinPacker().pack({session("s", "M", 24, 10)}, profiles);
  REQUIRE(plan.rejected.size() == 1);
  CHECK(plan.rejected[0].required_slo == 25ms);
  plan = SquishyBinPacker().pack({session("s", "M", 25, 10)}, profiles);
  CHECK(plan.rejected.empty());
  PackerOptions o;
  o.subtract_pre_post = false;
  o.fixed_overhead = 2ms;
  plan = SquishyBinPacker(o).pack({session("s", "M", 21, 10)}, profiles);
  CHECK(plan.rejected.size() == 1);
  CHECK(plan.rejected[0].required_slo == 22ms);
}

TEST_CASE("a model too big for the GPU is rejected naming the memory", "[schedule][errors]") {
  const auto profiles = lecture_profiles();
  PackerOptions o;
  o.gpu_memory_bytes = 500000000;
  const Plan plan = SquishyBinPacker(o).pack({session("a", "A", 200, 10)}, profiles);
  REQUIRE(plan.rejected.size() == 1);
  CHECK_THAT(plan.rejected[0].reason, Catch::Contains("1000000000 bytes"));
}

TEST_CASE("bad sessions throw naming the session", "[schedule][errors]") {
  const auto profiles = lecture_profiles();
  SquishyBinPacker p;
  CHECK_THROWS_WITH(p.pack({session("x", "A", 200, 0)}, profiles),
                    Catch::Contains("'x'") && Catch::Contains("rate"));
  CHECK_THROWS_WITH(p.pack({session("x", "A", 200, -3)}, profiles), Catch::Contains("rate"));
  CHECK_THROWS_WITH(p.pack({session("x", "A", 0, 5)}, profiles),
                    Catch::Contains("'x'") && Catch::Contains("SLO"));
  CHECK_THROWS_WITH(p.pack({session("x", "nope", 100, 5)}, profiles),
                    Catch::Contains("'x'") && Catch::Contains("'nope'"));
  CHECK_THROWS_WITH(p.pack({session("x", "A", 200, 5), session("x", "B", 200, 5)}, profiles),
                    Catch::Contains("duplicate"));
}

TEST_CASE("max_gpus: admission control serves what fits, in order, and reports the rest",
          "[schedule][errors]") {
  const auto profiles = lecture_profiles();
  const std::vector<Session> sessions{session("A", "A", 200, 64), session("B", "B", 250, 32),
                                      session("C", "C", 250, 32)};
  PackerOptions o;
  o.max_gpus = 1;
  const Plan plan = SquishyBinPacker(o).pack(sessions, profiles);
  CHECK(plan.num_gpus() == 1);
  REQUIRE(plan.rejected.size() == 1);
  CHECK(plan.rejected[0].session == "C");  // {A,B} has occupancy 1.0, {C} 0.44
  CHECK_THAT(plan.rejected[0].reason, Catch::Contains("limit of 1 GPUs"));
}

TEST_CASE("admission order: priority, then running sessions, then rate; in part when a share fits",
          "[schedule]") {
  const auto profiles = lecture_profiles();
  PackerOptions o;
  o.max_gpus = 1;
  // A (64) + B (32) fill one GPU exactly (occupancy 1.0); C (32) alone has occupancy 0.44.
  std::vector<Session> s{session("A", "A", 200, 64), session("B", "B", 250, 32), session("C", "C", 250, 32)};
  SECTION("priority wins over rate") {
    s[2].priority = 1;
    const Plan plan = admit_and_pack(s, profiles, o, {});
    CHECK(plan.num_gpus() == 1);
    CHECK_FALSE(plan.route("C").empty());
    CHECK(plan.planned_rate("C") >= 32 - 1e-9);
    for (const auto& r : plan.rejected) CHECK(r.session != "C");
  }
  SECTION("a running session keeps its place against a newcomer of the same priority") {
    const Plan plan = admit_and_pack(s, profiles, o, {"C"});
    CHECK(plan.planned_rate("C") >= 32 - 1e-9);
    CHECK(plan.num_gpus() == 1);
    // A is admitted next (higher rate) in part: the share of its rate that fits beside C.
    bool a_partial = false;
    for (const auto& r : plan.rejected)
      if (r.session == "A") {
        a_partial = r.served_rps > 0;
        CHECK(r.served_rps == Approx(plan.planned_rate("A")).epsilon(1e-6));
        CHECK(r.demanded_rps == 64);
        CHECK_THAT(r.reason, Catch::Contains("in part"));
      }
    CHECK(a_partial);
    Session a = s[0];
    a.rate_rps = plan.planned_rate("A");
    CHECK(validate_plan(plan, {s[2], a}, profiles, o).empty());
  }
  SECTION("without a limit nothing changes") {
    o.max_gpus = 0;
    const Plan plan = admit_and_pack(s, profiles, o, {"C"});
    CHECK(plan.rejected.empty());
    CHECK(plan.num_gpus() == 2);
  }
}

TEST_CASE("empty input gives an empty plan", "[schedule]") {
  const Plan plan = SquishyBinPacker().pack({}, lecture_profiles());
  CHECK(plan.num_gpus() == 0);
  CHECK(plan.lower_bound_gpus == 0.0);
}

TEST_CASE("property: random workloads always give valid plans", "[schedule][property]") {
  std::mt19937_64 rng(20190727);
  int checked = 0;
  for (int w = 0; w < 2000; ++w) {
    ProfileMap profiles;
    const int models = 1 + static_cast<int>(rng() % 6);
    for (int m = 0; m < models; ++m) {
      const std::string name = "m" + std::to_string(m);
      profiles.emplace(name, random_profile(rng, name, 8 << (rng() % 5)));
    }
    PackerOptions o;
    if (rng() % 3 == 0) o.gpu_memory_bytes = 3000000000 + rng() % 8000000000;
    if (rng() % 4 == 0) o.fixed_overhead = std::chrono::microseconds(rng() % 3000);
    o.consolidate = w % 2 == 1;
    std::vector<Session> sessions;
    const int n = 1 + static_cast<int>(rng() % 30);
    std::uniform_real_distribution<double> slo(10, 500), lograte(std::log(0.5), std::log(3000));
    for (int i = 0; i < n; ++i)
      sessions.push_back(session("s" + std::to_string(i), "m" + std::to_string(rng() % models),
                                 slo(rng), std::exp(lograte(rng))));
    const Plan plan = SquishyBinPacker(o).pack(sessions, profiles);
    const auto errors = validate_plan(plan, sessions, profiles, o);
    INFO("workload " << w << ": " << (errors.empty() ? "" : errors.front()));
    REQUIRE(errors.empty());
    REQUIRE(plan.num_gpus() + 1e-9 >= plan.lower_bound_gpus);
    // Saturated GPUs: one session at duty ℓ(B) with 2ℓ(B) ≤ SLO (validate checks d + ℓ ≤ SLO).
    for (const auto& g : plan.gpus)
      if (g.saturated) REQUIRE((g.sessions.size() == 1 && g.duty_cycle == g.sessions[0].latency));
    // Routing weights sum to 1 for every planned session.
    for (const auto& [id, table] : plan.routes) {
      double sum = 0;
      for (const auto& r : table) sum += r.weight;
      REQUIRE(sum == Approx(1.0));
    }
    // Deterministic: the same input gives the same plan.
    REQUIRE(SquishyBinPacker(o).pack(sessions, profiles).num_gpus() == plan.num_gpus());
    ++checked;
  }
  CHECK(checked == 2000);
}

TEST_CASE("property: squishy never beats the exact optimum; usually equals it",
          "[schedule][exact]") {
  std::mt19937_64 rng(7);
  int equal = 0, total = 0;
  for (int w = 0; w < 150; ++w) {
    ProfileMap profiles;
    for (int m = 0; m < 4; ++m) {
      const std::string name = "m" + std::to_string(m);
      profiles.emplace(name, random_profile(rng, name, 32));
    }
    PackerOptions o;
    if (w % 2) o.gpu_memory_bytes = 4000000000;
    o.consolidate = w % 3 == 0;
    std::vector<Session> sessions;
    const int n = 2 + static_cast<int>(rng() % 6);
    std::uniform_real_distribution<double> slo(40, 400), frac(0.05, 0.9);
    for (int i = 0; i < n; ++i) {
      Session s = session("s" + std::to_string(i), "m" + std::to_string(rng() % 4), slo(rng), 1);
      const BatchProfile& p = profiles.at(s.model);
      const int B = saturated_batch(p, s.slo);
      if (B == 0) continue;
      s.rate_rps = frac(rng) * p.throughput(B);  // residual-only: fits one GPU
      sessions.push_back(s);
    }
    if (sessions.empty()) continue;
    const Plan plan = SquishyBinPacker(o).pack(sessions, profiles);
    if (!plan.rejected.empty()) continue;
    bool split = false;
    for (const auto& [id, t] : plan.routes) split |= t.size() > 1;
    if (split) continue;
    const int opt = exact_min_gpus(sessions, profiles, o);
    REQUIRE(opt >= 1);
    REQUIRE(plan.num_gpus() >= opt);
    REQUIRE(opt + 1e-9 >= plan.lower_bound_gpus);
    equal += plan.num_gpus() == opt;
    ++total;
  }
  CHECK(total > 100);
  CHECK(equal >= total * 8 / 10);
}

TEST_CASE("profiles measured by nexus-profile on the CpuBackend plan cleanly", "[schedule][cpu]") {
  const auto profiles = ModelStore(fixture_dir("cpu")).profiles_for("cpu");
  REQUIRE(profiles.count("face_recognition"));
  std::vector<Session> sessions;
  int i = 0;
  for (const auto& [name, p] : profiles) {
    // An SLO of 4·ℓ(B_max) + pre + post always admits batch B_max.
    const auto slo = 4 * p.latency(p.max_batch()) + p.preprocess() + p.postprocess();
    sessions.push_back({"s" + std::to_string(i++), name, slo, 3 * p.throughput(p.max_batch())});
  }
  const Plan plan = SquishyBinPacker().pack(sessions, profiles);
  CHECK(plan.rejected.empty());
  CHECK(validate_plan(plan, sessions, profiles, {}).empty());
  CHECK(plan.num_gpus() + 1e-9 >= plan.lower_bound_gpus);
}
