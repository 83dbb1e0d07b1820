// nexus-profile: measures batching profiles of zoo models on the CpuBackend and writes one JSON
// file per model into a ModelStore directory (format: include/nexus/profile/batch_profile.hpp).
//
//   nexus-profile --model resnet50[,mobilenet_v1,...] --out DIR [--max-batch N] [--threads T]
//                 [--repeats R] [--batches sparse|all|1,2,4,...] [--min-gain G] [--search-repeats S]
//                 [--face-models DIR]
//   nexus-profile --onnx MODEL.onnx[,...] [--input-shape C,H,W] --out DIR [...]
//   nexus-profile --device cuda --precision fp16 --model lenet,resnet50 --out DIR [...]
//
// --device cuda profiles on the CudaBackend of GPU 0 (a build with CUDA; --precision fp32|fp16,
// files named MODEL@<gpu>-<precision>.json, as sim/profiles/h200-*); --threads is the CPU's.
//
// --onnx profiles ONNX models (model/onnx.hpp; the profile is named after the file's stem);
// --input-shape gives the per-item input shape where the model's H, W are symbolic.
// Models: the standard zoo (resnet50, mobilenet_v1, vgg16, googlenet, ssd_mobilenet_v1_300;
// seeded random weights) and the face-api nets (face_detector, face_recognition,
// face_landmarks, face_expression, age_gender; weights from --face-models, default
// data/face-api/model). face_detector's pre/post-processing (resize to 512², decode + NMS) is
// timed on a synthetic 640x480 image; the other models get 0.
// Exit status: 0 on success, 1 on a model or backend error (message on stderr), 2 on bad flags.

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/zoo/face_detector.hpp"
#include "nexus/profile/profiler.hpp"
#include "named_models.hpp"
#ifdef NEXUS_WITH_ONNX
#include "nexus/model/onnx.hpp"
#endif

namespace fs = std::filesystem;
namespace zoo = nexus::model::zoo;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("nexus-profile", "Measure batching profiles on the CpuBackend");
  options.add_options()
    ("model", "comma-separated model names", cxxopts::value<std::string>())
    ("out", "output directory (a ModelStore)", cxxopts::value<std::string>())
    ("max-batch", "upper limit of the max-batch search", cxxopts::value<int>()->default_value("16"))
    ("threads", "CpuBackend threads (0 = all cores)", cxxopts::value<int>()->default_value("0"))
    ("repeats", "timed runs per batch size (>= 10)", cxxopts::value<int>()->default_value("10"))
    ("batches", "sparse | all | a list 1,2,4", cxxopts::value<std::string>()->default_value("sparse"))
    ("min-gain", "max-batch search: stop doubling when throughput gains less than this (0.01 = 1%; "
     "0 = only when it falls; -1 = never)", cxxopts::value<double>()->default_value("0.01"))
    ("search-repeats", "timed runs per probe of the max-batch search (>= 1)",
     cxxopts::value<int>()->default_value("3"))
    ("onnx", "comma-separated ONNX model files", cxxopts::value<std::string>())
    ("input-shape", "ONNX: per-item input shape C,H,W (for symbolic dims)",
     cxxopts::value<std::string>()->default_value(""))
    ("device", "cpu | cuda (GPU 0; needs a CUDA build)", cxxopts::value<std::string>()->default_value("cpu"))
    ("precision", "cuda: fp32 | fp16", cxxopts::value<std::string>()->default_value("fp16"))
    ("face-models", "face-api model directory",
     cxxopts::value<std::string>()->default_value("data/face-api/model"))
    ("h,help", "show this help");
  cxxopts::ParseResult args;
  try {
    args = options.parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "nexus-profile: " << e.what() << "\n";
    return 2;
  }
  if (args.count("help") || (!args.count("model") && !args.count("onnx")) || !args.count("out")) {
    std::cerr << options.help() << "\nmodels:";
    for (const auto& n : nexus::tools::named_model_names()) std::cerr << " " << n;
    std::cerr << "\n";
    return args.count("help") ? 0 : 2;
  }
  try {
    nexus::ProfilerOptions po;
    po.max_batch = args["max-batch"].as<int>();
    po.repeats = args["repeats"].as<int>();
    po.min_gain = args["min-gain"].as<double>();
    po.search_repeats = args["search-repeats"].as<int>();
    const std::string batches = args["batches"].as<std::string>();
    if (batches == "sparse") {
      po.batches = nexus::sparse_batches(po.max_batch);
    } else if (batches != "all") {
      for (const auto& b : split(batches)) po.batches.push_back(std::stoi(b));
    }
    const int threads = args["threads"].as<int>();
    const std::string device = args["device"].as<std::string>();
    const std::string precision = args["precision"].as<std::string>();
    if (device != "cpu" && device != "cuda") {
      std::cerr << "nexus-profile: --device '" << device << "': expected cpu or cuda\n";
      return 2;
    }
    if (precision != "fp32" && precision != "fp16") {
      std::cerr << "nexus-profile: --precision '" << precision << "': expected fp32 or fp16\n";
      return 2;
    }
    nexus::CudaBackendOptions cuda_options;
    cuda_options.precision = precision == "fp16" ? nexus::CudaPrecision::kFloat16 : nexus::CudaPrecision::kFloat32;
    // The face detector's pre/post-processing needs real outputs: a backend of the same kind.
    auto make_backend = [device, threads, cuda_options]() -> std::unique_ptr<nexus::Backend> {
      if (device == "cuda") return nexus::make_cuda_backend(cuda_options);
      return std::make_unique<nexus::CpuBackend>(nexus::CpuBackendOptions{threads});
    };
    nexus::Profiler profiler(make_backend, po);
    const fs::path out = args["out"].as<std::string>();
    fs::create_directories(out);
    const fs::path face_dir = args["face-models"].as<std::string>();
    std::vector<std::string> onnx_files;
    if (args.count("onnx")) onnx_files = split(args["onnx"].as<std::string>());
#ifdef NEXUS_WITH_ONNX
    nexus::model::OnnxOptions onnx_options;
    for (const auto& d : split(args["input-shape"].as<std::string>()))
      onnx_options.input_shape.push_back(std::stoll(d));
    for (const auto& file : onnx_files) {
      const auto graph = nexus::model::load_onnx(file, onnx_options);
      std::cerr << "nexus-profile: profiling " << file << " ..." << std::endl;
      const nexus::BatchProfile profile = profiler.profile(graph, graph.name());
      const fs::path path = out / (graph.name() + "@" + profile.device() + ".json");
      profile.save(path);
      std::cout << path.string() << ": max batch " << profile.max_batch() << ", l(1) = "
                << profile.mean_latency(1).count() << " us, l(" << profile.max_batch()
                << ") = " << profile.mean_latency(profile.max_batch()).count() << " us\n";
    }
#else
    if (!onnx_files.empty())
      throw nexus::Error("--onnx: this build has no ONNX import (install libonnx-dev "
                         "libprotobuf-dev and reconfigure)");
#endif
    const std::vector<std::string> models =
        args.count("model") ? split(args["model"].as<std::string>()) : std::vector<std::string>{};
    for (const auto& name : models) {
      nexus::BatchProfile profile;
      std::cerr << "nexus-profile: profiling " << name << " ..." << std::endl;
      if (name == "face_detector") {
        const auto det = zoo::FaceDetector::load(face_dir);
        zoo::Image image(640, 480);
        for (std::size_t i = 0; i < image.rgb.size(); ++i) image.rgb[i] = static_cast<std::uint8_t>(i * 7);
        const auto backend = make_backend();
        backend->load(det.graph(), 1);
        const auto outputs =  // real outputs to post-process
            backend->run({det.preprocess(image).reshape(nexus::Shape({1, 3, 512, 512}))});
        profile = profiler.profile(
            det.graph(), name, [&] { (void)det.preprocess(image); },
            [&] { (void)det.postprocess(outputs, 0, image.width, image.height); });
      } else {
        profile = profiler.profile(nexus::tools::load_named_model(name, face_dir), name);
      }
      const fs::path file = out / (name + "@" + profile.device() + ".json");
      profile.save(file);
      std::cout << file.string() << ": max batch " << profile.max_batch() << ", l(1) = "
                << profile.mean_latency(1).count() << " us, l(" << profile.max_batch()
                << ") = " << profile.mean_latency(profile.max_batch()).count() << " us\n";
    }
  } catch (const nexus::Error& e) {
    std::cerr << "nexus-profile: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
