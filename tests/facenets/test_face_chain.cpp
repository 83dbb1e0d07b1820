// face-api's chain after detection (landmarks on the detection crop -> min-bbox and dlib
// alignment -> expressions, age/gender, descriptor) against face-api 1.7.15 itself on images
// both sides hold bit for bit (tests/facenets/face_chain_reference.json, written by
// tests/facenets/make_chain_reference.js): a real face from demo/sample1.jpg and LCG noise,
// with detection boxes inside and across the image borders.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/zoo/face_age_gender.hpp"
#include "nexus/model/zoo/face_align.hpp"
#include "nexus/model/zoo/face_expression.hpp"
#include "nexus/model/zoo/face_landmarks.hpp"
#include "nexus/model/zoo/face_recognition.hpp"

#include "skip.hpp"

namespace fs = std::filesystem;
using namespace nexus;
using namespace nexus::model::zoo;

namespace {

const fs::path kModelDir = fs::path(NEXUS_SOURCE_DIR) / "data/face-api/model";
const fs::path kFixture = fs::path(NEXUS_SOURCE_DIR) / "tests/facenets/face_chain_reference.json";

std::vector<std::uint8_t> base64_decode(const std::string& s) {
  std::vector<std::uint8_t> out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char ch : s) {
    int v;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '+') v = 62;
    else if (ch == '/') v = 63;
    else continue;  // '=' padding
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xffu));
    }
  }
  return out;
}

Image case_image(const nlohmann::json& c) {
  Image img(c["width"].get<int>(), c["height"].get<int>());
  if (c.contains("rgb_base64")) {
    img.rgb = base64_decode(c["rgb_base64"].get<std::string>());
  } else {  // LCG noise, tests/reference/make_reference.js's pattern
    std::uint32_t s = c["seed"].get<std::uint32_t>();
    for (auto& v : img.rgb) {
      s = s * 1664525u + 1013904223u;
      v = static_cast<std::uint8_t>(s >> 24);
    }
  }
  REQUIRE(img.rgb.size() == static_cast<std::size_t>(img.width) * img.height * 3);
  return img;
}

struct Net {
  explicit Net(const model::Graph& g) : backend(CpuBackendOptions{2}) { backend.load(g, 1); }
  std::vector<Tensor> run(const Tensor& chw) {
    return backend.run({chw.reshape(Shape({1, chw.shape()[0], chw.shape()[1], chw.shape()[2]}))});
  }
  CpuBackend backend;
};

void check_rect(const FaceRect& got, const nlohmann::json& want, double tol) {
  CHECK(got.x == Approx(want[0].get<double>()).margin(tol));
  CHECK(got.y == Approx(want[1].get<double>()).margin(tol));
  CHECK(got.width == Approx(want[2].get<double>()).margin(tol));
  CHECK(got.height == Approx(want[3].get<double>()).margin(tol));
}

}  // namespace

TEST_CASE("the face-api chain after detection matches face-api bit-exact inputs", "[facenets][data]") {
  NEXUS_SKIP_UNLESS_DATA(fs::exists(kModelDir / "face_recognition_model-weights_manifest.json"),
                         "face-api models not in " << kModelDir << " (run scripts/fetch_data.sh)");
  std::ifstream in(kFixture);
  REQUIRE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);

  Net landmarks(load_face_landmark68_net(kModelDir));
  Net expressions(load_face_expression_net(kModelDir));
  Net age_gender(load_age_gender_net(kModelDir));
  Net recognition(load_face_recognition_net(kModelDir));

  for (const auto& c : ref["cases"]) {
    const Image img = case_image(c);
    int index = 0;
    for (const auto& want : c["faces"]) {
      INFO("case " << c["name"].get<std::string>() << ", face " << index++);
      const auto& d = want["detection"];
      const FaceRect det{d[0].get<double>(), d[1].get<double>(), d[2].get<double>(),
                         d[3].get<double>()};

      const Tensor raw =
          landmarks.run(face_net_input(extract_face(img, det), kFaceLandmarkInputSize))[0];
      const AlignedFace f = align_face(raw.values(), det, img.width, img.height);
      for (std::size_t i = 0; i < 68; ++i) {
        INFO("landmark " << i);
        CHECK(f.landmarks[i].x == Approx(want["landmarks"][i][0].get<double>()).margin(1e-3));
        CHECK(f.landmarks[i].y == Approx(want["landmarks"][i][1].get<double>()).margin(1e-3));
      }
      check_rect(f.aligned_rect, want["aligned_rect"], 1e-3);
      check_rect(f.descriptor_rect, want["dlib_rect"], 0.0);  // integers

      const Tensor aligned =
          face_net_input(extract_face(img, f.aligned_rect), kFaceExpressionInputSize);
      const Tensor ex = expressions.run(aligned)[0];
      for (std::size_t k = 0; k < kFaceExpressionCount; ++k) {
        INFO(kFaceExpressionLabels[k]);
        CHECK(ex.values()[k] == Approx(want["expressions"][k].get<double>()).margin(1e-4));
      }
      const auto ag = age_gender.run(aligned);
      const AgeGender r = decode_age_gender(ag[0].values(), ag[1].values());
      CHECK(r.age == Approx(want["age"].get<double>()).epsilon(1e-4));
      CHECK(gender_name(r.gender) == want["gender"].get<std::string>());
      CHECK(r.gender_probability == Approx(want["gender_probability"].get<double>()).margin(1e-4));

      const Tensor desc = recognition.run(face_net_input(extract_face(img, f.descriptor_rect),
                                                         kFaceRecognitionInputSize))[0];
      const auto want_desc = want["descriptor"].get<std::vector<float>>();
      REQUIRE(desc.numel() == kFaceDescriptorSize);
      float scale = 0;
      for (float v : want_desc) scale = std::max(scale, std::abs(v));
      for (std::size_t k = 0; k < want_desc.size(); ++k)
        CHECK(std::abs(desc.values()[k] - want_desc[k]) <= 1e-4f * scale);
      CHECK(face_distance(desc.values(), want_desc) < 1e-3f);
    }
  }
}
