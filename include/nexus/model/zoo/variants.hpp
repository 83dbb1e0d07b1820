#pragma once
// Specialised variants of the standard classifiers, as transfer learning makes them: one shared
// backbone, a different final FullyConnected layer per variant (paper §6.3, prefix batching; the
// evaluation's "10 ResNet-50 variants"). For demonstrations and benchmarks of prefix batching:
// model/prefix.hpp finds the shared backbone by hashing, and PrefixRunner runs it once.
//
// Weights: the backbone is standard_model(name, seed) (zoo/standard.hpp); the head is re-drawn as
// the zoo draws an FC layer (He-uniform U(-a, a), a = sqrt(3 / in), zero bias) from the zoo's
// SplitMix64 seeded by (seed, variant). Each call builds its own copy of the backbone (separate
// storage, as separately loaded models would have); equal bytes make them share a prefix.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/model/graph.hpp"

namespace nexus::model::zoo {

/// `graph` with its last FullyConnected layer (in topological order) re-drawn from head_seed,
/// with `classes` outputs (0: as many as before; specialised models often tell a few classes),
/// named `name` (graph.name() when empty). Other weights share storage with `graph`. Throws
/// nexus::Error naming the graph when it has no FullyConnected layer, or when the class count
/// changes and a node after the head is not a softmax or activation.
Graph with_new_head(const Graph& graph, std::uint64_t head_seed, std::int64_t classes = 0,
                    std::string name = {});

/// Variant `variant` (>= 0) of a standard classifier ("resnet50", "mobilenet_v1", "vgg16",
/// "googlenet", "inception_v3"): standard_model(name, seed) with a new final FC head; named
/// "<name>/v<variant>". Same input shape as the base model; output [classes] ("prob", softmax),
/// 1000 when classes is 0. Throws nexus::Error on an unknown name, a model without an FC head
/// (ssd_mobilenet_v1_300) or a negative variant.
Graph standard_variant(std::string_view name, int variant, std::uint64_t seed = 1,
                       std::int64_t classes = 0);

/// Variants 0..count-1 of `name`, e.g. resnet50 with K seeded final FC heads.
std::vector<Graph> standard_variants(std::string_view name, int count, std::uint64_t seed = 1,
                                     std::int64_t classes = 0);

}  // namespace nexus::model::zoo
