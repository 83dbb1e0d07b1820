// BatchProfile and ModelStore: interpolation over sparse batch lists, the planning latency
// model, JSON round trip and every malformed-input error.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "nexus/core/error.hpp"
#include "nexus/profile/batch_profile.hpp"
#include "nexus/profile/model_store.hpp"

using namespace nexus;
using namespace std::chrono_literals;

namespace {

std::string fixtures(const std::string& sub) {
  return std::string(NEXUS_SOURCE_DIR) + "/tests/fixtures/profiles/" + sub;
}

nlohmann::json lecture_a() {
  return nlohmann::json::parse(R"({"model": "A", "device": "lecture", "batch": [4, 8, 16],
    "latency_us": [50000, 75000, 100000], "latency_std_us": [1000, 2000, 4000],
    "memory_bytes": [100, 200, 400], "preprocess_us": 300, "postprocess_us": 50})");
}

std::string error_of(const nlohmann::json& j) {
  try {
    BatchProfile::from_json(j, "p.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("measured batches are returned as measured", "[profile]") {
  const auto p = BatchProfile::from_json(lecture_a());
  CHECK(p.model() == "A");
  CHECK(p.device() == "lecture");
  CHECK(p.max_batch() == 16);
  CHECK(p.latency(8) == 75000us);
  CHECK(p.latency(16) == 100000us);
  CHECK(p.memory(4) == 100);
  CHECK(p.preprocess() == 300us);
  CHECK(p.postprocess() == 50us);
  CHECK(p.throughput(16) == Approx(160.0));  // the paper's 160 req/s for A at b = 16
}

TEST_CASE("sparse batch lists interpolate linearly; below the first measurement it is used",
          "[profile]") {
  const auto p = BatchProfile::from_json(lecture_a());
  CHECK(p.latency(6) == 62500us);   // halfway between 50 and 75 ms
  CHECK(p.latency(12) == 87500us);
  CHECK(p.latency(10) == 81250us);
  CHECK(p.memory(6) == 150);
  CHECK(p.latency(1) == 50000us);   // b < 4: ℓ(4), an over-estimate
  CHECK(p.latency(3) == 50000us);
  CHECK_THROWS_WITH(p.latency(17), Catch::Contains("batch 17 outside 1..16"));
  CHECK_THROWS_AS(p.latency(0), Error);
}

TEST_CASE("planning latency = (mean + k·std) × factor, rounded up", "[profile]") {
  auto p = BatchProfile::from_json(lecture_a());
  CHECK(p.latency(8, {0.0, 1.0}) == 75000us);
  CHECK(p.latency(8, {1.0, 1.0}) == 77000us);
  CHECK(p.latency(8, {1.0, 1.15}) == 88550us);   // (75 + 2) × 1.15 ms
  CHECK(p.latency(8, {2.0, 1.0}) == 79000us);
  CHECK(p.mean_latency(8) == 75000us);
  p.set_latency_model({1.0, 1.15});
  CHECK(p.latency(8) == 88550us);
  CHECK(p.preprocess() == 345us);   // pre/post: mean × factor
  // std interpolates too: b = 12 → std 3000, mean 87500.
  CHECK(p.latency(12, {1.0, 1.0}) == 90500us);
}

TEST_CASE("built from vectors in code; JSON round trip", "[profile]") {
  BatchProfile p("m", "cpu", {1, 2, 4}, {1000, 1500, 2600}, {}, {10, 20, 40}, 5.5, 1.5);
  CHECK(p.latency(3) == 2050us);
  CHECK(p.latency_std(2) == 0us);
  const auto q = BatchProfile::from_json(p.to_json());
  CHECK(q.to_json() == p.to_json());
  const auto dir = std::filesystem::temp_directory_path() / "nexus_profile_test";
  std::filesystem::create_directories(dir);
  p.save(dir / "m.json");
  CHECK(BatchProfile::load(dir / "m.json").to_json() == p.to_json());
  std::filesystem::remove_all(dir);
}

TEST_CASE("malformed profiles: the error names the file and the field", "[profile][errors]") {
  auto j = lecture_a();
  j.erase("latency_us");
  CHECK_THAT(error_of(j), Catch::Contains("p.json") && Catch::Contains("latency_us"));
  j = lecture_a();
  j["latency_us"] = {50000, 75000};
  CHECK_THAT(error_of(j), Catch::Contains("3 batch sizes but 2 latencies"));
  j = lecture_a();
  j["batch"] = {4, 4, 16};
  CHECK_THAT(error_of(j), Catch::Contains("must increase"));
  j = lecture_a();
  j["batch"] = {0, 4, 16};
  CHECK_THAT(error_of(j), Catch::Contains("batch size 0") && Catch::Contains("1..65536"));
  // Regressions (fuzz_batch_profile): numbers out of range were converted with undefined
  // behaviour (memory 2.5e203 to size_t, 1e300 to int) or made the engine loop over 2^31 batches.
  j = lecture_a();
  j["memory_bytes"] = {1e9, 2.5e203, 3e9};
  CHECK_THAT(error_of(j), Catch::Contains("memory_bytes") && Catch::Contains("2.5e+203"));
  j = lecture_a();
  j["batch"] = {4, 8, 1e300};
  CHECK_THAT(error_of(j), Catch::Contains("batch size") && Catch::Contains("1..65536"));
  j = lecture_a();
  j["batch"] = {4, 8, 2147483647};
  CHECK_THAT(error_of(j), Catch::Contains("2147483647"));
  j = lecture_a();
  j["latency_us"] = {50000, 75000, 1e200};
  CHECK_THAT(error_of(j), Catch::Contains("latency at batch 16"));
  j = lecture_a();
  j["preprocess_us"] = 1e300;
  CHECK_THAT(error_of(j), Catch::Contains("pre/post-processing"));
  j = lecture_a();
  j["latency_us"] = {50000, -1, 100000};
  CHECK_THAT(error_of(j), Catch::Contains("latency at batch 8"));
  j = lecture_a();
  j["latency_us"] = "fast";
  CHECK_THAT(error_of(j), Catch::Contains("malformed"));
  j = lecture_a();
  j["batch"] = nlohmann::json::array();
  CHECK_THAT(error_of(j), Catch::Contains("no batch sizes"));
  CHECK_THAT(error_of(nlohmann::json::array()), Catch::Contains("JSON object"));
  CHECK_THROWS_WITH(BatchProfile::load("/nonexistent/x.json"), Catch::Contains("/nonexistent/x.json"));
}

TEST_CASE("ModelStore loads a directory and reports missing models", "[profile]") {
  ModelStore store(fixtures("titanx"));
  CHECK(store.has("vgg16"));
  CHECK(store.has("yolo9000", "TITAN_X_(Pascal)"));
  CHECK_FALSE(store.has("resnet50"));
  CHECK(store.devices() == std::vector<std::string>{"TITAN_X_(Pascal)"});
  CHECK_THROWS_WITH(store.profile("resnet50"), Catch::Contains("resnet50"));
  CHECK_THROWS_WITH(store.profile("vgg16", "K80"),
                    Catch::Contains("K80") && Catch::Contains("TITAN_X_(Pascal)"));
  const auto map = store.profiles_for("", {1.0, 1.15});
  CHECK(map.size() == 4);
  // vgg16 b = 1: (6277.4 + 22.3517) × 1.15 = 7244.7 → 7245 µs.
  CHECK(map.at("vgg16").latency(1) == 7245us);
  CHECK(store.profile("vgg16").latency(1) == 6278us);
  CHECK_THROWS_WITH(ModelStore("/nonexistent-dir"), Catch::Contains("not a directory"));
}

TEST_CASE("TITAN X profiles: not linear, throughput not monotone (notes §8)", "[profile]") {
  ModelStore store(fixtures("titanx"));
  const auto& vgg16 = store.profile("vgg16");
  const auto& vgg_s = store.profile("vgg_s");
  CHECK(vgg16.latency(2) > 2 * vgg16.latency(1));      // b = 2 slower than twice b = 1
  CHECK(vgg16.latency(5) < vgg16.latency(4));          // measured noise: ℓ not monotone
  CHECK(vgg_s.throughput(32) > vgg_s.throughput(64));  // vgg_s peaks near 32, then falls
  CHECK(vgg_s.throughput(32) == Approx(32 / 28150.2e-6).epsilon(1e-4));
  CHECK(store.profile("yolo9000").postprocess() == std::chrono::microseconds(47496));
}

TEST_CASE("a malformed file in the store names the file", "[profile][errors]") {
  const auto dir = std::filesystem::temp_directory_path() / "nexus_store_bad";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "bad.json") << "{ not json";
  CHECK_THROWS_WITH(ModelStore(dir), Catch::Contains("bad.json"));
  std::ofstream(dir / "bad.json") << R"({"model": "x", "latency_us": [1], "batch": [1, 2]})";
  CHECK_THROWS_WITH(ModelStore(dir), Catch::Contains("bad.json") && Catch::Contains("latencies"));
  std::filesystem::remove_all(dir);
}
