// Standard classifier variants with seeded heads (see zoo/variants.hpp).
#include "nexus/model/zoo/variants.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/standard.hpp"
#include "zoo_rng.hpp"

namespace nexus::model::zoo {

Graph with_new_head(const Graph& graph, std::uint64_t head_seed, std::int64_t classes,
                    std::string name) {
  NodeId head = -1;
  for (const Node& n : graph.nodes())
    if (n.op == OpType::kFullyConnected) head = n.id;
  NEXUS_CHECK(head >= 0, "with_new_head: graph '{}' has no FullyConnected layer to replace",
              graph.name());
  NEXUS_CHECK(classes >= 0, "with_new_head: classes {} (expected >= 1, or 0 to keep them)",
              classes);
  std::vector<Node> nodes = graph.nodes();
  Node& fc = nodes[static_cast<std::size_t>(head)];
  const std::int64_t in = fc.weight.shape()[1];
  const std::int64_t out = classes > 0 ? classes : fc.weight.shape()[0];
  detail::Rng rng(head_seed);
  Tensor w(Shape{out, in});
  const float a = std::sqrt(3.0f / static_cast<float>(in));
  for (float& v : w.values()) v = a * rng.symmetric();
  fc.weight = std::move(w);
  fc.bias = Tensor(Shape{out});
  fc.shape = Shape{out};
  // A new class count flows through the shape-preserving ops after the head (softmax, ...).
  std::vector<char> changed(nodes.size(), 0);
  changed[static_cast<std::size_t>(head)] = 1;
  for (std::size_t i = static_cast<std::size_t>(head) + 1; i < nodes.size(); ++i) {
    Node& n = nodes[i];
    const bool reads = std::any_of(n.inputs.begin(), n.inputs.end(), [&](NodeId x) {
      return changed[static_cast<std::size_t>(x)] != 0;
    });
    if (!reads) continue;
    const bool elementwise = n.inputs.size() == 1 &&
        (n.op == OpType::kSoftmax || n.op == OpType::kRelu || n.op == OpType::kRelu6 ||
         n.op == OpType::kSigmoid || n.op == OpType::kTanh || n.op == OpType::kLeakyRelu);
    NEXUS_CHECK(elementwise || classes == 0,
                "with_new_head: cannot give '{}' {} classes: node '{}' ({}) reads the head "
                "(expected only softmax or activations after it)",
                graph.name(), classes, n.name, op_name(n.op));
    if (elementwise) n.shape = nodes[static_cast<std::size_t>(n.inputs[0])].shape;
    changed[i] = 1;
  }
  return Graph::from_nodes(name.empty() ? graph.name() : std::move(name), std::move(nodes),
                           graph.inputs(), graph.outputs());
}

Graph standard_variant(std::string_view name, int variant, std::uint64_t seed,
                       std::int64_t classes) {
  NEXUS_CHECK(variant >= 0, "standard_variant: variant {} of '{}' (expected >= 0)", variant,
              name);
  NEXUS_CHECK(name != "ssd_mobilenet_v1_300",
              "standard_variant: '{}' has no classifier head (expected resnet50, mobilenet_v1, "
              "vgg16, googlenet or inception_v3)",
              name);
  // The head's seed: (seed, variant) mixed, distinct from every backbone seed in practice.
  detail::Rng mix(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(variant) + 1);
  return with_new_head(standard_model(name, seed), mix.next(), classes,
                       fmt::format("{}/v{}", name, variant));
}

std::vector<Graph> standard_variants(std::string_view name, int count, std::uint64_t seed,
                                     std::int64_t classes) {
  NEXUS_CHECK(count >= 0, "standard_variants: count {} (expected >= 0)", count);
  std::vector<Graph> out;
  for (int k = 0; k < count; ++k) out.push_back(standard_variant(name, k, seed, classes));
  return out;
}

}  // namespace nexus::model::zoo
