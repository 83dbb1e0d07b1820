#pragma once
// Building blocks shared by face-api's face nets (npm @vladmandic/face-api 1.7.15), expressed in
// the Graph IR: the input normalization every face net applies, TensorFlow's separable conv,
// and the FaceFeatureExtractor backbone (four dense blocks) that FaceLandmark68Net and
// FaceExpressionNet put their fully connected heads on.
//
// Sources in face-api: ops/normalize.ts, common/depthwiseSeparableConv.ts,
// faceFeatureExtractor/{FaceFeatureExtractor,denseBlock,loadParamsFactory}.ts.
//
// All builders read weights by their TensorFlow names from a WeightMap (load_tfjs_weights) and
// throw nexus::Error naming the tensor when one is missing or has an unexpected shape.

#include <string>

#include "nexus/model/graph.hpp"
#include "nexus/model/weights.hpp"

namespace nexus::model::zoo {

/// face-api's mean RGB, subtracted from pixel values in 0..255 before dividing by 255.
inline constexpr float kFaceMeanRgb[3] = {122.782f, 117.001f, 104.298f};

/// Input size of FaceFeatureExtractor and TinyXception (the landmark, expression and
/// age/gender nets): 112 x 112 pixels.
inline constexpr int kFaceFeatureInputSize = 112;

/// Appends face-api's input normalization: y[c] = (x[c] - kFaceMeanRgb[c]) / 255 on an RGB
/// [3, H, W] node holding pixel values in 0..255. Returns a [3, H, W] node.
/// Source: ops/normalize.ts and the `normalize(batchTensor, meanRgb).div(255)` of each net.
NodeId add_face_normalization(GraphBuilder& b, NodeId rgb_0_255, const std::string& name);

/// Appends tf.separableConv2d(x, depthwise 3x3, pointwise 1x1, stride, 'same') + bias, reading
/// `<prefix>/depthwise_filter` [3, 3, C, 1], `<prefix>/pointwise_filter` [1, 1, C, out_channels]
/// and `<prefix>/bias` [out_channels]. x is [C, H, W]; returns [out_channels, ceil(H/s), ceil(W/s)].
/// Source: common/depthwiseSeparableConv.ts.
NodeId add_separable_conv(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& prefix,
                          int out_channels, int stride);

/// Appends tf.conv2d(x, `<prefix>/filters` [k, k, C, out], stride, padding) + `<prefix>/bias`.
NodeId add_tf_conv(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& prefix,
                   int kernel, int out_channels, int stride, Padding padding);

/// Appends FaceFeatureExtractor on a normalized [3, 112, 112] node: dense blocks dense0..dense3
/// (32, 64, 128, 256 channels, each halving the resolution) and the 7x7/stride-2 valid average
/// pool. Returns a [256, 1, 1] node. Weights `dense{0..3}/conv{0..3}/...` as in
/// face_landmark_68_model / face_expression_model.
/// Source: faceFeatureExtractor/FaceFeatureExtractor.ts, denseBlock.ts (denseBlock4).
NodeId add_face_feature_extractor(GraphBuilder& b, NodeId normalized, const WeightMap& w);

}  // namespace nexus::model::zoo
