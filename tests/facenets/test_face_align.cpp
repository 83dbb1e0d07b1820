// Face alignment / crop / net-input pre-processing and landmark decoding: hand-computed cases
// from face-api's formulas, and face-api's own toBatchTensor output on small LCG images
// (values printed by face-api 1.7.15 / tfjs-backend-cpu 4.22: NetInput.toBatchTensor(size, true)).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/face_align.hpp"
#include "nexus/model/zoo/face_landmarks.hpp"

using namespace nexus;
using namespace nexus::model::zoo;

namespace {

// [h, w, 3] LCG bytes as in tests/reference/make_reference.js (pixel i = state >> 24 after
// i + 1 steps of s = s * 1664525 + 1013904223).
Image lcg_image(int w, int h, std::uint32_t seed) {
  Image img(w, h);
  std::uint32_t s = seed;
  for (auto& v : img.rgb) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<std::uint8_t>(s >> 24);
  }
  return img;
}

// CHW tensor vs face-api's HWC values.
void check_hwc(const Tensor& chw, int size, const std::vector<float>& hwc) {
  REQUIRE(chw.shape() == (Shape{3, size, size}));
  REQUIRE(hwc.size() == static_cast<std::size_t>(3 * size * size));
  const float* p = chw.data();
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c) {
        INFO("y " << y << " x " << x << " c " << c);
        CHECK(p[(c * size + y) * size + x] ==
              Approx(hwc[static_cast<std::size_t>((y * size + x) * 3 + c)]).margin(1e-3));
      }
}

}  // namespace

TEST_CASE("face_net_input pads to a centred square and resizes as face-api", "[facenets]") {
  // 7 wide x 4 high -> 3 rows of padding: round(1.5) = 2 after, 1 before; resized 7 -> 5.
  const std::vector<float> wide = {
      0,      0,      0,      0,      0,      0,      0,      0,      0,      0,     0,
      0,      0,      0,      0,      85.8,   149,    170,    198.68, 34.24, 112.28, 188.72,
      132.2,  85.88,  142.36, 173.08, 98.92,  152.36, 185.76, 88.88,  129.4, 150.2,  101.4,
      95.88,  202.04, 131.16, 72.92,  87.32,  179.52, 145.4,  128.84, 34.24, 151,    137.28,
      32.8,   111.2,  151.2,  180.8,  113.44, 90.88,  117.6,  162.56, 177.28, 72.8, 183.52,
      63.2,   53.28,  84,     94.56,  118.24, 0,      0,      0,      0,      0,     0,
      0,      0,      0,      0,      0,      0,      0,      0,      0};
  check_hwc(face_net_input(lcg_image(7, 4, 7), 5), 5, wide);

  // 4 wide x 9 high -> 5 columns: round(2.5) = 3 after, 2 before; resized 9 -> 6.
  const std::vector<float> tall = {
      0,     0,    0,     30.5,  0.5,  38,    246,   183,   154,   106,   178.5, 101,
      0,     0,    0,     0,     0,    0,     0,     0,     0,     88,    82.75, 103,
      126.5, 238,  64,    69.25, 123.5, 60.75, 0,    0,     0,     0,     0,     0,
      0,     0,    0,     59,    95.5, 21,    188,   21,    51,    29,    68.5,  163.5,
      0,     0,    0,     0,     0,    0,     0,     0,     0,     64.75, 42.5,  52.25,
      93.5,  47,   158.5, 126,   140.25, 140,  0,     0,     0,     0,     0,     0,
      0,     0,    0,     17.5,  79.5, 75,    115,   172,   33,    139,   122.5, 182,
      0,     0,    0,     0,     0,    0,     0,     0,     0,     45.75, 64,    40.75,
      102.5, 64,   116,   203.75, 128.5, 207.5, 0,    0,     0,     0,     0,     0};
  check_hwc(face_net_input(lcg_image(4, 9, 8), 6), 6, tall);
}

TEST_CASE("face_net_input: square input of the net size is passed through", "[facenets]") {
  const Image img = lcg_image(6, 6, 3);
  const Tensor t = face_net_input(img, 6);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x)
      for (int c = 0; c < 3; ++c)
        CHECK(t.data()[(c * 6 + y) * 6 + x] == static_cast<float>(img.at(x, y, c)));
  CHECK_THROWS_AS(face_net_input(Image(), 6), Error);
  CHECK_THROWS_AS(face_net_input(img, 0), Error);
  std::vector<float> small(10);
  CHECK_THROWS_AS(face_net_input_into(img, 6, small), Error);
}

TEST_CASE("clip_at_image_borders clips then floors", "[facenets]") {
  // right = 16.5 -> min(16.5 - 0, 15 - 0) = 15; bottom = 13.3 -> min(10.6, 12 - 2.7 = 9.3).
  const FaceRect r = clip_at_image_borders({-3.5, 2.7, 20.0, 10.6}, 15, 12);
  CHECK(r.x == 0.0);
  CHECK(r.y == 2.0);
  CHECK(r.width == 15.0);
  CHECK(r.height == 9.0);
  const FaceRect inside = clip_at_image_borders({1.9, 1.2, 3.7, 4.99}, 100, 100);
  CHECK(inside.x == 1.0);
  CHECK(inside.y == 1.0);
  CHECK(inside.width == 3.0);  // width floored on its own, not right - floor(x)
  CHECK(inside.height == 4.0);
}

TEST_CASE("extract_face copies the clipped box", "[facenets]") {
  const Image img = lcg_image(10, 8, 9);
  const Image face = extract_face(img, {2.6, 3.2, 4.9, 10.0});  // -> x 2, y 3, w 4, h 4 (clip)
  REQUIRE(face.width == 4);
  REQUIRE(face.height == 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) CHECK(face.at(x, y, c) == img.at(2 + x, 3 + y, c));
  CHECK_THROWS_WITH(extract_face(img, {20.0, 1.0, 5.0, 5.0}), Catch::Contains("outside"));
}

TEST_CASE("align_min_bbox grows the landmark bounding box by 20%", "[facenets]") {
  const std::vector<FacePoint> pts = {{10, 20}, {30, 60}, {20, 40}};
  const FaceRect r = align_min_bbox(pts);
  CHECK(r.x == Approx(8.0));  // 10 - 0.2 * 20 / 2
  CHECK(r.y == Approx(16.0));
  CHECK(r.width == Approx(24.0));
  CHECK(r.height == Approx(48.0));
  CHECK_THROWS_AS(align_min_bbox(std::vector<FacePoint>{}), Error);
}

TEST_CASE("align_dlib places the eye/mouth centre at (0.5, 0.43) of a square", "[facenets]") {
  FaceLandmarks68 pts{};
  for (int i = 0; i < 68; ++i) pts[static_cast<std::size_t>(i)] = {1000.0 + i, 1000.0 - i};
  for (int i = 36; i < 42; ++i) pts[static_cast<std::size_t>(i)] = {40.0 + (i % 2 ? 1 : -1), 50};
  for (int i = 42; i < 48; ++i) pts[static_cast<std::size_t>(i)] = {60, 50.0 + (i % 2 ? 2 : -2)};
  for (int i = 48; i < 68; ++i) pts[static_cast<std::size_t>(i)] = {50, 80};
  // Eye centres (40, 50), (60, 50); mouth (50, 80): distance sqrt(10^2 + 30^2) = 31.62;
  // size = floor(31.62 / 0.45) = 70; centre (50, 60); x = floor(50 - 35) = 15,
  // y = floor(60 - 30.1) = 29.
  FaceRect r = align_dlib(pts, 100, 100);
  CHECK(r.x == 15.0);
  CHECK(r.y == 29.0);
  CHECK(r.width == 70.0);
  CHECK(r.height == 70.0);
  r = align_dlib(pts, 50, 30);  // width = min(70, 50 + 15), height = min(70, 30 + 29)
  CHECK(r.width == 65.0);
  CHECK(r.height == 59.0);
  CHECK_THROWS_AS(align_dlib(std::span<const FacePoint>(pts.data(), 10), 100, 100), Error);
}

TEST_CASE("decode_face_landmarks undoes the square padding and scale", "[facenets]") {
  // Crop 200 x 100: scale 0.56, 112 x 56 inside the input, 28 rows of padding on top.
  std::vector<float> raw(136, 0.5f);
  raw[2] = 0.25f;  // point 1
  raw[3] = 0.25f;
  FaceLandmarks68 p = decode_face_landmarks(raw, 200, 100);
  CHECK(p[0].x == Approx(100.0));
  CHECK(p[0].y == Approx(50.0));
  CHECK(p[1].x == Approx(50.0));
  CHECK(p[1].y == Approx(0.0).margin(1e-9));
  p = decode_face_landmarks(raw, 100, 200, {10.5, -3.0});  // tall: padding on the left
  CHECK(p[0].x == Approx(60.5));
  CHECK(p[0].y == Approx(97.0));
  CHECK(p[1].x == Approx(10.5));
  CHECK(p[1].y == Approx(47.0));
  CHECK_THROWS_AS(decode_face_landmarks(std::vector<float>(135), 10, 10), Error);
  CHECK_THROWS_AS(decode_face_landmarks(raw, 0, 10), Error);
}

TEST_CASE("align_face chains crop size, shift and both alignments", "[facenets]") {
  std::vector<float> raw(136);
  for (int i = 0; i < 68; ++i) {
    raw[static_cast<std::size_t>(2 * i)] = 0.2f + 0.6f * static_cast<float>(i % 17) / 16.0f;
    raw[static_cast<std::size_t>(2 * i + 1)] = 0.1f + 0.8f * static_cast<float>(i) / 67.0f;
  }
  const FaceRect det{-5.25, 40.5, 60.0, 80.0};  // crop clipped to x 0, w 54.75 -> 54
  const AlignedFace f = align_face(raw, det, 640, 480);
  const FaceLandmarks68 want = decode_face_landmarks(raw, 54, 80, {-5.25, 40.5});
  for (int i = 0; i < 68; ++i) {
    CHECK(f.landmarks[static_cast<std::size_t>(i)].x == want[static_cast<std::size_t>(i)].x);
    CHECK(f.landmarks[static_cast<std::size_t>(i)].y == want[static_cast<std::size_t>(i)].y);
  }
  const FaceRect a = align_min_bbox(want);
  CHECK(f.aligned_rect.x == a.x);
  CHECK(f.aligned_rect.width == a.width);
  const FaceRect d = align_dlib(want, 54, 80);
  CHECK(f.descriptor_rect.x == d.x);
  CHECK(f.descriptor_rect.height == d.height);
  CHECK_THROWS_AS(align_face(raw, {700, 0, 10, 10}, 640, 480), Error);
}
