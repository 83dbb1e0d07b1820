// FaceRecognitionNet (face-api faceRecognitionNet/) in the Graph IR.
#include "nexus/model/zoo/face_recognition.hpp"

#include <cmath>
#include <string>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/face_feature_extractor.hpp"

namespace nexus::model::zoo {
namespace {

// convLayer of faceRecognitionNet/convLayer.ts: conv + bias, scale layer, optional relu.
NodeId conv_layer(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& p,
                  int kernel, int out_channels, int stride, Padding padding, bool with_relu) {
  const std::int64_t in_channels = b.shape(x)[0];
  const Tensor& filters =
      get(w, p + "/conv/filters", Shape{kernel, kernel, in_channels, out_channels});
  const Tensor& bias = get(w, p + "/conv/bias", Shape{out_channels});
  const Tensor& scale = get(w, p + "/scale/weights", Shape{out_channels});
  const Tensor& offset = get(w, p + "/scale/biases", Shape{out_channels});
  Conv2DAttrs a;
  a.kernel_h = a.kernel_w = kernel;
  a.stride_h = a.stride_w = stride;
  a.padding = padding;
  const NodeId conv = b.conv2d(p + "/conv", x, hwio_to_oihw(filters), bias.clone(), a);
  const NodeId scaled = b.scale_offset(p + "/scale", conv, scale.clone(), offset.clone());
  return with_relu ? b.relu(p + "/relu", scaled) : scaled;
}

// residual(): conv-relu, conv, + x, relu.
NodeId residual(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& p) {
  const int c = static_cast<int>(b.shape(x)[0]);
  NodeId out = conv_layer(b, x, w, p + "/conv1", 3, c, 1, Padding::kSame, true);
  out = conv_layer(b, out, w, p + "/conv2", 3, c, 1, Padding::kSame, false);
  return b.relu(p + "/out", b.add(p + "/add", out, x));
}

// residualDown(): conv1 is 3x3 stride 2 *valid*; the shortcut is a 2x2/2 valid average pool,
// zero-padded along channels when the block widens, and the conv path is zero-padded by one
// row (bottom) and column (right) when its spatial size falls one short of the pool's
// (8 -> 3 vs 4, and 4 -> 1 vs 2 in the last two blocks).
NodeId residual_down(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& p,
                     int out_channels) {
  NodeId out = conv_layer(b, x, w, p + "/conv1", 3, out_channels, 2, Padding::kValid, true);
  out = conv_layer(b, out, w, p + "/conv2", 3, out_channels, 1, Padding::kSame, false);

  Pool2DAttrs pa;
  pa.kernel_h = pa.kernel_w = 2;
  pa.stride_h = pa.stride_w = 2;
  pa.padding = Padding::kValid;
  NodeId pooled = b.avg_pool(p + "/shortcut_pool", x, pa);
  const Shape ps = b.shape(pooled);
  const Shape os = b.shape(out);

  if (ps[1] != os[1] || ps[2] != os[2]) {
    NEXUS_CHECK(ps[1] == os[1] + 1 && ps[2] == os[2] + 1,
                "FaceRecognitionNet {}: conv path {} vs shortcut {} cannot be padded by one", p,
                os, ps);
    // Zero padding as a depthwise 1x1 identity conv with explicit bottom/right pads.
    Tensor ones(Shape{os[0], 1, 1, 1});
    for (float& v : ones.values()) v = 1.0f;
    Conv2DAttrs ca;
    ca.groups = static_cast<int>(os[0]);
    ca.padding = Padding::kExplicit;
    ca.pads.bottom = 1;
    ca.pads.right = 1;
    out = b.conv2d(p + "/pad_hw", out, ones, std::nullopt, ca);
  }
  if (ps[0] != out_channels) {
    NEXUS_CHECK(out_channels > ps[0], "FaceRecognitionNet {}: shortcut has {} channels > {}", p,
                ps[0], out_channels);
    // tf.concat([pooled, zeros(pooled.shape)], 3): face-api pads with as many zero channels
    // as the pooled tensor has, so the block must exactly double the width.
    NEXUS_CHECK(out_channels == 2 * ps[0],
                "FaceRecognitionNet {}: expected {} -> {} channels (a doubling)", p, ps[0],
                out_channels);
    const NodeId zeros = b.constant(p + "/zero_channels", Tensor(ps));
    pooled = b.concat(p + "/pad_c", {pooled, zeros}, 0);
  }
  return b.relu(p + "/out", b.add(p + "/add", pooled, out));
}

}  // namespace

Graph build_face_recognition_net(const WeightMap& w) {
  GraphBuilder b("face_recognition_net");
  const NodeId image =
      b.input("image", Shape{3, kFaceRecognitionInputSize, kFaceRecognitionInputSize});
  NodeId out = add_face_normalization(b, image, "normalize");

  out = conv_layer(b, out, w, "conv32_down", 7, 32, 2, Padding::kValid, true);
  Pool2DAttrs mp;  // tf.maxPool(out, 3, 2, 'valid')
  mp.kernel_h = mp.kernel_w = 3;
  mp.stride_h = mp.stride_w = 2;
  mp.padding = Padding::kValid;
  out = b.max_pool("max_pool", out, mp);

  out = residual(b, out, w, "conv32_1");
  out = residual(b, out, w, "conv32_2");
  out = residual(b, out, w, "conv32_3");

  out = residual_down(b, out, w, "conv64_down", 64);
  out = residual(b, out, w, "conv64_1");
  out = residual(b, out, w, "conv64_2");
  out = residual(b, out, w, "conv64_3");

  out = residual_down(b, out, w, "conv128_down", 128);
  out = residual(b, out, w, "conv128_1");
  out = residual(b, out, w, "conv128_2");

  out = residual_down(b, out, w, "conv256_down", 256);
  out = residual(b, out, w, "conv256_1");
  out = residual(b, out, w, "conv256_2");
  out = residual_down(b, out, w, "conv256_down_out", 256);

  out = b.global_avg_pool("mean_hw", out);  // out.mean([1, 2])
  const Tensor& fc = get(w, "fc", Shape{256, kFaceDescriptorSize});
  out = b.fully_connected("descriptor", out, dense_to_out_in(fc), std::nullopt);
  b.output(out);
  return std::move(b).build();
}

Graph load_face_recognition_net(const std::filesystem::path& model_dir) {
  return build_face_recognition_net(
      load_tfjs_weights(model_dir / "face_recognition_model-weights_manifest.json"));
}

float face_distance(std::span<const float> a, std::span<const float> b) {
  NEXUS_CHECK(a.size() == b.size(), "face_distance: descriptors of {} and {} values", a.size(),
              b.size());
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    sum += d * d;
  }
  return static_cast<float>(std::sqrt(sum));
}

}  // namespace nexus::model::zoo
