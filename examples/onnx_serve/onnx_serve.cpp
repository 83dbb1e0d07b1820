// onnx_serve: serve your own ONNX image model under a latency SLO.
//
//   onnx_serve MODEL.onnx [--slo MS] [--rate R] [--seconds S] [--device cpu|auto|sim:N|cuda:0]
//              [--input-shape C,H,W] [--image FILE] [--max-batch B]
//
// Loads MODEL.onnx (nexus::model::load_onnx), measures its batching profile on the device
// (nexus::Profiler), serves it behind the Engine under the SLO, submits requests at R req/s for
// S seconds (synthetic input, or --image: the photo's pixels scaled to [0, 1], cropped / zero
// padded to the input size, one copy per request) and prints throughput, good rate (share of
// requests within the SLO) and the profile ℓ(b).
// Exit status: 0 on success, 1 on a model or engine error, 2 on bad flags.
#include <cxxopts.hpp>
#include <fmt/core.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <thread>

#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/onnx.hpp"
#include "nexus/profile/profiler.hpp"
#include "nexus/runtime/engine.hpp"
#ifdef NEXUS_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#include "nexus/model/zoo/image.hpp"
#endif

using namespace nexus;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  cxxopts::Options options("onnx_serve", "Serve an ONNX image model under a latency SLO");
  options.positional_help("MODEL.onnx");
  options.add_options()
    ("model", "ONNX model file", cxxopts::value<std::string>())
    ("slo", "latency SLO in ms", cxxopts::value<double>()->default_value("500"))
    ("rate", "requests per second", cxxopts::value<double>()->default_value("10"))
    ("seconds", "how long to send requests", cxxopts::value<double>()->default_value("5"))
    ("device", "devices: cpu, auto, sim:N, cuda:0", cxxopts::value<std::string>()->default_value("cpu"))
    ("input-shape", "per-item input shape C,H,W where the model's is symbolic",
     cxxopts::value<std::string>()->default_value(""))
    ("image", "a photo as input (needs OpenCV)", cxxopts::value<std::string>()->default_value(""))
    ("max-batch", "largest batch to profile", cxxopts::value<int>()->default_value("8"))
    ("h,help", "show this help");
  options.parse_positional({"model"});
  cxxopts::ParseResult args;
  try {
    args = options.parse(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "onnx_serve: {}\n", e.what());
    return 2;
  }
  if (args.count("help") || !args.count("model")) {
    fmt::print(stderr, "{}\n", options.help());
    return args.count("help") ? 0 : 2;
  }
  try {
    model::OnnxOptions onnx;
    std::stringstream dims(args["input-shape"].as<std::string>());
    for (std::string d; std::getline(dims, d, ',');) onnx.input_shape.push_back(std::stoll(d));
    auto graph = std::make_shared<model::Graph>(model::load_onnx(args["model"].as<std::string>(), onnx));
    const Shape item = graph->node(graph->inputs().at(0)).shape;
    fmt::print("model {}: input [N, {}], {:.1f} MB of weights, {:.2f} GMAC per item\n", graph->name(),
               fmt::join(item.dims(), ", "), graph->weights_bytes() / 1e6,
               graph->macs_per_item() / 1e9);

    const int max_batch = args["max-batch"].as<int>();
    ProfilerOptions popt{.max_batch = max_batch, .batches = sparse_batches(max_batch)};
    Profiler profiler([] { return std::make_unique<CpuBackend>(); }, popt);
    const BatchProfile profile = profiler.profile(*graph, graph->name());
    fmt::print("profile on {}:", profile.device());
    for (int b = 1; b <= profile.max_batch(); b *= 2)
      fmt::print(" l({})={:.1f} ms", b, profile.mean_latency(b).count() / 1000.0);
    fmt::print("\n");

    Tensor input{item};
    for (std::int64_t i = 0; i < input.numel(); ++i) input.data<float>()[i] = static_cast<float>(i % 255) / 255.0f;
#ifdef NEXUS_HAVE_OPENCV
    if (const auto file = args["image"].as<std::string>(); !file.empty()) {
      model::zoo::Image img = model::zoo::read_image(file);
      NEXUS_CHECK(item.rank() == 3 && item[0] == 3, "--image needs a [3, H, W] input, model has {}", item);
      std::fill(input.data<float>(), input.data<float>() + input.numel(), 0.0f);
      for (int c = 0; c < 3; ++c)
        for (std::int64_t y = 0; y < std::min<std::int64_t>(item[1], img.height); ++y)
          for (std::int64_t x = 0; x < std::min<std::int64_t>(item[2], img.width); ++x)
            input.data<float>()[(c * item[1] + y) * item[2] + x] =
                img.pixel(static_cast<int>(x), static_cast<int>(y))[c] / 255.0f;
    }
#else
    NEXUS_CHECK(args["image"].as<std::string>().empty(), "--image needs a build with OpenCV");
#endif

    const auto slo = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::duration<double, std::milli>(args["slo"].as<double>()));
    const double rate = args["rate"].as<double>();
    runtime::Engine engine({.devices = args["device"].as<std::string>()});
    engine.load_model({.name = graph->name(), .profile = profile, .graph = graph});
    engine.add_query({.name = "serve", .slo = slo, .expected_rate_rps = rate,
                      .stages = {{.name = "model", .model = graph->name()}}});
    const auto t0 = std::chrono::steady_clock::now();
    const auto period = std::chrono::duration<double>(1.0 / rate);
    const int total = static_cast<int>(args["seconds"].as<double>() * rate);
    for (int i = 0; i < total; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(period * i));
      engine.submit("serve", input.clone());
    }
    engine.shutdown();  // drains: every request ends
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int good = 0, completed = 0, n = 0;
    for (const runtime::QueryResult& r : engine.poll()) {
      ++n;
      completed += r.ok();
      good += r.met_slo;
    }
    fmt::print("{} requests at {:.1f} req/s, SLO {:.0f} ms: {} completed ({:.1f} img/s), good rate {:.1f}%\n",
               n, rate, slo.count() / 1000.0, completed, completed / wall, 100.0 * good / std::max(n, 1));
  } catch (const Error& e) {
    fmt::print(stderr, "onnx_serve: {}\n", e.what());
    return 1;
  }
  return 0;
}
