// face-api's shared building blocks in the Graph IR: normalization, separable conv, and the
// FaceFeatureExtractor dense-block backbone.
#include "nexus/model/zoo/face_feature_extractor.hpp"

#include <array>

#include "nexus/core/error.hpp"

namespace nexus::model::zoo {

NodeId add_face_normalization(GraphBuilder& b, NodeId rgb_0_255, const std::string& name) {
  NEXUS_CHECK(b.shape(rgb_0_255).rank() == 3 && b.shape(rgb_0_255)[0] == 3,
              "{}: face nets take an RGB [3, H, W] input, got {}", name, b.shape(rgb_0_255));
  // (x - mean) / 255 as one per-channel affine node.
  Tensor scale(Shape{3});
  Tensor offset(Shape{3});
  for (int c = 0; c < 3; ++c) {
    scale.data()[c] = 1.0f / 255.0f;
    offset.data()[c] = -kFaceMeanRgb[c] / 255.0f;
  }
  return b.scale_offset(name, rgb_0_255, scale, offset);
}

NodeId add_tf_conv(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& prefix,
                   int kernel, int out_channels, int stride, Padding padding) {
  const std::int64_t in_channels = b.shape(x)[0];
  const Tensor& filters =
      get(w, prefix + "/filters", Shape{kernel, kernel, in_channels, out_channels});
  const Tensor& bias = get(w, prefix + "/bias", Shape{out_channels});
  Conv2DAttrs a;
  a.kernel_h = a.kernel_w = kernel;
  a.stride_h = a.stride_w = stride;
  a.padding = padding;
  return b.conv2d(prefix, x, hwio_to_oihw(filters), bias.clone(), a);
}

NodeId add_separable_conv(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& prefix,
                          int out_channels, int stride) {
  const std::int64_t c = b.shape(x)[0];
  const Tensor& dw = get(w, prefix + "/depthwise_filter", Shape{3, 3, c, 1});
  const Tensor& pw = get(w, prefix + "/pointwise_filter", Shape{1, 1, c, out_channels});
  const Tensor& bias = get(w, prefix + "/bias", Shape{out_channels});

  Conv2DAttrs da;
  da.kernel_h = da.kernel_w = 3;
  da.stride_h = da.stride_w = stride;
  da.groups = static_cast<int>(c);
  da.padding = Padding::kSame;
  const NodeId d = b.conv2d(prefix + "/depthwise", x, depthwise_to_oihw(dw), std::nullopt, da);

  Conv2DAttrs pa;  // 1x1, stride 1
  pa.padding = Padding::kValid;
  return b.conv2d(prefix + "/pointwise", d, hwio_to_oihw(pw), bias.clone(), pa);
}

namespace {

// denseBlock4 of faceFeatureExtractor/denseBlock.ts: four convs whose outputs are summed
// densely; the first halves the resolution (a plain conv in dense0, separable elsewhere).
NodeId dense_block4(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& p,
                    int channels, bool first_layer) {
  const NodeId conv0 = first_layer
                           ? add_tf_conv(b, x, w, p + "/conv0", 3, channels, 2, Padding::kSame)
                           : add_separable_conv(b, x, w, p + "/conv0", channels, 2);
  const NodeId out1 = b.relu(p + "/out1", conv0);
  const NodeId out2 = add_separable_conv(b, out1, w, p + "/conv1", channels, 1);

  const NodeId in3 = b.relu(p + "/in3", b.add(p + "/sum12", out1, out2));
  const NodeId out3 = add_separable_conv(b, in3, w, p + "/conv2", channels, 1);

  // tf.add(out1, tf.add(out2, out3)): same association as face-api.
  const NodeId sum23 = b.add(p + "/sum23", out2, out3);
  const NodeId in4 = b.relu(p + "/in4", b.add(p + "/sum123", out1, sum23));
  const NodeId out4 = add_separable_conv(b, in4, w, p + "/conv3", channels, 1);

  const NodeId sum34 = b.add(p + "/sum34", out3, out4);
  const NodeId sum234 = b.add(p + "/sum234", out2, sum34);
  return b.relu(p + "/out", b.add(p + "/sum1234", out1, sum234));
}

}  // namespace

NodeId add_face_feature_extractor(GraphBuilder& b, NodeId normalized, const WeightMap& w) {
  const Shape& in = b.shape(normalized);
  NEXUS_CHECK(in == (Shape{3, kFaceFeatureInputSize, kFaceFeatureInputSize}),
              "FaceFeatureExtractor: expected a normalized [3, 112, 112] input, got {}", in);
  constexpr std::array<int, 4> kChannels = {32, 64, 128, 256};
  NodeId out = normalized;
  for (int i = 0; i < 4; ++i)
    out = dense_block4(b, out, w, "dense" + std::to_string(i), kChannels[i], i == 0);
  Pool2DAttrs pool;  // tf.avgPool(out, [7, 7], [2, 2], 'valid') on 7x7 -> 1x1
  pool.kernel_h = pool.kernel_w = 7;
  pool.stride_h = pool.stride_w = 2;
  pool.padding = Padding::kValid;
  return b.avg_pool("features/avg_pool", out, pool);
}

}  // namespace nexus::model::zoo
