// gpu_serving: the Engine serving one model on the CUDA devices from its first request
// (issue 9, "Engine on a GPU"). ResNet-50 (or --model) in FP16 on every GPU (devices "cuda", one
// executor each), its BatchProfile measured by nexus::Profiler on the CudaBackend, one query
// with --slo-ms; then open-loop Poisson load (sim::poisson_arrivals) at each --loads fraction of
// the planned capacity for --seconds, counting every request from the first one.
// Prints one JSON object per line: first the profile and the model's load cost
//   {"profile","device","gpu","points":[[b, us]...],"capacity_rps_at_slo","profile_seconds",
//    "load_seconds","device_bytes","prepared_batches"}
// then per load
//   {"model","slo_ms","load_frac","offered_rps","submitted","completed","good","dropped",
//    "rejected","failed","good_rate","served_rps","first_fail"}.
// capacity_rps_at_slo = devices * max over b with 2 l(b) <= SLO of b / l(b) (the saturated rule
// of the squishy packer). Without a GPU it says so on stderr and exits 0.
//
// Usage: gpu_serving [--model resnet50] [--slo-ms 50] [--loads 0.5,0.8,0.95] [--seconds 6]
//        [--max-batch 32] [--graph-batch-sizes 1,2,4,8,16,32] (empty: every size 1..max)
//        [--fused-budget 10] (s of cuDNN graph-API plan building per backend load)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/profile/profiler.hpp"
#include "nexus/runtime/engine.hpp"
#include "nexus/sim/traffic.hpp"

#if __has_include("nexus/model/zoo/standard.hpp")
#include "nexus/model/zoo/standard.hpp"
#define NEXUS_BENCH_HAVE_ZOO 1
#endif

namespace {

struct Args {
  std::string model = "resnet50";
  double slo_ms = 50;
  std::vector<double> loads{0.5, 0.8, 0.95};
  double seconds = 6;
  int max_batch = 32;
  std::vector<int> graph_batch_sizes{1, 2, 4, 8, 16, 32};
  double fused_budget_s = 10;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) nexus::throw_error("gpu_serving: {} needs a value", k);
      return argv[++i];
    };
    if (k == "--model")
      a.model = value();
    else if (k == "--slo-ms")
      a.slo_ms = std::stod(value());
    else if (k == "--loads") {
      a.loads.clear();
      for (const auto& v : split(value())) a.loads.push_back(std::stod(v));
    } else if (k == "--seconds")
      a.seconds = std::stod(value());
    else if (k == "--max-batch")
      a.max_batch = std::stoi(value());
    else if (k == "--graph-batch-sizes") {
      a.graph_batch_sizes.clear();
      for (const auto& v : split(value())) a.graph_batch_sizes.push_back(std::stoi(v));
    } else if (k == "--fused-budget")
      a.fused_budget_s = std::stod(value());
    else
      nexus::throw_error("gpu_serving: unknown option '{}' (see benchmarks/gpu_serving.cpp)", k);
  }
  return a;
}

}  // namespace

#if defined(NEXUS_WITH_CUDA) && NEXUS_WITH_CUDA && defined(NEXUS_BENCH_HAVE_ZOO)

int main(int argc, char** argv) try {
  using namespace nexus;
  using namespace std::chrono;
  const Args args = parse(argc, argv);
  const int devices = cuda_device_count();
  if (devices == 0) {
    std::fprintf(stderr, "gpu_serving: no CUDA device found; nothing to measure\n");
    return 0;
  }
  auto graph = std::make_shared<const model::Graph>([&] {
    using namespace nexus::model::zoo;
    if (args.model == "resnet50") return resnet50();
    if (args.model == "mobilenet_v1") return mobilenet_v1();
    if (args.model == "googlenet") return googlenet();
    if (args.model == "vgg16") return vgg16();
    if (args.model == "ssd_mobilenet_v1_300") return ssd_mobilenet_v1_300();
    throw_error("gpu_serving: unknown model '{}'", args.model);
  }());
  auto options_for = [&](int device) {
    CudaBackendOptions o;
    o.device_index = device;
    o.precision = CudaPrecision::kFloat16;
    o.graph_batch_sizes = args.graph_batch_sizes;
    o.fused_build_budget_s = args.fused_budget_s;
    return o;
  };

  // ℓ(b) by nexus::Profiler on device 0.
  const auto t_prof = steady_clock::now();
  ProfilerOptions po;
  po.max_batch = args.max_batch;
  po.batches = args.graph_batch_sizes;
  const Profiler profiler([&] { return make_cuda_backend(options_for(0)); }, po);
  const BatchProfile profile = profiler.profile(*graph, args.model);
  const double profile_s = duration<double>(steady_clock::now() - t_prof).count();
  double capacity = 0;
  nlohmann::json points = nlohmann::json::array();
  for (int b = 1; b <= profile.max_batch(); ++b) {
    const double l_us = static_cast<double>(profile.latency(b).count());
    if (2 * l_us <= args.slo_ms * 1e3) capacity = std::max(capacity, b / (l_us * 1e-6));
  }
  for (int b : args.graph_batch_sizes)
    if (b <= profile.max_batch()) points.push_back({b, profile.latency(b).count()});
  capacity *= devices;

  runtime::Engine engine({.devices = "cuda"});
  // The Engine loads the backend on every device and prepares every batch size 1..max_batch
  // (each runs at its padded captured size) before load_model returns.
  engine.load_model({.name = args.model,
                     .profile = profile,
                     .make_backend = [&](const runtime::DeviceInfo& d) -> std::unique_ptr<Backend> {
                       return std::make_unique<CudaBackend>(options_for(d.index));
                     },
                     .graph = graph,
                     .max_batch = args.max_batch});
  const auto st0 = engine.stats();
  const auto& load = st0.models.at(args.model);
  {
    nlohmann::json row;
    row["profile"] = args.model;
    row["device"] = "cuda";
    row["devices"] = devices;
    row["gpu"] = CudaBackend(options_for(0)).device_label();
    row["points"] = points;
    row["capacity_rps_at_slo"] = capacity;
    row["profile_seconds"] = profile_s;
    row["load_seconds"] = load.load_seconds;  // load + prepare of every size, all devices
    row["device_bytes"] = load.device_bytes;
    row["prepared_batches"] = load.prepared_batches;
    std::printf("%s\n", row.dump().c_str());
    std::fflush(stdout);
  }
  engine.add_query({.name = "classify",
                    .slo = microseconds(static_cast<std::int64_t>(args.slo_ms * 1e3)),
                    .expected_rate_rps = std::max(1.0, capacity * args.loads.front()),
                    .stages = {{.name = "net", .model = args.model}}});
  Tensor input(graph->node(graph->inputs().at(0)).shape);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& v : input.values()) v = u(rng);

  std::uint64_t seed = 1;
  for (double frac : args.loads) {
    const double rate = std::max(1.0, capacity * frac);
    const auto arrivals = sim::poisson_arrivals(rate, duration_cast<Duration>(duration<double>(args.seconds)), seed++, TimePoint{});
    std::atomic<bool> done{false};
    std::uint64_t results = 0, completed = 0, good = 0, dropped = 0, rejected = 0, failed = 0;
    std::string first_fail;
    std::thread poller([&] {
      auto deadline = steady_clock::time_point::max();
      while (!done.load() || results < arrivals.size()) {
        if (done.load() && deadline == steady_clock::time_point::max())
          deadline = steady_clock::now() + seconds(30);
        if (steady_clock::now() > deadline) break;  // never expected: one result per request
        for (auto& r : engine.poll(4096, milliseconds(50))) {
          ++results;
          if (r.ok()) ++completed;
          if (r.met_slo) ++good;
          if (r.status == runtime::RequestStatus::kDropped) ++dropped;
          if (r.status == runtime::RequestStatus::kRejected) ++rejected;
          if (r.status == runtime::RequestStatus::kFailed) {
            ++failed;
            if (first_fail.empty()) first_fail = r.message;
          }
        }
        if (done.load() && results >= arrivals.size()) break;
      }
    });
    const auto start = steady_clock::now();
    for (const TimePoint& t : arrivals) {
      std::this_thread::sleep_until(start + t.time_since_epoch());
      engine.submit("classify", input);
    }
    done = true;
    poller.join();
    const double took = duration<double>(steady_clock::now() - start).count();
    nlohmann::json row;
    row["model"] = args.model;
    row["slo_ms"] = args.slo_ms;
    row["load_frac"] = frac;
    row["offered_rps"] = rate;
    row["submitted"] = arrivals.size();
    row["completed"] = completed;
    row["good"] = good;
    row["dropped"] = dropped;
    row["rejected"] = rejected;
    row["failed"] = failed;
    row["good_rate"] = arrivals.empty() ? 0.0 : double(good) / double(arrivals.size());
    row["served_rps"] = took > 0 ? double(completed) / took : 0.0;
    row["first_fail"] = first_fail;
    std::printf("%s\n", row.dump().c_str());
    std::fflush(stdout);
  }
  engine.shutdown();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gpu_serving: %s\n", e.what());
  return 1;
}

#else

int main(int argc, char** argv) try {
  (void)parse(argc, argv);
  std::fprintf(stderr, "gpu_serving: this build has no CudaBackend or no model zoo; nothing to measure\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gpu_serving: %s\n", e.what());
  return 1;
}

#endif
