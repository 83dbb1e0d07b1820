// The whole face-api chain on the six demo photos against face-api itself
// (tests/fixtures/face_api_reference.json, "images": face-api run on the pixels OpenCV decodes,
// so both sides see identical input): detector -> landmarks on the detection crop -> aligned
// crops -> descriptor, age/gender, expressions, all on the CpuBackend.
#include <catch2/catch.hpp>

#include <nexus/exec/cpu_backend.hpp>
#include <nexus/model/zoo/face_age_gender.hpp>
#include <nexus/model/zoo/face_align.hpp>
#include <nexus/model/zoo/face_detector.hpp>
#include <nexus/model/zoo/face_expression.hpp>
#include <nexus/model/zoo/face_landmarks.hpp>
#include <nexus/model/zoo/face_recognition.hpp>
#include <nexus/model/zoo/image.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "skip.hpp"

#if defined(NEXUS_HAVE_OPENCV)

namespace fs = std::filesystem;
namespace zoo = nexus::model::zoo;
using nexus::Tensor;

namespace {

const fs::path kRoot = NEXUS_SOURCE_DIR;
const fs::path kModels = kRoot / "data/face-api/model";

struct Net {
  std::unique_ptr<nexus::CpuBackend> backend = std::make_unique<nexus::CpuBackend>();
  std::vector<std::vector<float>> run(const Tensor& item) {
    std::vector<std::int64_t> dims = {1};
    for (auto d : item.shape().dims()) dims.push_back(d);
    const auto outs = backend->run({item.reshape(nexus::Shape(dims))});
    std::vector<std::vector<float>> rows;
    for (const auto& o : outs) rows.emplace_back(o.values().begin(), o.values().end());
    return rows;
  }
};

double box_iou(const std::vector<double>& a, const std::vector<double>& b) {
  const double x0 = std::max(a[0], b[0]), y0 = std::max(a[1], b[1]);
  const double x1 = std::min(a[0] + a[2], b[0] + b[2]), y1 = std::min(a[1] + a[3], b[1] + b[3]);
  const double inter = std::max(0.0, x1 - x0) * std::max(0.0, y1 - y0);
  return inter / (a[2] * a[3] + b[2] * b[3] - inter);
}

}  // namespace

TEST_CASE("full face pipeline matches face-api on the demo photos", "[face][pipeline][data]") {
  NEXUS_SKIP_UNLESS_DATA(fs::exists(kModels / "ssd_mobilenetv1_model-weights_manifest.json"),
                         "face-api models not in " << kModels << " (run scripts/fetch_data.sh)");
  std::ifstream in(kRoot / "tests/fixtures/face_api_reference.json");
  REQUIRE(in.good());
  const auto ref = nlohmann::json::parse(in);

  const zoo::FaceDetector detector = zoo::FaceDetector::load(kModels);
  Net det, lmk, rec, age, expr;
  det.backend->load(detector.graph(), 1);
  lmk.backend->load(zoo::load_face_landmark68_net(kModels), 1);
  rec.backend->load(zoo::load_face_recognition_net(kModels), 1);
  age.backend->load(zoo::load_age_gender_net(kModels), 1);
  expr.backend->load(zoo::load_face_expression_net(kModels), 1);

  int faces_checked = 0;
  for (const auto& im : ref["images"]) {
    const std::string file = im["file"].get<std::string>();
    const zoo::Image img = zoo::read_image(kRoot / "data/face-api/demo" / file);
    REQUIRE(img.width == im["width"].get<int>());
    const auto dets = detector.detect(*det.backend, img);
    REQUIRE(dets.size() == im["faces"].size());
    for (std::size_t f = 0; f < dets.size(); ++f) {
      const auto& rf = im["faces"][f];
      INFO(file << " face " << f);
      const auto& d = dets[f];
      // Same pixels on both sides: same order, near-identical boxes.
      CHECK(box_iou({d.x, d.y, d.width, d.height}, rf["box"].get<std::vector<double>>()) >= 0.999);
      CHECK(d.score == Approx(rf["score"].get<double>()).margin(1e-4));

      const zoo::FaceRect box{d.x, d.y, d.width, d.height};
      const auto raw = lmk.run(zoo::face_net_input(zoo::extract_face(img, box), 112));
      const zoo::AlignedFace a = zoo::align_face(raw[0], box, img.width, img.height);
      const auto ref_lm = rf["landmarks"].get<std::vector<std::vector<double>>>();
      double lm_err = 0;
      for (std::size_t k = 0; k < 68; ++k)
        lm_err = std::max(lm_err, std::hypot(a.landmarks[k].x - ref_lm[k][0],
                                             a.landmarks[k].y - ref_lm[k][1]));
      CHECK(lm_err <= 0.5);  // pixels

      const auto desc = rec.run(zoo::face_net_input(zoo::extract_face(img, a.descriptor_rect), 150))[0];
      const auto ref_desc = rf["descriptor"].get<std::vector<double>>();
      double dot = 0, na = 0, nb = 0;
      for (std::size_t k = 0; k < 128; ++k) {
        dot += desc[k] * ref_desc[k];
        na += desc[k] * desc[k];
        nb += ref_desc[k] * ref_desc[k];
      }
      CHECK(dot / std::sqrt(na * nb) >= 0.995);

      const Tensor small = zoo::face_net_input(zoo::extract_face(img, a.aligned_rect), 112);
      const auto ag_out = age.run(small);
      const auto ag = zoo::decode_age_gender(ag_out[0], ag_out[1]);
      CHECK(std::abs(ag.age - rf["age"].get<double>()) <= 1.0);
      CHECK(std::string(zoo::gender_name(ag.gender)) == rf["gender"].get<std::string>());
      CHECK(ag.gender_probability == Approx(rf["gender_probability"].get<double>()).margin(0.01));

      const auto probs = expr.run(small)[0];
      for (int k = 0; k < zoo::kFaceExpressionCount; ++k) {
        const std::string label(zoo::kFaceExpressionLabels[static_cast<std::size_t>(k)]);
        CHECK(std::abs(probs[static_cast<std::size_t>(k)] - rf["expressions"][label].get<double>()) <= 0.01);
      }
      ++faces_checked;
    }
  }
  CHECK(faces_checked == 22);
}

#endif
