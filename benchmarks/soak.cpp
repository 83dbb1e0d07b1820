// Soak: the real threaded Engine on the CPU backend for a long run (default 10 minutes) at 90% of
// its planned capacity, with a plan swap (Engine::replan) every 10 s and a burst at 10x the rate
// for 1 s every minute. Checks the serving invariant over the whole run and watches memory.
//
//   soak [--minutes 10] [--load 0.9] [--slo-ms 100] [--swap-s 10] [--burst-every-s 60]
//        [--burst-s 1] [--burst-x 10] [--seed 1] [--out FILE]
//
// Model: a small CNN ([3, 64, 64] -> 2 convs -> FC 10, seeded weights) on CpuBackend (1 thread),
// its batching profile measured here with nexus::Profiler. Planned capacity: the largest
// b / ℓ(b) over batches with 2ℓ(b) <= SLO (the saturated throughput the squishy packer plans
// with, paper §6.1). Arrivals: Poisson at load × capacity (× burst-x inside bursts).
// Prints one JSON object: lost and duplicated (must be 0), outcomes, the good rate outside the
// bursts (and outside bursts + 5 s of recovery), plan swaps, RSS after warm-up (60 s), peak
// (VmHWM) and final, and the RSS per minute.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/profile/profiler.hpp"
#include "nexus/runtime/engine.hpp"

using namespace nexus;
using namespace nexus::runtime;
using Steady = std::chrono::steady_clock;

namespace {

Tensor seeded(Shape s, std::mt19937& g, float scale) {
  Tensor t(std::move(s));
  std::normal_distribution<float> n(0.f, scale);
  for (auto& x : t.values()) x = n(g);
  return t;
}

model::Graph small_cnn() {
  std::mt19937 g(7);
  model::GraphBuilder b("soak_cnn");
  auto x = b.input("image", Shape{3, 64, 64});
  model::Conv2DAttrs c3{.kernel_h = 3, .kernel_w = 3};
  x = b.relu("relu1", b.conv2d("conv1", x, seeded(Shape{32, 3, 3, 3}, g, 0.2f), seeded(Shape{32}, g, 0.1f), c3));
  x = b.max_pool("pool1", x, {});
  x = b.relu("relu2", b.conv2d("conv2", x, seeded(Shape{64, 32, 3, 3}, g, 0.05f), seeded(Shape{64}, g, 0.1f), c3));
  x = b.global_avg_pool("gap", x);
  x = b.fully_connected("fc", b.flatten("flat", x), seeded(Shape{10, 64}, g, 0.2f), seeded(Shape{10}, g, 0.1f));
  b.output(b.softmax("prob", x));
  return std::move(b).build();
}

// Resident set now (VmRSS) and peak (VmHWM), bytes.
std::pair<std::size_t, std::size_t> rss() {
  std::ifstream in("/proc/self/status");
  std::string k;
  std::size_t now = 0, peak = 0;
  while (in >> k) {
    std::size_t v = 0;
    if (k == "VmRSS:") in >> v, now = v * 1024;
    else if (k == "VmHWM:") in >> v, peak = v * 1024;
  }
  return {now, peak};
}

double arg(int argc, char** argv, const std::string& name, double def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return std::atof(argv[i + 1]);
  return def;
}

std::string sarg(int argc, char** argv, const std::string& name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return argv[i + 1];
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  const double minutes = arg(argc, argv, "minutes", 10);
  const double load = arg(argc, argv, "load", 0.9);
  const auto slo = std::chrono::microseconds(static_cast<long>(1000 * arg(argc, argv, "slo-ms", 100)));
  const double swap_s = arg(argc, argv, "swap-s", 10);
  const double burst_every_s = arg(argc, argv, "burst-every-s", 60);
  const double burst_s = arg(argc, argv, "burst-s", 1);
  const double burst_x = arg(argc, argv, "burst-x", 10);
  const auto seed = static_cast<std::uint64_t>(arg(argc, argv, "seed", 1));
  const std::string out_file = sarg(argc, argv, "out");

  auto graph = std::make_shared<model::Graph>(small_cnn());
  auto make = [] { return std::make_unique<CpuBackend>(CpuBackendOptions{.threads = 1}); };
  // B_max searched up to 16 (a plateau stops it early); 20 timed runs per batch size.
  Profiler profiler(make, ProfilerOptions{.repeats = 20, .search_repeats = 5, .max_batch = 16, .min_gain = 0.0,
                                          .batches = {1, 2, 4, 8, 16}});
  const BatchProfile profile = profiler.profile(*graph, "soak_cnn");
  double capacity = 0;
  int plan_b = 1;
  for (int b = 1; b <= profile.max_batch(); ++b) {
    const double l = std::chrono::duration<double>(profile.latency(b)).count();
    if (2 * l <= std::chrono::duration<double>(slo).count() && b / l > capacity) {
      capacity = b / l;
      plan_b = b;
    }
  }
  if (capacity <= 0) {
    std::fprintf(stderr, "soak: no batch meets 2 l(b) <= SLO %.0f ms on this machine\n", slo.count() / 1e3);
    return 2;
  }
  const double rate = load * capacity;

  Engine e({.devices = "cpu", .max_queue_per_session = 1u << 16, .cpu_workers = 1,
            .epoch = std::chrono::microseconds(0), .seed = seed});
  e.load_model({.name = "soak_cnn", .profile = profile,
                .make_backend = [&](const DeviceInfo&) -> std::unique_ptr<Backend> { return make(); },
                .graph = graph});
  e.add_query({.name = "q", .slo = slo, .expected_rate_rps = rate, .stages = {{.name = "s", .model = "soak_cnn"}}});

  const auto t0 = Steady::now();
  const auto total = std::chrono::duration<double>(60.0 * minutes);
  auto in_burst = [&](double t) { return std::fmod(t, burst_every_s) >= burst_every_s - burst_s; };
  auto recovering = [&](double t) {
    const double since = std::fmod(t, burst_every_s) - (burst_every_s - burst_s);
    return since >= 0 || std::fmod(t, burst_every_s) < std::max(0.0, 5.0 - burst_s);
  };

  // Per request: submit second (float) and whether it was a burst request; 0 = not yet ended.
  std::mutex mu;
  std::vector<float> submitted_at;   // index = id - first id
  std::vector<std::uint8_t> ends;    // number of results seen per request
  RequestId first_id = 0;
  std::atomic<bool> producing{true}, stop_poll{false};
  std::map<std::string, std::uint64_t> outcomes;
  std::uint64_t good_outside = 0, n_outside = 0, good_calm = 0, n_calm = 0, good_burst = 0, n_burst = 0;
  std::uint64_t unknown = 0;

  std::thread poller([&] {
    while (true) {
      auto rs = e.poll(4096, std::chrono::milliseconds(20));
      std::lock_guard lock(mu);
      for (const auto& r : rs) {
        const std::size_t i = r.id - first_id;
        if (r.id < first_id || i >= ends.size()) {
          ++unknown;
          continue;
        }
        ++ends[i];
        ++outcomes[r.ok() ? std::string(r.met_slo ? "completed_good" : "completed_late") : std::string(to_string(r.reason))];
        const double t = submitted_at[i];
        const bool g = r.met_slo;
        if (in_burst(t)) {
          ++n_burst, good_burst += g;
        } else {
          ++n_outside, good_outside += g;
          if (!recovering(t)) ++n_calm, good_calm += g;
        }
      }
      if (stop_poll && rs.empty()) break;
    }
  });

  std::atomic<int> swaps{0};
  std::thread swapper([&] {
    auto next = t0 + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(swap_s));
    while (producing) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (Steady::now() >= next) {
        e.replan();
        ++swaps;
        next += std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(swap_s));
      }
    }
  });

  std::vector<std::size_t> rss_per_minute;
  std::size_t rss_warm = 0;
  std::mt19937_64 g(seed);
  std::exponential_distribution<double> gap(1.0);
  double t = 0;
  int next_sample_s = 1;
  std::uint64_t n_submitted = 0;
  while (t < total.count()) {
    const double r = in_burst(t) ? rate * burst_x : rate;
    t += gap(g) / r;
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(t)));
    {
      std::lock_guard lock(mu);
      const RequestId id = e.submit("q", Tensor(Shape{3, 64, 64}));
      if (first_id == 0) first_id = id;
      const std::size_t i = id - first_id;
      if (i >= ends.size()) {
        ends.resize(i + 1, 0);
        submitted_at.resize(i + 1, 0.f);
      }
      submitted_at[i] = static_cast<float>(t);
      ++n_submitted;
    }
    if (t >= next_sample_s) {
      if (next_sample_s % 60 == 0) rss_per_minute.push_back(rss().first);
      if (next_sample_s == 60) rss_warm = rss().first;
      ++next_sample_s;
    }
  }
  producing = false;
  swapper.join();
  e.shutdown();
  stop_poll = true;
  poller.join();
  const auto [rss_final, rss_peak] = rss();

  std::uint64_t lost = 0, duplicated = 0;
  for (auto c : ends) {
    lost += c == 0;
    duplicated += c > 1 ? c - 1 : 0;
  }
  const EngineStats st = e.stats();
  nlohmann::json j;
  j["benchmark"] = "soak";
  j["machine"] = "2-core x86_64 CPU box, shared with other sessions' builds and benchmarks, no GPU";
  j["minutes"] = minutes;
  j["model"] = "soak_cnn [3,64,64] on CpuBackend (1 thread)";
  j["slo_ms"] = slo.count() / 1e3;
  j["profile_latency_us"] = nlohmann::json::object();
  for (int b : {1, 2, 4, 8, 16, 32})
    if (b <= profile.max_batch()) j["profile_latency_us"][std::to_string(b)] = profile.latency(b).count();
  j["planned_capacity_rps"] = capacity;
  j["planned_batch"] = plan_b;
  j["load"] = load;
  j["rate_rps"] = rate;
  j["bursts"] = {{"every_s", burst_every_s}, {"length_s", burst_s}, {"factor", burst_x}};
  j["plan_swaps"] = swaps.load();
  j["submitted"] = n_submitted;
  j["lost"] = lost;
  j["duplicated"] = duplicated;
  j["unknown_results"] = unknown;
  j["outcomes"] = outcomes;
  j["engine_stats"] = {{"submitted", st.submitted}, {"completed", st.completed}, {"good", st.good},
                       {"dropped", st.dropped}, {"rejected", st.rejected}, {"failed", st.failed},
                       {"in_flight", st.in_flight}};
  j["good_rate_outside_bursts"] = n_outside ? double(good_outside) / double(n_outside) : 0.0;
  j["good_rate_outside_bursts_and_5s_recovery"] = n_calm ? double(good_calm) / double(n_calm) : 0.0;
  j["good_rate_in_bursts"] = n_burst ? double(good_burst) / double(n_burst) : 0.0;
  j["requests_outside_bursts"] = n_outside;
  j["requests_in_bursts"] = n_burst;
  j["rss_after_warmup_bytes"] = rss_warm;
  j["rss_peak_bytes"] = rss_peak;
  j["rss_final_bytes"] = rss_final;
  j["rss_per_minute_bytes"] = rss_per_minute;
  j["note"] = "per-request bookkeeping (5 bytes per request) is part of the RSS";
  const std::string text = j.dump(2);
  std::printf("%s\n", text.c_str());
  if (!out_file.empty()) std::ofstream(out_file) << text << "\n";
  return lost == 0 && duplicated == 0 && unknown == 0 ? 0 : 1;
}
