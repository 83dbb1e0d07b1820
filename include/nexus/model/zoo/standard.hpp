#pragma once
// Standard architectures in the Graph IR with seeded random weights, for benchmarks and
// batching profiles (speed does not depend on weight values; DESIGN.md, "Conventions").
//
// Weights are He-uniform (U(-a, a), a = sqrt(6 / fan_in), gain 2 before a ReLU), BatchNorm with
// mean 0, variance 1, scale 1 (folded into the convs by GraphBuilder::build()); residual
// branches end with a BatchNorm scale of 0.2 so activations stay finite through deep stacks.
// The same seed gives the same weights on every machine (own SplitMix64 generator).
//
// Inputs are float32 images [3, H, W] named "image"; classifiers output "prob" [1000] (softmax).
// Multiply-accumulates per image (Graph::macs_per_item), for GFLOP/s figures:
//   resnet50             [3, 224, 224]  ~4.1 G  (ResNet v1.5: stride in the 3x3 conv; He et al. 2016)
//   mobilenet_v1         [3, 224, 224]  ~0.57 G (width 1.0, ReLU6; Howard et al. 2017)
//   vgg16                [3, 224, 224]  ~15.5 G (configuration D; Simonyan & Zisserman 2015)
//   googlenet            [3, 224, 224]  ~1.5 G  (Inception v1 without LRN and aux heads; Szegedy et al. 2015)
//   inception_v3         [3, 299, 299]  ~5.7 G  (without the aux head; Szegedy et al. 2016)
//   ssd_mobilenet_v1_300 [3, 300, 300]  ~1.2 G  (TF object-detection API layout: MobileNetV1 to
//                        conv13, 4 extra layers, box/class heads on 6 maps 19,10,5,3,2,1 with 3,6,6,6,6,6
//                        anchors, 91 classes). Outputs, in order: the six box heads "box_predictor_<i>/box" [anchors*4, h, w], then
//                        the six "box_predictor_<i>/class" [anchors*91, h, w]; no anchor decoding or NMS.
//   lenet                [1, 28, 28]    ~2.29 M (Caffe's MNIST LeNet, BVLC examples/mnist/lenet.prototxt:
//                        conv 20 5x5, max-pool 2, conv 50 5x5, max-pool 2, fc 500 + ReLU, fc 10; valid
//                        padding, 431,080 parameters; the digit recognizer of the paper's game
//                        analysis, Table 4). Grayscale input; outputs "prob" [10].

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/model/graph.hpp"

namespace nexus::model::zoo {

Graph resnet50(std::uint64_t seed = 1);
Graph mobilenet_v1(std::uint64_t seed = 1);
Graph vgg16(std::uint64_t seed = 1);
Graph googlenet(std::uint64_t seed = 1);
Graph inception_v3(std::uint64_t seed = 1);
Graph ssd_mobilenet_v1_300(std::uint64_t seed = 1);
Graph lenet(std::uint64_t seed = 1);

/// The names standard_model() accepts: "resnet50", "mobilenet_v1", "vgg16", "googlenet",
/// "inception_v3", "ssd_mobilenet_v1_300", "lenet".
std::vector<std::string> standard_model_names();
/// One of the above by name. Throws nexus::Error naming the known models on an unknown name.
Graph standard_model(std::string_view name, std::uint64_t seed = 1);

}  // namespace nexus::model::zoo
