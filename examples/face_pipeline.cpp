// face_pipeline: face-api's full face analysis on photos, served by Nexus backends.
//
//   face_pipeline [--device cpu|cuda] [--models DIR] [--json] PHOTO...
//
// Per photo: decode (OpenCV imgcodecs) -> SSD-MobileNetV1 face detector (min confidence 0.5,
// at most 100 faces) -> per face: 68-point landmarks on the detection crop -> aligned crops ->
// FaceRecognitionNet descriptor (128-d), AgeGenderNet, FaceExpressionNet. The faces of a photo
// run as one batch per net. Prints faces, boxes, ages, genders, expressions and per-model
// timings; with --json prints only
//   {"images": [{"file", "width", "height", "faces": [{"score", "box": [x, y, w, h], "age",
//     "gender": "male"|"female", "gender_probability", "expressions": {7 labels},
//     "descriptor": [128], "landmarks": [[x, y] x 68]}]}]}
// on stdout (timings go to stderr). A photo that cannot be read is reported on stderr and
// skipped; the exit status is then 1. Bad options or models: exit status 2.
#include <nexus/core/error.hpp>
#include <nexus/exec/cpu_backend.hpp>
#include <nexus/exec/cuda_backend.hpp>
#include <nexus/model/zoo/face_age_gender.hpp>
#include <nexus/model/zoo/face_align.hpp>
#include <nexus/model/zoo/face_detector.hpp>
#include <nexus/model/zoo/face_expression.hpp>
#include <nexus/model/zoo/face_landmarks.hpp>
#include <nexus/model/zoo/face_recognition.hpp>
#include <nexus/model/zoo/image.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#if !defined(NEXUS_HAVE_OPENCV)
int main() {
  std::fprintf(stderr, "face_pipeline: built without OpenCV (needed to decode photos)\n");
  return 2;
}
#else

namespace fs = std::filesystem;
namespace zoo = nexus::model::zoo;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kMaxFaceBatch = 8;

struct Options {
  std::string device = "cpu";
  fs::path models;
  bool json = false;
  std::vector<fs::path> photos;
};

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: face_pipeline [--device cpu|cuda] [--models DIR] [--json] PHOTO...\n"
               "  --device   backend for the nets (default cpu)\n"
               "  --models   face-api model folder (default <repo>/data/face-api/model)\n"
               "  --json     print results as JSON on stdout\n");
}

fs::path default_models(const char* argv0) {
  // The repository's data/ next to the build tree, or the current directory's.
  for (fs::path p = fs::absolute(argv0).parent_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / "data/face-api/model")) return p / "data/face-api/model";
    if (p == p.parent_path()) break;
  }
  return "data/face-api/model";
}

/// One loaded net: its graph on a backend, and the time spent in it.
struct Stage {
  std::string name;
  std::unique_ptr<nexus::Backend> backend;
  double ms = 0.0;
  long items = 0;
};

std::unique_ptr<nexus::Backend> make_backend(const std::string& device) {
  if (device == "cuda") return nexus::make_cuda_backend();
  return std::make_unique<nexus::CpuBackend>();
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

/// Runs `stage` on the crops (each already a [3, size, size] net input), kMaxFaceBatch at a
/// time; returns, for each output of the graph, one row of floats per crop.
std::vector<std::vector<std::vector<float>>> run_batched(Stage& stage,
                                                         const std::vector<nexus::Tensor>& xs) {
  std::vector<std::vector<std::vector<float>>> rows;
  const nexus::Shape item = stage.backend->input_shape(0);
  for (std::size_t b = 0; b < xs.size(); b += kMaxFaceBatch) {
    const std::size_t n = std::min<std::size_t>(kMaxFaceBatch, xs.size() - b);
    std::vector<std::int64_t> dims = {static_cast<std::int64_t>(n)};
    for (auto d : item.dims()) dims.push_back(d);
    nexus::Tensor batch{nexus::Shape(dims)};
    const auto per = static_cast<std::size_t>(item.numel());
    for (std::size_t i = 0; i < n; ++i)
      std::copy(xs[b + i].values().begin(), xs[b + i].values().end(),
                batch.values().begin() + static_cast<std::ptrdiff_t>(i * per));
    const auto t0 = Clock::now();
    const auto outs = stage.backend->run({batch});
    stage.ms += ms_since(t0);
    stage.items += static_cast<long>(n);
    rows.resize(outs.size());
    for (std::size_t o = 0; o < outs.size(); ++o) {
      const auto len = static_cast<std::size_t>(outs[o].numel()) / n;
      for (std::size_t i = 0; i < n; ++i) {
        const float* p = outs[o].data<float>() + i * len;
        rows[o].emplace_back(p, p + len);
      }
    }
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.models = default_models(argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      opt.json = true;
    } else if (a == "--device" && i + 1 < argc) {
      opt.device = argv[++i];
    } else if (a == "--models" && i + 1 < argc) {
      opt.models = argv[++i];
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "face_pipeline: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    } else {
      opt.photos.emplace_back(a);
    }
  }
  if (opt.device != "cpu" && opt.device != "cuda") {
    std::fprintf(stderr, "face_pipeline: --device must be cpu or cuda, not '%s'\n",
                 opt.device.c_str());
    return 2;
  }
  if (opt.photos.empty()) {
    usage(stderr);
    return 2;
  }

  // Load the five models and place each on its backend.
  std::unique_ptr<zoo::FaceDetector> detector;
  Stage det{"detector"}, lmk{"landmarks"}, rec{"recognition"}, age{"age_gender"},
      expr{"expressions"};
  try {
    const auto t0 = Clock::now();
    detector = std::make_unique<zoo::FaceDetector>(zoo::FaceDetector::load(opt.models));
    const nexus::model::Graph lg = zoo::load_face_landmark68_net(opt.models);
    const nexus::model::Graph rg = zoo::load_face_recognition_net(opt.models);
    const nexus::model::Graph ag = zoo::load_age_gender_net(opt.models);
    const nexus::model::Graph eg = zoo::load_face_expression_net(opt.models);
    for (Stage* s : {&det, &lmk, &rec, &age, &expr}) s->backend = make_backend(opt.device);
    det.backend->load(detector->graph(), 1);
    lmk.backend->load(lg, kMaxFaceBatch);
    rec.backend->load(rg, kMaxFaceBatch);
    age.backend->load(ag, kMaxFaceBatch);
    expr.backend->load(eg, kMaxFaceBatch);
    std::fprintf(stderr, "face_pipeline: 5 models loaded on %s in %.0f ms\n",
                 det.backend->device_name().c_str(), ms_since(t0));
  } catch (const nexus::Error& e) {
    std::fprintf(stderr, "face_pipeline: cannot set up the models on --device %s: %s\n",
                 opt.device.c_str(), e.what());
    return 2;
  }

  nlohmann::ordered_json out_images = nlohmann::ordered_json::array();
  double decode_ms = 0.0, cpu_ms = 0.0;  // decode; pre/post-processing and crops on the CPU
  int failed = 0;
  for (const fs::path& photo : opt.photos) {
    try {
      auto t0 = Clock::now();
      const zoo::Image img = zoo::read_image(photo);
      decode_ms += ms_since(t0);

      t0 = Clock::now();
      nexus::Tensor input(nexus::Shape{1, 3, zoo::kFaceDetectorInputSize,
                                       zoo::kFaceDetectorInputSize});
      detector->preprocess_into(img, input.values());
      cpu_ms += ms_since(t0);
      t0 = Clock::now();
      const auto outs = det.backend->run({input});
      det.ms += ms_since(t0);
      det.items += 1;
      t0 = Clock::now();
      const auto dets = detector->postprocess(outs, 0, img.width, img.height);

      // Landmarks on each detection crop, then the aligned crops for the other nets.
      std::vector<zoo::FaceRect> boxes;
      std::vector<nexus::Tensor> lmk_in;
      for (const auto& d : dets) {
        const zoo::FaceRect box{d.x, d.y, d.width, d.height};
        boxes.push_back(box);
        lmk_in.push_back(zoo::face_net_input(zoo::extract_face(img, box), zoo::kFaceLandmarkInputSize));
      }
      cpu_ms += ms_since(t0);
      const auto lmk_out = run_batched(lmk, lmk_in);
      t0 = Clock::now();
      std::vector<zoo::AlignedFace> aligned;
      std::vector<nexus::Tensor> rec_in, small_in;
      for (std::size_t f = 0; f < dets.size(); ++f) {
        aligned.push_back(zoo::align_face(lmk_out[0][f], boxes[f], img.width, img.height));
        rec_in.push_back(zoo::face_net_input(zoo::extract_face(img, aligned[f].descriptor_rect),
                                             zoo::kFaceRecognitionInputSize));
        small_in.push_back(zoo::face_net_input(zoo::extract_face(img, aligned[f].aligned_rect),
                                               zoo::kAgeGenderInputSize));
      }
      cpu_ms += ms_since(t0);
      const auto rec_out = run_batched(rec, rec_in);
      const auto age_out = run_batched(age, small_in);
      const auto expr_out = run_batched(expr, small_in);

      nlohmann::ordered_json faces = nlohmann::ordered_json::array();
      if (!opt.json)
        std::printf("%s: %d x %d, %zu face(s)\n", photo.string().c_str(), img.width, img.height,
                    dets.size());
      for (std::size_t f = 0; f < dets.size(); ++f) {
        const auto ag = zoo::decode_age_gender(age_out[0][f], age_out[1][f]);
        const auto& probs = expr_out[0][f];
        nlohmann::ordered_json expressions = nlohmann::ordered_json::object();
        for (int k = 0; k < zoo::kFaceExpressionCount; ++k)
          expressions[std::string(zoo::kFaceExpressionLabels[static_cast<std::size_t>(k)])] =
              probs[static_cast<std::size_t>(k)];
        nlohmann::ordered_json landmarks = nlohmann::ordered_json::array();
        for (const auto& p : aligned[f].landmarks) landmarks.push_back({p.x, p.y});
        const auto& d = dets[f];
        faces.push_back({{"score", d.score},
                         {"box", {d.x, d.y, d.width, d.height}},
                         {"age", ag.age},
                         {"gender", zoo::gender_name(ag.gender)},
                         {"gender_probability", ag.gender_probability},
                         {"expressions", expressions},
                         {"descriptor", rec_out[0][f]},
                         {"landmarks", landmarks}});
        if (!opt.json) {
          const int top = zoo::top_face_expression(probs);
          std::printf("  face %zu: score %.3f box [%.0f, %.0f, %.0f x %.0f]  age %.1f  %s (%.2f)  "
                      "%s (%.2f)\n",
                      f, d.score, d.x, d.y, d.width, d.height, ag.age,
                      zoo::gender_name(ag.gender), ag.gender_probability,
                      std::string(zoo::kFaceExpressionLabels[static_cast<std::size_t>(top)]).c_str(),
                      probs[static_cast<std::size_t>(top)]);
        }
      }
      out_images.push_back({{"file", photo.string()},
                            {"width", img.width},
                            {"height", img.height},
                            {"faces", faces}});
    } catch (const nexus::Error& e) {
      std::fprintf(stderr, "face_pipeline: %s: %s\n", photo.string().c_str(), e.what());
      ++failed;
    }
  }

  if (opt.json) std::printf("%s\n", nlohmann::ordered_json{{"images", out_images}}.dump().c_str());
  std::FILE* t = opt.json ? stderr : stdout;
  std::fprintf(t, "timings on %s (%zu photo(s), %d failed):\n", det.backend->device_name().c_str(),
               opt.photos.size(), failed);
  std::fprintf(t, "  %-12s %9.1f ms total\n", "decode", decode_ms);
  std::fprintf(t, "  %-12s %9.1f ms total (pre/post-processing, crops)\n", "cpu", cpu_ms);
  for (const Stage* s : {&det, &lmk, &rec, &age, &expr})
    std::fprintf(t, "  %-12s %9.1f ms total, %4ld item(s), %7.2f ms/item\n", s->name.c_str(),
                 s->ms, s->items, s->items ? s->ms / static_cast<double>(s->items) : 0.0);
  return failed ? 1 : 0;
}

#endif
