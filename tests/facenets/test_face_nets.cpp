// The four face nets in the Graph IR, run by the CpuBackend, against face-api's own outputs
// (tests/fixtures/face_api_reference.json, written by tests/reference/make_reference.js with
// @vladmandic/face-api 1.7.15 on the TensorFlow.js CPU backend) on fixed LCG inputs; plus
// structural checks (shapes, softmax, descriptor size, error messages).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/weights.hpp"
#include "nexus/model/zoo/face_age_gender.hpp"
#include "nexus/model/zoo/face_expression.hpp"
#include "nexus/model/zoo/face_landmarks.hpp"
#include "nexus/model/zoo/face_recognition.hpp"
#include "skip.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace nexus;
using namespace nexus::model;
using namespace nexus::model::zoo;

namespace {

const fs::path kModelDir = fs::path(NEXUS_SOURCE_DIR) / "data/face-api/model";
// NEXUS_FACE_API_REFERENCE overrides the fixture (e.g. one freshly made by make_reference.js).
const fs::path kFixture = std::getenv("NEXUS_FACE_API_REFERENCE")
                              ? fs::path(std::getenv("NEXUS_FACE_API_REFERENCE"))
                              : fs::path(NEXUS_SOURCE_DIR) / "tests/fixtures/face_api_reference.json";

bool have_models() {
  return fs::exists(kModelDir / "face_recognition_model-weights_manifest.json");
}

#define REQUIRE_MODELS() \
  NEXUS_SKIP_UNLESS_DATA(have_models(), "face-api models not in " << kModelDir << " (run scripts/fetch_data.sh)")

const json* fixture() {
  static const std::unique_ptr<json> j = []() -> std::unique_ptr<json> {
    std::ifstream in(kFixture);
    if (!in) return nullptr;
    return std::make_unique<json>(json::parse(in));
  }();
  // The fixture is committed: its absence is a failure, not a skip.
  REQUIRE(j != nullptr);
  return j.get();
}

// The fixture's input: [size, size, 3] integers 0..255, pixel i = top byte of the LCG state
// after i+1 steps; returned as the graph's [1, 3, size, size] float input.
Tensor lcg_image(int size, std::uint32_t seed) {
  Tensor t(Shape{1, 3, size, size});
  float* p = t.data();
  std::uint32_t s = seed;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c) {
        s = s * 1664525u + 1013904223u;
        p[(static_cast<std::size_t>(c) * size + y) * size + x] = static_cast<float>(s >> 24);
      }
  return t;
}

std::vector<float> to_vector(const json& a) { return a.get<std::vector<float>>(); }

// |got - want| <= rel * max|want| element-wise: 1e-4 relative to the output's scale (elements
// near zero have no meaningful relative error after ~40 float32 layers).
void check_close(std::span<const float> got, const std::vector<float>& want, double rel,
                 const std::string& what) {
  REQUIRE(got.size() == want.size());
  double scale = 0.0;
  for (float v : want) scale = std::max(scale, static_cast<double>(std::abs(v)));
  double worst = 0.0;
  std::size_t worst_i = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - want[i]);
    if (d > worst) worst = d, worst_i = i;
  }
  INFO(what << ": worst |diff| " << worst << " at " << worst_i << " (got " << got[worst_i]
            << ", want " << want[worst_i] << "), scale " << scale);
  CHECK(worst <= rel * scale);
}

std::vector<Tensor> run_graph(const Graph& g, const Tensor& input) {
  CpuBackend backend(CpuBackendOptions{2});
  backend.load(g, 2);
  return backend.run({input});
}

}  // namespace

TEST_CASE("FaceRecognitionNet matches face-api on the fixed input", "[facenets][data]") {
  REQUIRE_MODELS();
  const Graph g = load_face_recognition_net(kModelDir);
  REQUIRE(g.inputs().size() == 1);
  REQUIRE(g.node(g.inputs()[0]).shape == (Shape{3, 150, 150}));
  REQUIRE(g.outputs().size() == 1);
  CHECK(g.node(g.outputs()[0]).shape == Shape{kFaceDescriptorSize});

  const json* ref = fixture();
  const json& r = (*ref)["fixed_inputs"]["face_recognition"];
  const int size = r["size"];
  REQUIRE(size == kFaceRecognitionInputSize);
  const auto out = run_graph(g, lcg_image(size, r["seed"].get<std::uint32_t>()));
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].shape() == (Shape{1, kFaceDescriptorSize}));
  check_close(out[0].values(), to_vector(r["descriptor"]), 1e-4, "descriptor");
}

TEST_CASE("FaceLandmark68Net matches face-api on the fixed input", "[facenets][data]") {
  REQUIRE_MODELS();
  const Graph g = load_face_landmark68_net(kModelDir);
  REQUIRE(g.node(g.inputs()[0]).shape == (Shape{3, 112, 112}));
  REQUIRE(g.node(g.outputs()[0]).shape == Shape{136});

  const json* ref = fixture();
  const json& r = (*ref)["fixed_inputs"]["face_landmark_68"];
  const auto out = run_graph(g, lcg_image(r["size"], r["seed"].get<std::uint32_t>()));
  REQUIRE(out[0].shape() == (Shape{1, 136}));
  check_close(out[0].values(), to_vector(r["raw"]), 1e-4, "landmarks");
}

TEST_CASE("AgeGenderNet matches face-api on the fixed input", "[facenets][data]") {
  REQUIRE_MODELS();
  const Graph g = load_age_gender_net(kModelDir);
  REQUIRE(g.outputs().size() == 2);
  CHECK(g.node(g.outputs()[0]).shape == Shape{1});
  CHECK(g.node(g.outputs()[1]).shape == Shape{2});

  const json* ref = fixture();
  const json& r = (*ref)["fixed_inputs"]["age_gender"];
  const auto out = run_graph(g, lcg_image(r["size"], r["seed"].get<std::uint32_t>()));
  REQUIRE(out.size() == 2);
  check_close(out[0].values(), to_vector(r["age"]), 1e-4, "age");
  check_close(out[1].values(), to_vector(r["gender_probs"]), 1e-4, "gender");
  CHECK(out[1].values()[0] + out[1].values()[1] == Approx(1.0f).epsilon(1e-6));

  const AgeGender ag = decode_age_gender(out[0].values(), out[1].values());
  const float p_male = r["gender_probs"][0];
  CHECK(ag.gender == (p_male > 0.5f ? Gender::kMale : Gender::kFemale));
  CHECK(ag.age == Approx(r["age"][0].get<float>()).epsilon(1e-4));
}

TEST_CASE("FaceExpressionNet matches face-api on the fixed input", "[facenets][data]") {
  REQUIRE_MODELS();
  const Graph g = load_face_expression_net(kModelDir);
  REQUIRE(g.node(g.outputs()[0]).shape == Shape{kFaceExpressionCount});

  const json* ref = fixture();
  const json& r = (*ref)["fixed_inputs"]["face_expression"];
  for (int i = 0; i < kFaceExpressionCount; ++i)
    CHECK(r["labels"][i].get<std::string>() == kFaceExpressionLabels[static_cast<std::size_t>(i)]);
  const auto out = run_graph(g, lcg_image(r["size"], r["seed"].get<std::uint32_t>()));
  REQUIRE(out[0].shape() == (Shape{1, kFaceExpressionCount}));
  check_close(out[0].values(), to_vector(r["probs"]), 1e-4, "expressions");
  double sum = 0.0;
  for (float p : out[0].values()) sum += p;
  CHECK(sum == Approx(1.0).epsilon(1e-5));
  std::vector<float> want = to_vector(r["probs"]);
  CHECK(top_face_expression(out[0].values()) == top_face_expression(want));
}

TEST_CASE("face nets run batches: items are independent", "[facenets][data]") {
  REQUIRE_MODELS();
  const Graph g = load_face_expression_net(kModelDir);
  Tensor batch(Shape{2, 3, 112, 112});
  const Tensor a = lcg_image(112, 11), b = lcg_image(112, 12);
  std::copy(a.values().begin(), a.values().end(), batch.values().begin());
  std::copy(b.values().begin(), b.values().end(), batch.values().begin() + a.numel());
  CpuBackend backend(CpuBackendOptions{2});
  backend.load(g, 2);
  const Tensor both = backend.run({batch})[0];
  const Tensor only_b = backend.run({b})[0];
  REQUIRE(both.shape() == (Shape{2, 7}));
  for (int i = 0; i < 7; ++i) {
    CHECK(both.values()[7 + static_cast<std::size_t>(i)] ==
          Approx(only_b.values()[static_cast<std::size_t>(i)]).epsilon(1e-5));
    CHECK(both.values()[7 + static_cast<std::size_t>(i)] >= 0.0f);
  }
}

TEST_CASE("face net builders name a missing or misshaped weight", "[facenets][data]") {
  WeightMap empty;
  CHECK_THROWS_WITH(build_face_recognition_net(empty),
                    Catch::Contains("conv32_down/conv/filters"));
  CHECK_THROWS_WITH(build_face_landmark68_net(empty), Catch::Contains("dense0/conv0/filters"));
  CHECK_THROWS_WITH(build_face_expression_net(empty), Catch::Contains("dense0/conv0/filters"));
  CHECK_THROWS_WITH(build_age_gender_net(empty),
                    Catch::Contains("entry_flow/conv_in/filters"));
  REQUIRE_MODELS();
  WeightMap w = load_tfjs_weights(kModelDir / "face_expression_model-weights_manifest.json");
  w["fc/weights"] = Tensor(Shape{256, 6});
  CHECK_THROWS_WITH(build_face_expression_net(w), Catch::Contains("fc/weights"));
  CHECK_THROWS_AS(load_face_recognition_net(kModelDir / "no_such_dir"), Error);
}

TEST_CASE("decode_age_gender follows face-api's threshold", "[facenets]") {
  const float age[1] = {31.5f};
  const float male[2] = {0.8f, 0.2f};
  const float female[2] = {0.3f, 0.7f};
  const float tie[2] = {0.5f, 0.5f};
  AgeGender r = decode_age_gender(age, male);
  CHECK(r.age == 31.5f);
  CHECK(r.gender == Gender::kMale);
  CHECK(r.gender_probability == Approx(0.8f));
  r = decode_age_gender(age, female);
  CHECK(r.gender == Gender::kFemale);
  CHECK(r.gender_probability == Approx(0.7f));
  r = decode_age_gender(age, tie);  // isMale = probMale > 0.5
  CHECK(r.gender == Gender::kFemale);
  CHECK(std::string(gender_name(Gender::kFemale)) == "female");
  CHECK_THROWS_AS(decode_age_gender(std::span<const float>(male, 2), male), Error);
}

TEST_CASE("face_distance is the Euclidean distance", "[facenets]") {
  const float a[3] = {1.0f, 2.0f, 3.0f};
  const float b[3] = {4.0f, 6.0f, 3.0f};
  CHECK(face_distance(a, b) == Approx(5.0f));
  CHECK(face_distance(a, a) == 0.0f);
  CHECK_THROWS_AS(face_distance(std::span<const float>(a, 2), b), Error);
}
