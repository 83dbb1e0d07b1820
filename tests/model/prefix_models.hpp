#pragma once
// Small model families for the prefix-batching tests (tests/model, tests/exec, tests/cuda): a
// conv backbone with a residual Add (a DAG, not a chain) whose weights come from `backbone_seed`,
// then a head from `head_seed`. Equal seeds give equal bytes in distinct storage, so detection
// must compare contents, not pointers.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "nexus/model/graph.hpp"

namespace prefix_test {

using nexus::Shape;
using nexus::Tensor;
using namespace nexus::model;

inline Tensor seeded(Shape s, std::uint64_t seed, float scale = 0.3f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  Tensor t(std::move(s));
  for (float& v : t.values()) v = u(rng);
  return t;
}

inline Conv2DAttrs same3x3(int stride = 1) {
  Conv2DAttrs a;
  a.kernel_h = a.kernel_w = 3;
  a.stride_h = a.stride_w = stride;
  a.padding = Padding::kSame;
  return a;
}

/// Backbone on [3, 16, 16]: conv1 (8) -> relu -> conv2 (8) + skip -> relu -> conv3 (16, /2,
/// seeded by `deep_seed`) -> relu -> global avg pool [16]. Returns the pooled node.
inline NodeId backbone(GraphBuilder& b, std::uint64_t seed, std::uint64_t deep_seed) {
  NodeId x = b.input("image", Shape{3, 16, 16});
  NodeId c1 = b.relu("relu1", b.conv2d("conv1", x, seeded({8, 3, 3, 3}, seed * 10 + 1),
                                       seeded({8}, seed * 10 + 2), same3x3()));
  NodeId c2 = b.conv2d("conv2", c1, seeded({8, 8, 3, 3}, seed * 10 + 3),
                       seeded({8}, seed * 10 + 4), same3x3());
  NodeId r = b.relu("relu2", b.add("res", c2, c1));
  NodeId c3 = b.relu("relu3", b.conv2d("conv3", r, seeded({16, 8, 3, 3}, deep_seed * 10 + 5),
                                       seeded({16}, deep_seed * 10 + 6), same3x3(2)));
  return b.global_avg_pool("gap", c3);
}

/// backbone + fc head (classes, seeded by head_seed) + softmax: output "prob" [classes].
inline Graph variant(const std::string& name, std::uint64_t backbone_seed,
                     std::uint64_t head_seed, int classes = 5,
                     std::uint64_t deep_seed = 0) {
  GraphBuilder b(name);
  NodeId f = backbone(b, backbone_seed, deep_seed == 0 ? backbone_seed : deep_seed);
  NodeId y = b.fully_connected("fc", f, seeded({classes, 16}, head_seed * 10 + 7),
                               seeded({classes}, head_seed * 10 + 8));
  b.output(b.softmax("prob", y));
  return std::move(b).build();
}

/// A member with two outputs: the backbone's features themselves (a prefix value) and a
/// two-layer head's logits.
inline Graph two_output_variant(const std::string& name, std::uint64_t backbone_seed,
                                std::uint64_t head_seed) {
  GraphBuilder b(name);
  NodeId f = backbone(b, backbone_seed, backbone_seed);
  NodeId h = b.relu("h/relu", b.fully_connected("h/fc1", f, seeded({12, 16}, head_seed * 10 + 1),
                                                seeded({12}, head_seed * 10 + 2)));
  NodeId y = b.fully_connected("h/fc2", h, seeded({3, 12}, head_seed * 10 + 3), std::nullopt);
  b.output(f);
  b.output(y);
  return std::move(b).build();
}

}  // namespace prefix_test
