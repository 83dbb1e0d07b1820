// Tests of the TensorFlow.js weights loader: hand-written manifests and shards in a temporary
// folder (expected values computed by hand from the tfjs format), the real face-api manifests,
// every error path, and the TF -> OIHW layout helpers.
#include <catch2/catch.hpp>

#include <nexus/core/error.hpp>
#include <nexus/model/weights.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "skip.hpp"

namespace fs = std::filesystem;
using nexus::DType;
using nexus::Shape;
using nexus::Tensor;
using nexus::model::load_tfjs_weights;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("nexus_weights_test_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                           static_cast<std::streamsize>(b.size()));
}

template <typename T>
void append(std::vector<std::uint8_t>& b, T v) {
  std::uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  b.insert(b.end(), raw, raw + sizeof(T));
}

// A group with float32 [2,2], uint8-quantized float [3], int32 scalar quantized, uint16 [2],
// float16 [2], split over two shards at an odd byte boundary.
struct Fixture {
  fs::path dir, manifest;
  std::vector<std::uint8_t> all;
};

Fixture make_fixture(const std::string& name) {
  Fixture f;
  f.dir = temp_dir(name);
  f.manifest = f.dir / "m-weights_manifest.json";
  write_text(f.manifest, R"([{"paths": ["m-shard1", "m-shard2"], "weights": [
    {"name": "a", "shape": [2, 2], "dtype": "float32"},
    {"name": "q", "shape": [3], "dtype": "float32",
     "quantization": {"scale": 0.5, "min": -1.0, "dtype": "uint8"}},
    {"name": "k", "shape": [], "dtype": "int32",
     "quantization": {"scale": 1, "min": 5118, "dtype": "uint8"}},
    {"name": "w", "shape": [2], "dtype": "float32",
     "quantization": {"scale": 0.25, "min": 2.0, "dtype": "uint16"}},
    {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
    {"name": "i", "shape": [2], "dtype": "int32"}
  ]}])");
  for (float v : {1.0f, -2.0f, 3.5f, 0.25f}) append(f.all, v);
  for (std::uint8_t q : {0, 1, 10}) append(f.all, q);  // -> -1, -0.5, 4
  append(f.all, std::uint8_t{0});                       // -> 5118
  for (std::uint16_t q : {4, 1000}) append(f.all, q);   // -> 3, 252
  for (std::uint16_t h : {0x3c00, 0xc100}) append(f.all, h);  // 1.0, -2.5
  for (std::int32_t v : {7, -9}) append(f.all, v);
  std::vector<std::uint8_t> s1(f.all.begin(), f.all.begin() + 13), s2(f.all.begin() + 13, f.all.end());
  write_bytes(f.dir / "m-shard1", s1);
  write_bytes(f.dir / "m-shard2", s2);
  return f;
}

}  // namespace

TEST_CASE("tfjs loader decodes float32, uint8/uint16/float16 quantized and int32", "[weights]") {
  Fixture f = make_fixture("ok");
  auto w = load_tfjs_weights(f.manifest);
  REQUIRE(w.size() == 6);
  const Tensor& a = nexus::model::get(w, "a", Shape{2, 2});
  CHECK(a.dtype() == DType::kFloat32);
  CHECK(std::vector<float>(a.values().begin(), a.values().end()) ==
        std::vector<float>{1.0f, -2.0f, 3.5f, 0.25f});
  const Tensor& q = nexus::model::get(w, "q", Shape{3});
  CHECK(std::vector<float>(q.values().begin(), q.values().end()) ==
        std::vector<float>{-1.0f, -0.5f, 4.0f});
  const Tensor& k = w.at("k");
  CHECK(k.dtype() == DType::kInt32);
  CHECK(k.shape() == Shape{});
  CHECK(k.data<std::int32_t>()[0] == 5118);
  const Tensor& u = w.at("w");
  CHECK(u.values()[0] == 3.0f);
  CHECK(u.values()[1] == 252.0f);
  const Tensor& h = w.at("h");
  CHECK(h.values()[0] == 1.0f);
  CHECK(h.values()[1] == -2.5f);
  CHECK(w.at("i").data<std::int32_t>()[1] == -9);
}

TEST_CASE("get() names the tensor and both shapes", "[weights]") {
  Fixture f = make_fixture("get");
  auto w = load_tfjs_weights(f.manifest);
  CHECK_THROWS_WITH(nexus::model::get(w, "a", Shape{4}),
                    Catch::Contains("'a'") && Catch::Contains("[2, 2]") && Catch::Contains("[4]"));
  CHECK_THROWS_WITH(nexus::model::get(w, "nope", Shape{4}), Catch::Contains("'nope' not found"));
}

TEST_CASE("truncated shard is an error naming the file and tensor", "[weights]") {
  Fixture f = make_fixture("trunc");
  std::vector<std::uint8_t> s2(f.all.begin() + 13, f.all.end() - 3);
  write_bytes(f.dir / "m-shard2", s2);
  CHECK_THROWS_AS(load_tfjs_weights(f.manifest), nexus::Error);
  CHECK_THROWS_WITH(load_tfjs_weights(f.manifest),
                    Catch::Contains("truncated") && Catch::Contains("m-shard2") &&
                        Catch::Contains("'i'"));
}

TEST_CASE("manifest naming a missing shard is an error", "[weights]") {
  Fixture f = make_fixture("missing");
  fs::remove(f.dir / "m-shard2");
  CHECK_THROWS_WITH(load_tfjs_weights(f.manifest),
                    Catch::Contains("m-shard2") && Catch::Contains("missing"));
  CHECK_THROWS_WITH(load_tfjs_weights(f.dir / "nothere.json"), Catch::Contains("nothere.json"));
}

TEST_CASE("sizes from a manifest are bounded: 100 GB or an overflowing shape is an error, not an allocation",
          "[weights]") {
  // Regressions (fuzz/): shape products overflowed int64 (UB) and wrapped the truncation check.
  fs::path d = temp_dir("huge");
  write_bytes(d / "s.bin", std::vector<std::uint8_t>(16, 0));
  write_text(d / "m.json", R"([{"paths": ["s.bin"], "weights": [
    {"name": "big", "shape": [25000000000], "dtype": "float32"}]}])");  // 100 GB
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("'big'") && Catch::Contains("claims more than"));
  write_text(d / "m.json", R"([{"paths": ["s.bin"], "weights": [
    {"name": "wrap", "shape": [4294967296, 4294967296, 4], "dtype": "float32"}]}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("'wrap'") && Catch::Contains("claims more than"));
  // A shard path naming a directory (or a device such as /dev/zero) is refused before reading.
  fs::create_directories(d / "dir.bin");
  write_text(d / "m.json", R"([{"paths": ["dir.bin"], "weights": []}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("dir.bin") && Catch::Contains("not a regular file"));
  write_text(d / "m.json", R"([{"paths": ["/dev/zero"], "weights": []}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"), Catch::Contains("not a regular file"));
}

TEST_CASE("a non-string dtype is an error naming the weight, not a JSON type_error", "[weights]") {
  // Regression (fuzz_tfjs_weights): w.value("dtype", "") threw nlohmann's type_error.
  fs::path d = temp_dir("dtype_object");
  write_bytes(d / "s.bin", std::vector<std::uint8_t>(16, 0));
  write_text(d / "m.json", R"([{"paths": ["s.bin"], "weights": [
    {"name": "a", "shape": [2, 2], "dtype": {"scale": 1.25, "dtype": "uint16"}}]}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("'a'") && Catch::Contains("non-string 'dtype'"));
  write_text(d / "m.json", R"([{"paths": ["s.bin"], "weights": [
    {"name": "b", "shape": [4], "dtype": "float32", "quantization": {"dtype": 8}}]}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("'b'") && Catch::Contains("non-string 'dtype'"));
}

TEST_CASE("shards larger than the shapes need is an error", "[weights]") {
  Fixture f = make_fixture("size");
  std::vector<std::uint8_t> s2(f.all.begin() + 13, f.all.end());
  s2.push_back(0);
  s2.push_back(0);
  write_bytes(f.dir / "m-shard2", s2);
  CHECK_THROWS_WITH(load_tfjs_weights(f.manifest),
                    Catch::Contains("does not match") && Catch::Contains("m-shard2"));
}

TEST_CASE("unknown dtype and quantization dtype are errors naming the tensor", "[weights]") {
  fs::path d = temp_dir("dtype");
  write_bytes(d / "b.bin", {0, 0, 0, 0});
  write_text(d / "m.json",
             R"([{"paths": ["b.bin"], "weights": [{"name": "x", "shape": [1], "dtype": "complex64"}]}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("'x'") && Catch::Contains("complex64"));
  write_text(d / "m.json", R"([{"paths": ["b.bin"], "weights": [{"name": "y", "shape": [4],
    "dtype": "float32", "quantization": {"scale": 1, "min": 0, "dtype": "int4"}}]}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("'y'") && Catch::Contains("int4"));
}

TEST_CASE("malformed JSON manifests are errors naming the file", "[weights]") {
  fs::path d = temp_dir("json");
  write_text(d / "m.json", R"([{"paths": ["b.bin"], "weights": [ )");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"),
                    Catch::Contains("m.json") && Catch::Contains("not valid JSON"));
  write_text(d / "m.json", R"({"paths": []})");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"), Catch::Contains("array of groups"));
  write_text(d / "m.json", R"([{"paths": ["b.bin"]}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"), Catch::Contains("'weights'"));
  write_text(d / "m.json", R"([{"paths": [], "weights": [{"name": "z", "shape": [-1], "dtype": "float32"}]}])");
  CHECK_THROWS_WITH(load_tfjs_weights(d / "m.json"), Catch::Contains("'z'"));
}

TEST_CASE("real face-api SSD manifest loads with its known constants", "[weights][data]") {
  const fs::path m = fs::path(NEXUS_SOURCE_DIR) / "data/face-api/model/ssd_mobilenetv1_model-weights_manifest.json";
  if (!fs::exists(m)) {
    NEXUS_SKIP_NO_DATA("face-api models not fetched (run scripts/fetch_data.sh)");
  }
  auto w = load_tfjs_weights(m);
  CHECK(w.size() == 151);
  // int32 constants of the TF graph, stored uint8-quantized with min = the value.
  CHECK(w.at("Postprocessor/stack/1").data<std::int32_t>()[0] == 5118);
  CHECK(w.at("Prediction/BoxPredictor_5/stack_1/1").data<std::int32_t>()[0] == 6);
  CHECK(nexus::model::get(w, "MobilenetV1/Conv2d_0_pointwise/weights", Shape{3, 3, 3, 32}).dtype() ==
        DType::kFloat32);
  // Output/extra_dim holds the 5118 anchors (y, x, h, w) in [0, 1] -ish, unquantized float32.
  const Tensor& anchors = nexus::model::get(w, "Output/extra_dim", Shape{1, 5118, 4});
  float mx = 0;
  for (float v : anchors.values()) mx = std::max(mx, std::abs(v));
  CHECK(mx > 0.5f);
  CHECK(mx < 2.0f);
}

TEST_CASE("TF kernel layouts convert to OIHW", "[weights]") {
  // HWIO [1, 2, 2, 3]: value = 1000*h + 100*w + 10*i + o
  Tensor hwio(Shape{1, 2, 2, 3});
  for (int w = 0; w < 2; ++w)
    for (int i = 0; i < 2; ++i)
      for (int o = 0; o < 3; ++o)
        hwio.data<float>()[(w * 2 + i) * 3 + o] = static_cast<float>(100 * w + 10 * i + o);
  Tensor oihw = nexus::model::hwio_to_oihw(hwio);
  REQUIRE(oihw.shape() == Shape{3, 2, 1, 2});
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 2; ++i)
      for (int w = 0; w < 2; ++w)
        CHECK(oihw.data<float>()[(o * 2 + i) * 2 + w] == static_cast<float>(100 * w + 10 * i + o));

  // depthwise [2, 1, 2, 2] (kh=2, kw=1, in=2, mult=2): out channel c = i*2 + m
  Tensor dw(Shape{2, 1, 2, 2});
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 2; ++i)
      for (int m = 0; m < 2; ++m)
        dw.data<float>()[(h * 2 + i) * 2 + m] = static_cast<float>(100 * h + 10 * i + m);
  Tensor d = nexus::model::depthwise_to_oihw(dw);
  REQUIRE(d.shape() == Shape{4, 1, 2, 1});
  CHECK(d.data<float>()[0] == 0.0f);     // c0 = (i0, m0), h0
  CHECK(d.data<float>()[1] == 100.0f);   // c0, h1
  CHECK(d.data<float>()[2] == 1.0f);     // c1 = (i0, m1), h0
  CHECK(d.data<float>()[4] == 10.0f);    // c2 = (i1, m0), h0
  CHECK(d.data<float>()[7] == 111.0f);   // c3 = (i1, m1), h1

  Tensor dense = Tensor::from(Shape{2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  Tensor t = nexus::model::dense_to_out_in(dense);
  REQUIRE(t.shape() == Shape{3, 2});
  CHECK(std::vector<float>(t.values().begin(), t.values().end()) ==
        std::vector<float>{1, 4, 2, 5, 3, 6});
  CHECK_THROWS_AS(nexus::model::hwio_to_oihw(dense), nexus::Error);
}
