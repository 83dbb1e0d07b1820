// Prefix batching (paper §6.3, Fig. 15): K specialised variants of one classifier (a shared
// backbone, a seeded FC head each, zoo/variants.hpp), served on one device under one fixed SLO,
// with and without prefix batching, for K = 1, 2, 5, 10. Prints one JSON row per (K, mode):
//   {"device", "variants", "prefix_batching", "throughput_rps", "good_rate", "memory_bytes", ...}
// plus one "profile" row with the measured latencies.
//
// How each figure is obtained (on the device the run happens on; here the CpuBackend):
//  - ℓ(b): measured on real backends, b = 1, 2, 4, 8, 16 (median of `--runs` timed runs after a
//    warm-up), interpolated by BatchProfile: the whole variant model (what each session runs
//    without prefix batching), the shared prefix and one suffix (PrefixRunner's parts).
//  - throughput_rps: the largest Poisson request rate (spread uniformly over the K variants) at
//    which >= 99% of requests finish within the SLO ("good rate", notes §8), found by bisection.
//    Each probe serves 30 s of traffic in virtual time on one device with the measured ℓ(b):
//    without prefix batching K sessions run round robin (duty cycle), each batch formed by early
//    drop (dispatch::early_drop_decision) with the saturated batch size of the plan; with prefix
//    batching the K sessions are one group session (schedule/prefix_group.hpp: planned with the
//    group profile ℓ_prefix(B) + Σ_k ℓ_suffix(n_k)) whose turn forms one merged batch from the
//    members' queues (dispatch/merged_queue.hpp: early drop on the merged deadline order, drops
//    per member), runs the prefix once, then each member's suffix on its items.
//  - memory_bytes: what the loaded backends hold (Backend::device_bytes: weights + activation
//    arena at max batch): K CpuBackends of the whole model, vs one PrefixRunner (prefix once +
//    K suffixes).
// With --serve engine the serving is the Engine itself instead (runtime/engine.hpp, virtual time
// on one simulated device, "sim:1"): the K variants are loaded with their graphs, so the Engine
// forms the group by hashing at load_model, plans it (squishy packing of the group session) and
// its executor forms the merged batches. Each model's ℓ(b) is the measured whole-model profile;
// the Engine splits it into prefix and suffix by the prefix's share of the MACs (its estimate,
// docs/prefix_batching.md) — the simulated default (--serve sim) uses the measured prefix and
// suffix profiles instead. Noise: SimLatency lognormal with cv >= 0.05.
// --serve engine also prints, first, rows {"engine_memory": true, ...} (engine_memory_rows): the
// process RSS growth and the Engine's reported device bytes with K = 1 and 10 variants loaded on
// the real device (--memory-only: only those rows).
// Options: --serve sim|engine (default sim), --memory-only, --device cpu|cuda (default cpu; cuda: the CudaBackend, device memory), --model mobilenet_v1|resnet50|... (default mobilenet_v1: ResNet-50 takes minutes to
// profile on a shared 2-core box), --classes N (head size, default 100), --slo-ms X (default
// 10 x ℓ_model(1), rounded up to 10 ms), --runs N (default 5), --threads N, --machine "label".
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <malloc.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "nexus/core/log.hpp"
#include "nexus/dispatch/batch_policy.hpp"
#include "nexus/dispatch/merged_queue.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/exec/prefix_runner.hpp"
#include "nexus/model/prefix.hpp"
#include "nexus/model/zoo/variants.hpp"
#include "nexus/profile/batch_profile.hpp"
#include "nexus/runtime/engine.hpp"
#include "nexus/schedule/prefix_group.hpp"
#include "nexus/sim/traffic.hpp"

using namespace nexus;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr int kMaxBatch = 16;
const std::vector<int> kBatches = {1, 2, 4, 8, 16};

struct Args {
  std::string model = "mobilenet_v1";
  std::int64_t classes = 100;
  double slo_ms = 0;
  int runs = 5;
  int threads = 0;
  std::string machine = "2-core x86_64 CPU box, shared";
  std::string device = "cpu";
  std::string serve = "sim";
  bool memory_only = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--memory-only") {
      a.memory_only = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", k.c_str());
      std::exit(2);
    }
    const char* v = argv[++i];
    if (k == "--model") a.model = v;
    else if (k == "--classes") a.classes = std::atoll(v);
    else if (k == "--slo-ms") a.slo_ms = std::atof(v);
    else if (k == "--runs") a.runs = std::max(1, std::atoi(v));
    else if (k == "--threads") a.threads = std::atoi(v);
    else if (k == "--machine") a.machine = v;
    else if (k == "--device") a.device = v;
    else if (k == "--serve") a.serve = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median wall time (µs) of each backend's run at each batch size of kBatches. The backends'
// runs are interleaved (run r of every backend, then run r+1, ...) so that a shared machine's
// changing load affects them alike.
std::vector<BatchProfile> measure(const std::vector<Backend*>& backends,
                                  const std::vector<std::string>& names, int runs) {
  std::vector<std::vector<double>> lat(backends.size());
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int b : kBatches) {
    std::vector<Tensor> xs;
    for (Backend* backend : backends) {
      const Shape item = backend->input_shape(0);
      std::vector<std::int64_t> dims{b};
      for (auto d : item.dims()) dims.push_back(d);
      Tensor x{Shape(dims)};
      for (float& v : x.values()) v = u(rng);
      backend->run({x});  // warm-up
      xs.push_back(std::move(x));
    }
    std::vector<std::vector<double>> t(backends.size());
    for (int r = 0; r < runs; ++r) {
      for (std::size_t i = 0; i < backends.size(); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        backends[i]->run({xs[i]});
        t[i].push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                .count());
      }
    }
    for (std::size_t i = 0; i < backends.size(); ++i) lat[i].push_back(median(t[i]));
  }
  std::vector<BatchProfile> out;
  for (std::size_t i = 0; i < backends.size(); ++i)
    out.emplace_back(names[i], backends[i]->device_name(), kBatches, lat[i]);
  return out;
}

struct Request {
  TimePoint arrival, deadline;
  int member;
};

// Saturated batch size of the plan (notes §2): the largest b whose accumulation time at the
// session's rate plus its own latency fits the SLO, b/r + ℓ(b) <= SLO.
int planned_batch(double rate, const dispatch::LatencyTable& l, Duration slo) {
  int best = 1;
  for (int b = 1; b <= l.max_batch(); ++b) {
    const double wait_s = rate > 0 ? b / rate : 0;
    if (wait_s + std::chrono::duration<double>(l(b)).count() <=
        std::chrono::duration<double>(slo).count())
      best = b;
  }
  return best;
}

struct Served {
  double good_rate = 0;
  double mean_batch = 0;  // mean size of the batches run (merged batches with prefix batching)
};

// Serves `rate` req/s (uniform over k members) in virtual time on one device; see the header.
// Without prefix batching each member is a session with its own turn in the duty cycle; with it
// the members are one group session (schedule/prefix_group.hpp) whose turn forms one merged
// batch from all members' queues (dispatch/merged_queue.hpp: early drop on the merged view,
// drops per member).
Served serve(int k, bool prefix, double rate, Duration slo, const BatchProfile& whole,
             const BatchProfile& pre, const BatchProfile& suf) {
  auto mean = [](const BatchProfile& p, int b) -> Duration {
    return b <= 0 ? Duration{0} : Duration(p.mean_latency(b));
  };
  auto table = [&](const BatchProfile& p) {
    std::vector<Duration> v;
    for (int b = 1; b <= kMaxBatch; ++b) v.push_back(mean(p, b));
    return dispatch::LatencyTable(v);
  };
  const dispatch::LatencyTable l_whole = table(whole);
  std::vector<PrefixGroupMember> members;
  for (int m = 0; m < k; ++m)
    members.push_back({Session{"v" + std::to_string(m), "v" + std::to_string(m),
                               std::chrono::duration_cast<std::chrono::microseconds>(slo),
                               rate / k},
                       suf});
  const dispatch::LatencyTable l_group =
      prefix ? table(group_profile("group", pre, members)) : l_whole;

  const Duration horizon = 30s;
  const std::vector<TimePoint> arrivals = sim::poisson_arrivals(rate, horizon, 7);
  std::mt19937_64 pick(11);
  std::vector<Request> reqs;
  for (TimePoint t : arrivals)
    reqs.push_back({t, t + slo, static_cast<int>(pick() % static_cast<std::uint64_t>(k))});

  const int sessions = prefix ? 1 : k;
  const dispatch::LatencyTable& l = prefix ? l_group : l_whole;
  const int target = planned_batch(rate / sessions, l, slo);
  std::vector<std::deque<Request>> queue(static_cast<std::size_t>(k));
  std::size_t next = 0, good = 0, batches = 0, batched = 0;
  TimePoint now{};
  int turn = 0, idle_turns = 0;
  auto empty = [&] {
    return std::all_of(queue.begin(), queue.end(), [](const auto& q) { return q.empty(); });
  };
  while (next < reqs.size() || !empty()) {
    for (; next < reqs.size() && reqs[next].arrival <= now; ++next)
      queue[static_cast<std::size_t>(reqs[next].member)].push_back(reqs[next]);
    if (empty()) {
      now = reqs[next].arrival;
      continue;
    }
    if (idle_turns >= sessions) {  // a whole cycle ran nothing: wait for the next arrival
      idle_turns = 0;
      if (next == reqs.size()) break;
      now = std::max(now, reqs[next].arrival);
      continue;
    }
    // Round robin over the sessions (one turn each per duty cycle); the group is one session.
    const int first = prefix ? 0 : turn, last = prefix ? k : turn + 1;
    turn = (turn + 1) % sessions;
    ++idle_turns;
    std::vector<std::vector<TimePoint>> deadlines;
    for (int m = first; m < last; ++m) {
      deadlines.emplace_back();
      for (const Request& r : queue[static_cast<std::size_t>(m)]) deadlines.back().push_back(r.deadline);
    }
    std::vector<dispatch::VectorQueueView> views(deadlines.begin(), deadlines.end());
    std::vector<const dispatch::QueueView*> ptrs;
    for (const auto& v : views) ptrs.push_back(&v);
    const dispatch::MergedQueueView merged(ptrs);
    const dispatch::MemberDecision d = dispatch::split_by_member(
        merged, dispatch::early_drop_decision(merged, now, l, target, kMaxBatch));
    const std::size_t take = d.total_take();
    Duration run = prefix ? mean(pre, static_cast<int>(take)) : l(static_cast<int>(take));
    for (int m = first; m < last; ++m) {
      auto& q = queue[static_cast<std::size_t>(m)];
      q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(d.drop[static_cast<std::size_t>(m - first)]));
      if (prefix) run += mean(suf, static_cast<int>(d.take[static_cast<std::size_t>(m - first)]));
    }
    if (take == 0) continue;
    idle_turns = 0;
    now += run;
    for (int m = first; m < last; ++m) {
      auto& q = queue[static_cast<std::size_t>(m)];
      const auto n = static_cast<std::ptrdiff_t>(d.take[static_cast<std::size_t>(m - first)]);
      for (std::ptrdiff_t i = 0; i < n; ++i)
        if (now <= q[static_cast<std::size_t>(i)].deadline) ++good;
      q.erase(q.begin(), q.begin() + n);
    }
    ++batches;
    batched += take;
  }
  Served s;
  s.good_rate = reqs.empty() ? 1.0 : double(good) / double(reqs.size());
  s.mean_batch = batches == 0 ? 0 : double(batched) / double(batches);
  return s;
}

// The same probe served by the Engine (see the header): K single-stage queries, one per variant,
// Poisson arrivals at `rate` spread uniformly over them, 30 s of virtual time on "sim:1".
Served serve_engine(const std::vector<std::shared_ptr<const model::Graph>>& graphs, bool prefix,
                    double rate, Duration slo, const BatchProfile& whole) {
  using namespace nexus::runtime;
  const int k = static_cast<int>(graphs.size());
  auto clock = std::make_shared<VirtualClock>();
  Engine e({.devices = "sim:1",
            .clock = clock,
            .epoch = std::chrono::microseconds(0),
            .sim_latency = {.distribution = sim::SimLatency::Distribution::kLognormal, .min_cv = 0.05, .seed = 3},
            .prefix_batching = prefix});
  for (const auto& g : graphs) e.load_model({.name = g->name(), .profile = whole, .graph = g, .max_batch = kMaxBatch});
  try {
    for (int m = 0; m < k; ++m)
      e.add_query({.name = "q" + std::to_string(m),
                   .slo = std::chrono::duration_cast<std::chrono::microseconds>(slo),
                   .expected_rate_rps = rate / k,
                   .stages = {{.name = "s", .model = graphs[static_cast<std::size_t>(m)]->name()}}});
  } catch (const nexus::Error&) {
    return {};  // no plan meets the SLO at this rate
  }
  const std::vector<TimePoint> arrivals = sim::poisson_arrivals(rate, 30s, 7);
  std::mt19937_64 pick(11);
  std::size_t good = 0;
  for (TimePoint t : arrivals) {
    e.run_until(t);
    e.submit(static_cast<int>(pick() % static_cast<std::uint64_t>(k)), Tensor());
    for (const auto& r : e.poll()) good += r.met_slo ? 1 : 0;
  }
  e.run_until_idle();
  for (const auto& r : e.poll()) good += r.met_slo ? 1 : 0;
  const EngineStats st = e.stats();
  Served s;
  s.good_rate = arrivals.empty() ? 1.0 : double(good) / double(arrivals.size());
  std::uint64_t batches = 0, items = 0;
  if (!st.prefix_groups.empty()) {
    for (const auto& [key, g] : st.prefix_groups) {
      batches += g.batches;
      items += g.items;
    }
  } else {
    for (const auto& [id, x] : st.sessions) {
      batches += x.batches;
      items += static_cast<std::uint64_t>(x.mean_batch * double(x.batches) + 0.5);
    }
  }
  s.mean_batch = batches ? double(items) / double(batches) : 0.0;
  return s;
}


// Resident set size of this process (/proc/self/statm), after returning freed heap to the OS.
std::size_t rss_bytes() {
  malloc_trim(0);
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// What the Engine holds for K variants on a real device (--serve engine; --memory-only runs only
// this): K variants built one by one (zoo::standard_variant: each with its own weight storage, as
// if read from K files), each handed to load_model and dropped by the application at once, so
// the growth of the process RSS is what the Engine keeps (its backends or the group's runner,
// and each model's retained graph; no queries, nothing served). One row per (K, mode), with the
// Engine's own accounting: Σ stats().models[].device_bytes + Σ prefix_groups[].device_bytes.
void engine_memory_rows(const Args& args, const std::string& device_label) {
  using namespace nexus::runtime;
  std::vector<int> batches;
  std::vector<double> lat;
  for (int b = 1; b <= kMaxBatch; b *= 2) {
    batches.push_back(b);
    lat.push_back(1000.0 * b);  // planning figure only: nothing is served here
  }
  for (int k : {1, 10})
    for (bool prefix : {false, true}) {
      if (k == 1 && prefix) continue;  // one model forms no group
      const std::size_t before = rss_bytes();
      std::size_t weights_one = 0;
      {
        Engine e({.devices = args.device == "cuda" ? "auto" : "cpu",  // auto: every CUDA GPU
                  .clock = std::make_shared<VirtualClock>(),
                  .epoch = std::chrono::microseconds(0),
                  .prefix_batching = prefix});
        const auto t0 = std::chrono::steady_clock::now();
        for (int v = 0; v < k; ++v) {
          auto g = std::make_shared<const model::Graph>(model::zoo::standard_variant(args.model, v, 1, args.classes));
          weights_one = g->weights_bytes();
          e.load_model({.name = g->name(), .profile = BatchProfile(g->name(), "cpu", batches, lat), .graph = g,
                        .max_batch = kMaxBatch});
        }  // the application's graph is dropped here: the Engine keeps what it needs
        const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::size_t after = rss_bytes();
        const EngineStats st = e.stats();
        std::size_t engine_bytes = 0, own = 0;
        for (const auto& [name, m] : st.models) own += m.device_bytes;
        engine_bytes = own;
        for (const auto& [key, gr] : st.prefix_groups) engine_bytes += gr.device_bytes;
        json row = {{"engine_memory", true},
                    {"device", device_label},
                    {"model", args.model},
                    {"classes", args.classes},
                    {"variants", k},
                    {"prefix_batching", prefix},
                    {"groups", st.prefix_groups.size()},
                    {"max_batch", kMaxBatch},
                    {"engine_device_bytes", engine_bytes},
                    {"members_own_device_bytes", own},
                    {"model_weights_bytes", weights_one},
                    {"rss_growth_bytes", after > before ? after - before : 0},
                    {"load_seconds", std::round(load_s * 100) / 100}};
        std::printf("%s\n", row.dump().c_str());
        std::fflush(stdout);
      }
    }
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  const CpuBackendOptions cpu_opts{.threads = args.threads};
  const bool gpu = args.device == "cuda";
  NEXUS_CHECK(gpu || args.device == "cpu", "--device {} (expected cpu or cuda)", args.device);
  const bool by_engine = args.serve == "engine";
  NEXUS_CHECK(by_engine || args.serve == "sim", "--serve {} (expected sim or engine)", args.serve);
  log::set_level(log::Level::kError);  // the probes past the limit drop requests by design
  BackendFactory cpu = [&]() -> std::unique_ptr<Backend> {
    if (gpu) return make_cuda_backend();
    return std::make_unique<CpuBackend>(cpu_opts);
  };
  double load = 0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = 0;
    std::fclose(f);
  }
  const std::string device =
      (gpu ? "cuda:0" : "cpu") + std::string(" (") + args.machine +
      (by_engine ? "; latencies measured here, served by the Engine in virtual time on sim:1)"
                 : "; latencies measured here, serving simulated in virtual time)");
  if (args.memory_only || by_engine) {
    engine_memory_rows(args, (gpu ? "cuda (every GPU)" : "cpu") + std::string(" (") + args.machine +
                                 "; the Engine on the real device, models loaded, nothing served)");
    if (args.memory_only) return 0;
  }

  // Profiles: the whole variant model, the shared prefix, one suffix.
  const std::vector<model::Graph> two = model::zoo::standard_variants(args.model, 2, 1, args.classes);
  const std::vector<const model::Graph*> pair{&two[0], &two[1]};
  const model::PrefixSplit split = model::split_prefix(pair);
  auto whole_b = cpu();
  whole_b->load(two[0], kMaxBatch);
  auto pre_b = cpu();
  pre_b->load(split.prefix, kMaxBatch);
  auto suf_b = cpu();
  suf_b->load(*split.suffixes[0].graph, kMaxBatch);
  const std::vector<BatchProfile> profiles =
      measure({whole_b.get(), pre_b.get(), suf_b.get()},
              {args.model, args.model + "/prefix", args.model + "/suffix"}, args.runs);
  const BatchProfile &whole = profiles[0], &pre = profiles[1], &suf = profiles[2];
  whole_b.reset();
  pre_b.reset();
  suf_b.reset();

  const double l1_ms = std::chrono::duration<double, std::milli>(whole.mean_latency(1)).count();
  const double slo_ms = args.slo_ms > 0 ? args.slo_ms : std::ceil(10 * l1_ms / 10) * 10;
  const Duration slo = std::chrono::duration_cast<Duration>(
      std::chrono::duration<double, std::milli>(slo_ms));
  json prof = {{"profile", args.model},  {"device", device},
               {"classes", args.classes}, {"load_avg_1min", load},
               {"batches", kBatches},     {"slo_ms", slo_ms}};
  for (auto [key, p] : {std::pair{"whole_us", &whole}, {"prefix_us", &pre}, {"suffix_us", &suf}}) {
    json v = json::array();
    for (int b : kBatches) v.push_back(p->mean_latency(b).count());
    prof[key] = v;
  }
  std::printf("%s\n", prof.dump().c_str());
  std::fflush(stdout);

  for (int k : {1, 2, 5, 10}) {
    const std::vector<model::Graph> variants =
        model::zoo::standard_variants(args.model, k, 1, args.classes);
    std::vector<std::shared_ptr<const model::Graph>> shared;
    if (by_engine)
      for (const auto& g : variants) shared.push_back(std::make_shared<const model::Graph>(g));
    for (bool prefix : {false, true}) {
      const bool grouped = prefix && k >= 2;  // one model alone forms no group
      // Memory of what this mode loads.
      std::size_t memory = 0;
      if (grouped) {
        std::vector<const model::Graph*> gs;
        for (const auto& g : variants) gs.push_back(&g);
        PrefixRunner runner(cpu);
        runner.load(model::split_prefix(gs), kMaxBatch);
        memory = runner.device_bytes();
      } else {
        for (const auto& g : variants) {
          auto b = cpu();
          b->load(g, kMaxBatch);
          memory += b->device_bytes();
        }
      }
      // Bisection for the largest rate with a good rate >= 99%.
      double lo = 0, hi = 2.0 * kMaxBatch * 1e6 / double(whole.mean_latency(kMaxBatch).count());
      Served at_lo{1.0, 0};
      for (int it = 0; it < 14; ++it) {
        const double mid = (lo + hi) / 2;
        const Served s = by_engine ? serve_engine(shared, prefix, mid, slo, whole)
                                   : serve(k, grouped, mid, slo, whole, pre, suf);
        if (s.good_rate >= 0.99) {
          lo = mid;
          at_lo = s;
        } else {
          hi = mid;
        }
      }
      json row = {{"device", device},
                  {"model", args.model},
                  {"classes", args.classes},
                  {"variants", k},
                  {"serving", by_engine ? "engine" : "sim"},
                  {"prefix_batching", prefix},
                  {"throughput_rps", std::round(lo * 10) / 10},
                  {"good_rate", std::round(at_lo.good_rate * 10000) / 10000},
                  {"memory_bytes", memory},
                  {"slo_ms", slo_ms},
                  {"mean_batch", std::round(at_lo.mean_batch * 100) / 100}};
      std::printf("%s\n", row.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "prefix: %s\n", e.what());
  return 1;
}
