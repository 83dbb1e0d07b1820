// CpuBackend throughput on ResNet-50 and MobileNetV1 (seeded random weights) at batch 1 and 8,
// next to Eigen's own multi-threaded SGEMM measured in the same run with the same thread count.
// Prints one JSON object. Figures: images/s and GFLOP/s (2 x MACs per image) from the median of
// --runs timed runs after one warm-up run; ratio = model GFLOP/s / GEMM GFLOP/s, where the GEMM
// rate is measured right before and right after each model's runs (their mean), so that load
// from other processes on a shared machine affects both sides alike.
//
// ONNX rows (when built with the ONNX importer and scripts/fetch_data.sh has fetched the
// PaddleOCR models): the detector, recognizer and direction classifier imported from ONNX, batch
// 1, on 1 thread and on all --threads, next to ONNX Runtime (onnxruntime-node, CPU EP, same
// intra-op thread count, same input) run by tests/reference/onnx/bench_ort.js in the same run;
// ratio = nexus img/s / ORT img/s. --rounds R alternates the two sides R times and takes each
// side's best round (robust to load that comes and goes on a shared machine). --model runs one
// model only. The kernels' ISA is in "kernel_isa". --no-ort skips ORT (e.g. without Node.js).
//
// Usage: cpu_backend [--threads N] [--runs R] [--gemm-n N] [--machine "text"] [--no-ort]
//                    [--only-onnx] [--rounds R] [--model ppocr_v4_det|ppocr_v4_rec|ppocr_v2_cls]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/zoo/standard.hpp"
#ifdef NEXUS_WITH_ONNX
#include <filesystem>
#include "nexus/model/onnx.hpp"
#endif

namespace {
// The 1-minute load average (Linux), to tell a quiet machine from a busy one; -1 elsewhere.
double load_average() {
  double v = -1.0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &v) != 1) v = -1.0;
    std::fclose(f);
  }
  return v;
}
}  // namespace

#ifdef NEXUS_WITH_ONNX
// Median ms of `runs` batch-1 runs of an ONNX model on the CpuBackend.
double nexus_median_ms(const nexus::model::Graph& g, const std::vector<std::int64_t>& dims,
                       int threads, int runs) {
  nexus::CpuBackend be(nexus::CpuBackendOptions{threads});
  be.load(g, 1);
  nexus::Tensor x{nexus::Shape(dims)};
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data<float>()[i] = static_cast<float>(
        static_cast<double>(static_cast<std::uint32_t>(static_cast<std::uint32_t>(i) * 2654435761u)) /
            4294967296.0 - 0.5);
  be.run_one(x);
  std::vector<double> ms;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    be.run_one(x);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

nlohmann::json onnx_rows(int threads, int runs, int rounds, bool ort,
                         const std::string& only_model) {
  namespace fs = std::filesystem;
  const fs::path root = NEXUS_SOURCE_DIR;
  const fs::path dir = root / "data" / "onnx" / "ppocr";
  nlohmann::json rows = nlohmann::json::array();
  if (!fs::exists(dir / ".ok")) return rows;
  struct M {
    const char* name;
    const char* file;
    std::vector<std::int64_t> dims;
  };
  const M models[] = {{"ppocr_v4_det", "ch_PP-OCRv4_det_infer.onnx", {1, 3, 320, 320}},
                      {"ppocr_v4_rec", "ch_PP-OCRv4_rec_infer.onnx", {1, 3, 48, 320}},
                      {"ppocr_v2_cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx", {1, 3, 48, 192}}};
  for (const M& m : models) {
    if (!only_model.empty() && only_model != m.name) continue;
    nexus::model::OnnxOptions opt;
    opt.input_shape.assign(m.dims.begin() + 1, m.dims.end());
    nexus::model::Graph g;
    try {
      g = nexus::model::load_onnx(dir / m.file, opt);
    } catch (const nexus::Error& e) {
      rows.push_back({{"model", m.name}, {"error", e.what()}});
      continue;
    }
    for (int t : {1, threads}) {
      // Rounds alternate Nexus and ORT, so that both sides see the same load over time; each
      // side's figure is its best round (the least disturbed on a shared machine).
      std::vector<double> nexus_rounds, ort_rounds;
      nlohmann::json ort_info;
      for (int r = 0; r < rounds; ++r) {
        nexus_rounds.push_back(nexus_median_ms(g, m.dims, t, runs));
        if (!ort) continue;
        const std::string cmd = fmt::format(
            "node {}/tests/reference/onnx/bench_ort.js {} {} {} {}", root.string(),
            (dir / m.file).string(), fmt::join(m.dims, ","), t, runs);
        std::string text;
        if (std::FILE* p = ::popen(cmd.c_str(), "r")) {
          char buf[512];
          while (std::fgets(buf, sizeof buf, p)) text += buf;
          ::pclose(p);
        }
        try {
          const auto j = nlohmann::json::parse(text);
          ort_info = j["ort"];
          ort_rounds.push_back(j["median_ms"].get<double>());
        } catch (const std::exception&) {
        }
      }
      const double ms = *std::min_element(nexus_rounds.begin(), nexus_rounds.end());
      nlohmann::json row = {{"model", m.name}, {"input", m.dims}, {"threads", t},
                            {"nexus_median_ms", ms}, {"nexus_images_per_s", 1000.0 / ms},
                            {"nexus_round_medians_ms", nexus_rounds}};
      if (ort && ort_rounds.size() == nexus_rounds.size()) {
        const double ort_ms = *std::min_element(ort_rounds.begin(), ort_rounds.end());
        row["ort"] = ort_info;
        row["ort_median_ms"] = ort_ms;
        row["ort_images_per_s"] = 1000.0 / ort_ms;
        row["ort_round_medians_ms"] = ort_rounds;
        row["ratio_to_ort"] = ort_ms / ms;
      } else if (ort) {
        row["ort_error"] = "bench_ort.js failed (npm install in tests/reference/onnx?)";
      }
      rows.push_back(row);
      if (t == threads) break;
    }
  }
  return rows;
}
#endif

int main(int argc, char** argv) {
  int threads = 0, runs = 5, rounds = 1, gemm_n = 2048;
  bool ort = true, only_onnx = false;
  std::string machine = "2-core x86_64 CPU box";
  std::string only_model;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--no-ort") {
      ort = false;
      continue;
    }
    if (flag == "--only-onnx") {
      only_onnx = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", flag.c_str());
      return 2;
    }
    const std::string key = argv[i];
    if (key == "--threads") threads = std::atoi(argv[i + 1]);
    else if (key == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
    else if (key == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
    else if (key == "--gemm-n") gemm_n = std::max(64, std::atoi(argv[i + 1]));
    else if (key == "--machine") machine = argv[i + 1];
    else if (key == "--model") only_model = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      return 2;
    }
    ++i;
  }
  (void)ort;

  const double load_before = load_average();
  nexus::CpuBackend probe(nexus::CpuBackendOptions{threads});
  threads = probe.threads();
  std::vector<double> gemm_samples;
  auto gemm_now = [&] {
    const double g = nexus::exec::eigen_gemm_gflops(gemm_n, threads, 3);
    gemm_samples.push_back(g);
    return g;
  };

  nlohmann::json out;
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  out["benchmark"] = "cpu_backend";
  out["date"] = date;
  out["machine"] = machine;
  out["hardware_concurrency"] = std::thread::hardware_concurrency();
  out["threads"] = threads;
  out["kernel_isa"] = nexus::exec::cpu_kernel_isa();
  out["runs"] = runs;

#ifdef NEXUS_WITH_ONNX
  out["onnx"] = {{"rows", onnx_rows(threads, runs, rounds, ort, only_model)},
                 {"how", "batch 1, median of --runs after a warm-up; --rounds alternate Nexus and ORT, "
                         "each side's figure is its best round's median; ORT = onnxruntime-node "
                         "CPU EP with the same intra-op threads, graph optimizations on, same input"}};
#endif
  if (only_onnx) {
    out["load_average_1min"] = {{"before", load_before}, {"after", load_average()}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  nlohmann::json models = nlohmann::json::array();
  for (const char* name : {"resnet50", "mobilenet_v1"}) {
    const nexus::model::Graph g = nexus::model::zoo::standard_model(name);
    const double flops_per_image = 2.0 * static_cast<double>(g.macs_per_item());
    for (int batch : {1, 8}) {
      nexus::CpuBackend be(nexus::CpuBackendOptions{threads});
      be.load(g, batch);
      std::vector<std::int64_t> dims{batch};
      const nexus::Shape item = be.input_shape();
      for (auto d : item.dims()) dims.push_back(d);
      nexus::Tensor x{nexus::Shape(dims)};
      float v = 0.0f;
      for (float& e : x.values()) e = (v = v * 0.7f + 0.31f, v - static_cast<int>(v));
      be.run_one(x);  // warm-up
      const double gemm_before = gemm_now();
      std::vector<double> seconds;
      for (int r = 0; r < runs; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        be.run_one(x);
        seconds.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const double gemm_after = gemm_now();
      const double gemm = 0.5 * (gemm_before + gemm_after);
      std::sort(seconds.begin(), seconds.end());
      const double median = seconds[seconds.size() / 2];
      const double gflops = flops_per_image * batch / median / 1e9;
      models.push_back({{"model", name},
                        {"batch", batch},
                        {"median_ms", median * 1e3},
                        {"min_ms", seconds.front() * 1e3},
                        {"images_per_s", batch / median},
                        {"gflops", gflops},
                        {"gemm_gflops", gemm},
                        {"ratio_to_gemm", gflops / gemm},
                        // Best case on a shared machine: fastest run vs the faster GEMM sample.
                        {"gflops_best", flops_per_image * batch / seconds.front() / 1e9},
                        {"ratio_best", flops_per_image * batch / seconds.front() / 1e9 /
                                           std::max(gemm_before, gemm_after)},
                        {"gmacs_per_image", g.macs_per_item() / 1e9},
                        {"weights_bytes", be.weights_bytes()},
                        {"activation_bytes", be.activation_bytes(batch)}});
    }
  }
  out["models"] = models;

  // One thread, CPU time: the kernels' efficiency, little disturbed by other processes.
  const double gemm1 = nexus::exec::eigen_gemm_gflops(gemm_n, 1, runs, true);
  nlohmann::json single = nlohmann::json::array();
  for (const char* name : {"resnet50", "mobilenet_v1"}) {
    const nexus::model::Graph g = nexus::model::zoo::standard_model(name);
    for (int batch : {1, 8}) {
      nexus::CpuBackend be(nexus::CpuBackendOptions{1});
      be.load(g, batch);
      std::vector<std::int64_t> dims{batch};
      const nexus::Shape item = be.input_shape();
      for (auto d : item.dims()) dims.push_back(d);
      const nexus::Tensor x{nexus::Shape(dims)};
      be.run_one(x);
      std::vector<double> cpu;
      for (int r = 0; r < runs; ++r) {
        const std::clock_t c0 = std::clock();
        be.run_one(x);
        cpu.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
      }
      std::sort(cpu.begin(), cpu.end());
      const double gflops = 2.0 * static_cast<double>(g.macs_per_item()) * batch / cpu[cpu.size() / 2] / 1e9;
      single.push_back({{"model", name}, {"batch", batch}, {"gflops_per_cpu_s", gflops},
                        {"ratio_to_gemm", gflops / gemm1}});
    }
  }
  out["single_thread_cpu_time"] = {{"eigen_gemm_gflops_per_cpu_s", gemm1}, {"models", single}};
  std::sort(gemm_samples.begin(), gemm_samples.end());
  out["eigen_gemm"] = {{"n", gemm_n},
                       {"gflops_median", gemm_samples[gemm_samples.size() / 2]},
                       {"gflops_max", gemm_samples.back()},
                       {"how", "Eigen Tensor contraction on a ThreadPoolDevice with the same thread "
                               "count; median of 3 after a warm-up, taken before and after each "
                               "model's runs"}};
  out["load_average_1min"] = {{"before", load_before}, {"after", load_average()}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
