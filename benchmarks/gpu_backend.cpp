// gpu_backend: CudaBackend throughput, latency and device memory for the standard models
// (ResNet-50, MobileNetV1, VGG-16, GoogLeNet, SSD-MobileNetV1-300; seeded random weights) at
// batch 1..64 in FP16 and FP32. Prints one JSON object per line:
//   {"gpu","model","precision","batch","nexus_img_s","nexus_latency_ms_p50",
//    "nexus_latency_ms_p99","pytorch_eager_img_s","pytorch_graphs_img_s",
//    "pytorch_graphs_latency_ms_p50","device_memory_bytes"}
// A latency is one Backend::run() call as a GpuExecutor makes it: host input -> pinned staging
// -> device, the batch's CUDA Graph, device -> host output. img/s = batch / mean latency.
// device_memory_bytes = resident weights + the activation arena at that batch. Also per row:
// "input" (what crosses PCIe: f32, f16 or u8 HWC frames), "load_s" / "backend_device_bytes"
// (load() + prepare() of every batch size measured, as Engine::load_model does it) and
// "conv_paths" (how many convolutions run each alternative at that batch).
// The pytorch_* columns come from benchmarks/pytorch_baseline.py's JSON (--pytorch FILE);
// null when absent. Without a GPU (or a CUDA build) it says so on stderr and exits 0.
//
// Usage: gpu_backend [--gpu 0] [--models resnet50,mobilenet_v1,vgg16,googlenet,
//        ssd_mobilenet_v1_300] [--batches 1,2,4,8,16,32,64] [--precisions fp16,fp32]
//        [--iters 50] [--warmup 5] [--pytorch pytorch.json]
//        [--input auto|f32|f16|u8]   auto: f16 for fp16 (as pytorch_baseline.py sends), f32 else
//        [--graph-batch-sizes 1,8,32] prepare only these (+ the largest), pad the others
//        [--print-engines] [--no-graphs] [--fused-budget S] [--fused-plans N]
//                     (CudaBackendOptions::fused_build_budget_s / fused_plans_per_layer)
//        [--profile]  one uncaptured run per (model, precision, batch) between
//                     cudaProfilerStart/Stop, nothing else measured (for ncu
//                     --profile-from-start off)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/graph.hpp"

#if __has_include("nexus/model/zoo/standard.hpp")
#include "nexus/model/zoo/standard.hpp"
#define NEXUS_BENCH_HAVE_ZOO 1
#endif

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct Args {
  int gpu = 0;
  std::vector<std::string> models{"resnet50", "mobilenet_v1", "vgg16", "googlenet",
                                  "ssd_mobilenet_v1_300"};
  std::vector<int> batches{1, 2, 4, 8, 16, 32, 64};
  std::vector<std::string> precisions{"fp16", "fp32"};
  int iters = 50;
  int warmup = 5;
  std::string pytorch;
  std::string input = "auto";
  std::vector<int> graph_batch_sizes;
  bool print_engines = false;
  bool graphs = true;
  bool profile = false;
  double fused_budget_s = -1;  // < 0: the backend's default
  int fused_plans = -1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) nexus::throw_error("gpu_backend: {} needs a value", k);
      return argv[++i];
    };
    if (k == "--gpu")
      a.gpu = std::stoi(value());
    else if (k == "--models")
      a.models = split(value());
    else if (k == "--batches") {
      a.batches.clear();
      for (const auto& b : split(value())) a.batches.push_back(std::stoi(b));
    } else if (k == "--precisions")
      a.precisions = split(value());
    else if (k == "--iters")
      a.iters = std::max(1, std::stoi(value()));
    else if (k == "--warmup")
      a.warmup = std::max(0, std::stoi(value()));
    else if (k == "--pytorch")
      a.pytorch = value();
    else if (k == "--input")
      a.input = value();
    else if (k == "--graph-batch-sizes") {
      for (const auto& b : split(value())) a.graph_batch_sizes.push_back(std::stoi(b));
    } else if (k == "--print-engines")
      a.print_engines = true;
    else if (k == "--no-graphs")
      a.graphs = false;
    else if (k == "--profile")
      a.profile = true;
    else if (k == "--fused-budget")
      a.fused_budget_s = std::stod(value());
    else if (k == "--fused-plans")
      a.fused_plans = std::stoi(value());
    else
      nexus::throw_error(
          "gpu_backend: unknown option '{}' (see the header of "
          "benchmarks/gpu_backend.cpp)",
          k);
  }
  return a;
}

using Key = std::tuple<std::string, std::string, int>;  // model, precision, batch

/// pytorch_baseline.py rows: a JSON array, or one object per line.
[[maybe_unused]] std::map<Key, nlohmann::json> read_pytorch(const std::string& path) {
  std::map<Key, nlohmann::json> rows;
  if (path.empty()) return rows;
  std::ifstream in(path);
  if (!in) nexus::throw_error("gpu_backend: cannot open --pytorch file '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::vector<nlohmann::json> items;
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    for (auto& r : nlohmann::json::parse(text)) items.push_back(r);
  } else {
    std::stringstream lines(text);
    std::string line;
    while (std::getline(lines, line))
      if (line.find('{') != std::string::npos) items.push_back(nlohmann::json::parse(line));
  }
  for (auto& r : items)
    rows[{r.at("model").get<std::string>(), r.at("precision").get<std::string>(),
          r.at("batch").get<int>()}] = r;
  return rows;
}

}  // namespace

#if defined(NEXUS_WITH_CUDA) && NEXUS_WITH_CUDA && defined(NEXUS_BENCH_HAVE_ZOO)

namespace {

nexus::model::Graph build(const std::string& name) {
  using namespace nexus::model::zoo;
  if (name == "resnet50") return resnet50();
  if (name == "mobilenet_v1") return mobilenet_v1();
  if (name == "vgg16") return vgg16();
  if (name == "googlenet") return googlenet();
  if (name == "ssd_mobilenet_v1_300") return ssd_mobilenet_v1_300();
  nexus::throw_error("gpu_backend: unknown model '{}'", name);
}

/// IEEE binary16 bits of f (round to nearest even; benchmark inputs are in [-1, 1]).
std::uint16_t half_bits(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xffu) - 127 + 15;
  const std::uint32_t mant = x & 0x7fffffu;
  if (exp <= 0) return static_cast<std::uint16_t>(sign);
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
  std::uint32_t h = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(h);
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  const int devices = nexus::cuda_device_count();
  if (devices == 0) {
    std::fprintf(stderr,
                 "gpu_backend: no CUDA device found; nothing to measure "
                 "(run it on a GPU machine, see docs/cuda.md)\n");
    return 0;
  }
  const auto pytorch = read_pytorch(args.pytorch);
  const int max_batch = *std::max_element(args.batches.begin(), args.batches.end());
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  for (const auto& model_name : args.models) {
    const nexus::model::Graph graph = build(model_name);
    for (const auto& prec : args.precisions) {
      nexus::CudaBackendOptions options;
      options.device_index = args.gpu;
      options.precision =
          prec == "fp16" ? nexus::CudaPrecision::kFloat16 : nexus::CudaPrecision::kFloat32;
      options.graph_batch_sizes = args.graph_batch_sizes;
      options.print_engines = args.print_engines;
      options.use_cuda_graphs = args.graphs && !args.profile;
      if (args.fused_budget_s >= 0) options.fused_build_budget_s = args.fused_budget_s;
      if (args.fused_plans >= 0) options.fused_plans_per_layer = args.fused_plans;
      options.input_mean = {127.5f, 127.5f, 127.5f};
      options.input_scale = {1 / 127.5f, 1 / 127.5f, 1 / 127.5f};
      const std::string input =
          args.input == "auto" ? (prec == "fp16" ? std::string("f16") : std::string("f32")) : args.input;
      nexus::CudaBackend backend(options);
      const auto t_load = std::chrono::steady_clock::now();
      try {
        backend.load(graph, max_batch);
        backend.prepare(args.batches);  // as Engine::load_model: every size before serving
      } catch (const nexus::Error& e) {
        std::fprintf(stderr, "gpu_backend: %s %s: %s\n", model_name.c_str(), prec.c_str(),
                     e.what());
        continue;
      }
      const double load_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
      for (int batch : args.batches) {
        std::vector<nexus::Tensor> inputs;
        for (int i = 0; i < static_cast<int>(graph.inputs().size()); ++i) {
          const nexus::Shape item = backend.input_shape(i);  // kept alive for the loop below
          std::vector<std::int64_t> dims{batch};
          const bool frames = input == "u8" && item.rank() == 3 && item[0] <= 4;
          if (frames) {
            dims.insert(dims.end(), {item[1], item[2], item[0]});
            nexus::Tensor t{nexus::Shape(std::move(dims)), nexus::DType::kUInt8};
            auto* p = static_cast<std::uint8_t*>(t.raw_data());
            for (std::int64_t k = 0; k < t.numel(); ++k) p[k] = static_cast<std::uint8_t>(rng() & 0xff);
            inputs.push_back(std::move(t));
            continue;
          }
          for (auto d : item.dims()) dims.push_back(d);
          nexus::Tensor t{nexus::Shape(std::move(dims))};
          for (float& v : t.values()) v = uniform(rng);
          if (input == "f16") {
            nexus::Tensor h{t.shape(), nexus::DType::kFloat16};
            auto* hp = static_cast<std::uint16_t*>(h.raw_data());
            const auto src = t.values();
            for (std::size_t k = 0; k < src.size(); ++k) hp[k] = half_bits(src[k]);
            inputs.push_back(std::move(h));
          } else {
            inputs.push_back(std::move(t));
          }
        }
        if (args.profile) {
          backend.run(inputs);  // warm
          nexus::cuda_profiler(true);
          backend.run(inputs);
          nexus::cuda_profiler(false);
          std::fprintf(stderr, "gpu_backend: profiled %s %s batch %d\n", model_name.c_str(),
                       prec.c_str(), batch);
          continue;
        }
        for (int i = 0; i < args.warmup; ++i) backend.run(inputs);
        std::vector<double> ms;
        double total_s = 0;
        for (int i = 0; i < args.iters; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          backend.run(inputs);
          const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
          total_s += dt.count();
          ms.push_back(dt.count() * 1e3);
        }
        nlohmann::json row;
        row["gpu"] = backend.device_label();
        row["model"] = model_name;
        row["precision"] = prec;
        row["batch"] = batch;
        row["input"] = input;
        row["nexus_img_s"] = batch * args.iters / total_s;
        row["nexus_latency_ms_p50"] = percentile(ms, 0.50);
        row["nexus_latency_ms_p99"] = percentile(ms, 0.99);
        row["pytorch_eager_img_s"] = nullptr;
        row["pytorch_graphs_img_s"] = nullptr;
        row["pytorch_graphs_latency_ms_p50"] = nullptr;
        if (auto it = pytorch.find({model_name, prec, batch}); it != pytorch.end()) {
          for (const char* k :
               {"pytorch_eager_img_s", "pytorch_graphs_img_s", "pytorch_graphs_latency_ms_p50",
                "pytorch_compile_img_s", "pytorch_compile_latency_ms_p50"})
            if (it->second.contains(k)) row[k] = it->second[k];
        }
        std::map<std::string, int> paths;
        for (const auto& c : backend.conv_choices(batch)) {
          const auto colon = c.find(": ");
          const std::string what = colon == std::string::npos ? c : c.substr(colon + 2);
          paths[what.rfind("graph", 0) == 0 ? "graph" : what.rfind("legacy", 0) == 0 ? "legacy" : "legacy_fused"]++;
        }
        row["conv_paths"] = paths;
        row["load_s"] = load_s;
        row["backend_device_bytes"] = backend.device_bytes();
        row["device_memory_bytes"] = backend.weights_bytes() + backend.activation_bytes(batch);
        std::cout << row.dump() << std::endl;
      }
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}

#else

int main(int argc, char** argv) try {
  (void)parse(argc, argv);
  std::fprintf(stderr,
               "gpu_backend: this build has no CudaBackend or no standard model zoo "
               "(configure with -DNEXUS_WITH_CUDA=ON on a machine with the CUDA toolkit); "
               "nothing to measure\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}

#endif
