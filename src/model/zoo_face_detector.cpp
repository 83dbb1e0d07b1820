// face-api's SSD-MobileNetV1 face detector: graph construction from the tfjs weights, and the
// pre/post-processing of SsdMobilenetv1.locateFaces, reproduced operation by operation.
#include "nexus/model/zoo/face_detector.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <string>

#include <fmt/format.h>

#include "nexus/core/error.hpp"

namespace nexus::model::zoo {
namespace {

constexpr float kBatchNormEpsilon = 0.0010000000474974513f;  // mobileNetV1.ts
constexpr int kIn = kFaceDetectorInputSize;

// Anchors per cell and feature-map side of each box predictor (for a 512 input).
constexpr std::array<int, kFaceDetectorPredictors> kAnchorsPerCell = {3, 6, 6, 6, 6, 6};
constexpr std::array<int, kFaceDetectorPredictors> kMapSide = {32, 16, 8, 4, 2, 1};

struct Builder {
  const WeightMap& w;
  GraphBuilder g{"ssd_mobilenetv1"};

  Tensor kernel(const std::string& name, std::int64_t kh, std::int64_t ci, std::int64_t co) {
    return hwio_to_oihw(get(w, name, Shape{kh, kh, ci, co}));
  }

  // pointwiseConvLayer: conv 'same' + batch_norm_offset, clipped to [0, 6].
  NodeId pointwise(const std::string& prefix, int idx, NodeId x, int kh, std::int64_t ci,
                   std::int64_t co, int stride) {
    const std::string p = fmt::format("{}/Conv2d_{}_pointwise", prefix, idx);
    Conv2DAttrs a;
    a.kernel_h = a.kernel_w = kh;
    a.stride_h = a.stride_w = stride;
    a.padding = Padding::kSame;
    NodeId y = g.conv2d(p, x, kernel(p + "/weights", kh, ci, co),
                        get(w, p + "/convolution_bn_offset", Shape{co}), a);
    return g.relu6(p + "/relu6", y);
  }

  // depthwiseConvLayer: depthwise 3x3 'same' + BatchNorm, clipped to [0, 6].
  NodeId depthwise(int idx, NodeId x, std::int64_t c, int stride) {
    const std::string p = fmt::format("MobilenetV1/Conv2d_{}_depthwise", idx);
    Conv2DAttrs a;
    a.kernel_h = a.kernel_w = 3;
    a.stride_h = a.stride_w = stride;
    a.groups = static_cast<int>(c);
    a.padding = Padding::kSame;
    NodeId y = g.conv2d(p, x, depthwise_to_oihw(get(w, p + "/depthwise_weights", Shape{3, 3, c, 1})),
                        std::nullopt, a);
    y = g.batch_norm(p + "/BatchNorm", y, get(w, p + "/BatchNorm/moving_mean", Shape{c}),
                     get(w, p + "/BatchNorm/moving_variance", Shape{c}),
                     get(w, p + "/BatchNorm/gamma", Shape{c}),
                     get(w, p + "/BatchNorm/beta", Shape{c}), kBatchNormEpsilon);
    return g.relu6(p + "/relu6", y);
  }

  // convLayer of boxPredictionLayer: 1x1 conv + bias, no activation.
  NodeId predictor_conv(const std::string& p, NodeId x, std::int64_t ci, std::int64_t co) {
    Conv2DAttrs a;
    a.padding = Padding::kSame;
    return g.conv2d(p, x, kernel(p + "/weights", 1, ci, co), get(w, p + "/biases", Shape{co}), a);
  }
};

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

FaceDetector FaceDetector::from_weights(const WeightMap& weights) {
  Builder b{weights};
  NodeId x = b.g.input("image", Shape{3, kIn, kIn});

  // MobileNetV1 (alpha 1): conv_0 3x3/2 to 32, then 13 depthwise-separable pairs.
  x = b.pointwise("MobilenetV1", 0, x, 3, 3, 32, 2);
  constexpr std::array<std::int64_t, 14> kChannels = {32,  64,  128, 128, 256, 256, 512,
                                                      512, 512, 512, 512, 512, 1024, 1024};
  NodeId conv11 = -1;
  for (int i = 1; i <= 13; ++i) {
    const int stride = (i == 2 || i == 4 || i == 6 || i == 12) ? 2 : 1;
    x = b.depthwise(i, x, kChannels[i - 1], stride);
    x = b.pointwise("MobilenetV1", i, x, 1, kChannels[i - 1], kChannels[i], 1);
    if (i == 11) conv11 = x;
  }

  // predictionLayer: extra feature maps 8x8, 4x4, 2x2, 1x1.
  NodeId c0 = b.pointwise("Prediction", 0, x, 1, 1024, 256, 1);
  NodeId c1 = b.pointwise("Prediction", 1, c0, 3, 256, 512, 2);
  NodeId c2 = b.pointwise("Prediction", 2, c1, 1, 512, 128, 1);
  NodeId c3 = b.pointwise("Prediction", 3, c2, 3, 128, 256, 2);
  NodeId c4 = b.pointwise("Prediction", 4, c3, 1, 256, 128, 1);
  NodeId c5 = b.pointwise("Prediction", 5, c4, 3, 128, 256, 2);
  NodeId c6 = b.pointwise("Prediction", 6, c5, 1, 256, 64, 1);
  NodeId c7 = b.pointwise("Prediction", 7, c6, 3, 64, 128, 2);

  const std::array<NodeId, kFaceDetectorPredictors> sources = {conv11, x, c1, c3, c5, c7};
  const std::array<std::int64_t, kFaceDetectorPredictors> channels = {512, 1024, 512, 256, 256, 128};
  for (int p = 0; p < kFaceDetectorPredictors; ++p) {
    const std::string pre = fmt::format("Prediction/BoxPredictor_{}", p);
    const std::int64_t a = kAnchorsPerCell[p];
    NodeId box = b.predictor_conv(pre + "/BoxEncodingPredictor", sources[p], channels[p], a * 4);
    NodeId cls = b.predictor_conv(pre + "/ClassPredictor", sources[p], channels[p], a * 3);
    NEXUS_CHECK(b.g.shape(box) == (Shape{a * 4, kMapSide[p], kMapSide[p]}),
                "ssd_mobilenetv1: box predictor {} has shape {}", p, b.g.shape(box));
    b.g.output(box);
    b.g.output(cls);
  }

  FaceDetector d;
  d.graph_ = std::move(b.g).build();
  const Tensor& anchors = get(weights, "Output/extra_dim", Shape{1, kFaceDetectorAnchors, 4});
  d.anchors_.assign(anchors.values().begin(), anchors.values().end());
  return d;
}

FaceDetector FaceDetector::load(const std::filesystem::path& model_dir) {
  return from_weights(
      load_tfjs_weights(model_dir / "ssd_mobilenetv1_model-weights_manifest.json"));
}

void FaceDetector::preprocess_into(const Image& image, std::span<float> out) const {
  NEXUS_CHECK(!image.empty() && image.rgb.size() == static_cast<std::size_t>(image.width) *
                                                          static_cast<std::size_t>(image.height) * 3,
              "FaceDetector::preprocess: image {} x {} with {} bytes (expected a non-empty RGB "
              "image)",
              image.width, image.height, image.rgb.size());
  NEXUS_CHECK(out.size() == static_cast<std::size_t>(3 * kIn * kIn),
              "FaceDetector::preprocess: output holds {} floats, expected 3 x {} x {}", out.size(),
              kIn, kIn);
  // padToSquare(isCenterImage = false): zeros appended after the image on the short axis.
  const int side = std::max(image.width, image.height);
  const double ratio = static_cast<double>(side) / kIn;  // effectiveInputSize / outputSize
  const std::size_t plane = static_cast<std::size_t>(kIn) * kIn;
  auto src = [&](int x, int y, int d) -> double {
    return (x < image.width && y < image.height) ? image.at(x, y, d) : 0.0;
  };
  // Precomputed column taps: floor/ceil indices and fractions as tfjs computes them.
  std::vector<int> c0(kIn), c1(kIn);
  std::vector<double> cf(kIn);
  for (int c = 0; c < kIn; ++c) {
    const double f = ratio * c;
    c0[static_cast<std::size_t>(c)] = std::max(0, static_cast<int>(std::floor(f)));
    c1[static_cast<std::size_t>(c)] = std::min(side - 1, static_cast<int>(std::ceil(f)));
    cf[static_cast<std::size_t>(c)] = f - c0[static_cast<std::size_t>(c)];
  }
  for (int r = 0; r < kIn; ++r) {
    const double fr = ratio * r;
    const int r0 = std::max(0, static_cast<int>(std::floor(fr)));
    const int r1 = std::min(side - 1, static_cast<int>(std::ceil(fr)));
    const double rf = fr - r0;
    for (int c = 0; c < kIn; ++c) {
      const auto ci = static_cast<std::size_t>(c);
      for (int d = 0; d < 3; ++d) {
        const double tl = src(c0[ci], r0, d), tr = src(c1[ci], r0, d);
        const double bl = src(c0[ci], r1, d), br = src(c1[ci], r1, d);
        const double top = tl + (tr - tl) * cf[ci];
        const double bottom = bl + (br - bl) * cf[ci];
        // tfjs stores the resized value as float32, then divides and subtracts in float32.
        const float v = static_cast<float>(top + (bottom - top) * rf);
        out[static_cast<std::size_t>(d) * plane + static_cast<std::size_t>(r) * kIn + ci] =
            v / 127.5f - 1.0f;
      }
    }
  }
}

Tensor FaceDetector::preprocess(const Image& image) const {
  Tensor t(Shape{3, kIn, kIn});
  preprocess_into(image, t.values());
  return t;
}

FaceDetectorRaw FaceDetector::decode(const std::vector<Tensor>& outputs, std::int64_t item) const {
  NEXUS_CHECK(outputs.size() == 2 * kFaceDetectorPredictors,
              "FaceDetector::decode: {} outputs, expected {} (box encodings and class logits of 6 "
              "predictors)",
              outputs.size(), 2 * kFaceDetectorPredictors);
  FaceDetectorRaw raw;
  raw.scores.resize(kFaceDetectorAnchors);
  raw.boxes.resize(4 * kFaceDetectorAnchors);
  int anchor = 0;
  for (int p = 0; p < kFaceDetectorPredictors; ++p) {
    const int a_n = kAnchorsPerCell[static_cast<std::size_t>(p)];
    const int side = kMapSide[static_cast<std::size_t>(p)];
    const Tensor& box = outputs[static_cast<std::size_t>(2 * p)];
    const Tensor& cls = outputs[static_cast<std::size_t>(2 * p + 1)];
    const Shape box_shape{box.shape().rank() > 0 ? box.shape()[0] : 0, a_n * 4, side, side};
    const Shape cls_shape{cls.shape().rank() > 0 ? cls.shape()[0] : 0, a_n * 3, side, side};
    NEXUS_CHECK(box.shape() == box_shape && cls.shape() == cls_shape && item >= 0 &&
                    item < box.shape()[0] && box.dtype() == DType::kFloat32 &&
                    cls.dtype() == DType::kFloat32,
                "FaceDetector::decode: predictor {} outputs {} and {} (item {}), expected float32 "
                "[N, {}, {}, {}] and [N, {}, {}, {}]",
                p, box.shape(), cls.shape(), item, a_n * 4, side, side, a_n * 3, side, side);
    const std::size_t hw = static_cast<std::size_t>(side) * side;
    const float* bp = box.data<float>() + static_cast<std::size_t>(item) * hw * a_n * 4;
    const float* cp = cls.data<float>() + static_cast<std::size_t>(item) * hw * a_n * 3;
    // TF's reshape of the NHWC conv output orders anchors by (y, x, anchor).
    for (std::size_t cell = 0; cell < hw; ++cell) {
      for (int a = 0; a < a_n; ++a, ++anchor) {
        const auto i = static_cast<std::size_t>(anchor);
        auto e = [&](int k) { return bp[static_cast<std::size_t>(a * 4 + k) * hw + cell]; };
        const float* an = anchors_.data() + 4 * i;
        // outputLayer.decodeBoxesLayer, in float32 like tfjs.
        const float size0 = an[2] - an[0], size1 = an[3] - an[1];
        const float center0 = an[0] + size0 / 2.0f, center1 = an[1] + size1 / 2.0f;
        const float half0 = std::exp(e(2) / 5.0f) * size0 / 2.0f;
        const float mid0 = e(0) / 10.0f * size0 + center0;
        const float half1 = std::exp(e(3) / 5.0f) * size1 / 2.0f;
        const float mid1 = e(1) / 10.0f * size1 + center1;
        raw.boxes[4 * i + 0] = mid0 - half0;
        raw.boxes[4 * i + 1] = mid1 - half1;
        raw.boxes[4 * i + 2] = mid0 + half0;
        raw.boxes[4 * i + 3] = mid1 + half1;
        raw.scores[i] = sigmoid(cp[static_cast<std::size_t>(a * 3 + 1) * hw + cell]);
      }
    }
  }
  return raw;
}

std::vector<int> face_api_nms(std::span<const float> boxes, std::span<const float> scores,
                              int max_output, double iou_threshold, double score_threshold) {
  NEXUS_CHECK(boxes.size() == 4 * scores.size(),
              "face_api_nms: {} box values for {} scores (expected 4 per score)", boxes.size(),
              scores.size());
  const int n = static_cast<int>(scores.size());
  const int output_size = std::min(max_output, n);
  std::vector<int> candidates;
  for (int i = 0; i < n; ++i)
    if (scores[static_cast<std::size_t>(i)] > score_threshold) candidates.push_back(i);
  std::stable_sort(candidates.begin(), candidates.end(), [&](int a, int b) {
    return scores[static_cast<std::size_t>(a)] > scores[static_cast<std::size_t>(b)];
  });
  auto iou = [&](int i, int j) {
    const float* a = boxes.data() + 4 * static_cast<std::size_t>(i);
    const float* b = boxes.data() + 4 * static_cast<std::size_t>(j);
    const double ay0 = std::min(a[0], a[2]), ax0 = std::min(a[1], a[3]);
    const double ay1 = std::max(a[0], a[2]), ax1 = std::max(a[1], a[3]);
    const double by0 = std::min(b[0], b[2]), bx0 = std::min(b[1], b[3]);
    const double by1 = std::max(b[0], b[2]), bx1 = std::max(b[1], b[3]);
    const double area_a = (ay1 - ay0) * (ax1 - ax0), area_b = (by1 - by0) * (bx1 - bx0);
    if (area_a <= 0 || area_b <= 0) return 0.0;
    const double inter = std::max(std::min(ay1, by1) - std::max(ay0, by0), 0.0) *
                         std::max(std::min(ax1, bx1) - std::max(ax0, bx0), 0.0);
    return inter / (area_a + area_b - inter);
  };
  std::vector<int> selected;
  for (int c : candidates) {
    if (static_cast<int>(selected.size()) >= output_size) break;
    bool keep = true;
    for (auto it = selected.rbegin(); it != selected.rend() && keep; ++it)
      keep = iou(c, *it) <= iou_threshold;
    if (keep) selected.push_back(c);
  }
  return selected;
}

std::vector<FaceDetection> FaceDetector::postprocess(const std::vector<Tensor>& outputs,
                                                     std::int64_t item, int image_width,
                                                     int image_height, float min_confidence,
                                                     int max_results) const {
  NEXUS_CHECK(min_confidence > 0.0f && min_confidence < 1.0f,
              "FaceDetector: min_confidence {} must be in (0, 1)", min_confidence);
  NEXUS_CHECK(image_width >= 1 && image_height >= 1,
              "FaceDetector::postprocess: image size {} x {} (expected >= 1)", image_width,
              image_height);
  const FaceDetectorRaw raw = decode(outputs, item);
  const std::vector<int> keep = face_api_nms(raw.boxes, raw.scores, max_results,
                                             kFaceDetectorIouThreshold, min_confidence);
  // NetInput.getReshapedInputDimensions: the image's size inside the 512 square, rounded.
  const double scale = static_cast<double>(kIn) / std::max(image_width, image_height);
  const double pad_x = kIn / std::round(image_width * scale);
  const double pad_y = kIn / std::round(image_height * scale);
  std::vector<FaceDetection> out;
  out.reserve(keep.size());
  for (int idx : keep) {
    const float* b = raw.boxes.data() + 4 * static_cast<std::size_t>(idx);
    const double top = std::max(0.0, static_cast<double>(b[0])) * pad_y;
    const double bottom = std::min(1.0, static_cast<double>(b[2])) * pad_y;
    const double left = std::max(0.0, static_cast<double>(b[1])) * pad_x;
    const double right = std::min(1.0, static_cast<double>(b[3])) * pad_x;
    FaceDetection d;
    d.score = raw.scores[static_cast<std::size_t>(idx)];
    d.x = left * image_width;
    d.y = top * image_height;
    d.width = (right - left) * image_width;
    d.height = (bottom - top) * image_height;
    out.push_back(d);
  }
  return out;
}

std::vector<FaceDetection> FaceDetector::detect(Backend& backend, const Image& image,
                                                float min_confidence, int max_results) const {
  Tensor input(Shape{1, 3, kIn, kIn});
  preprocess_into(image, input.values());
  return postprocess(backend.run({input}), 0, image.width, image.height, min_confidence,
                     max_results);
}

}  // namespace nexus::model::zoo
