#pragma once
// Prefix detection for prefix batching (paper §6.3; research notes §5). Models specialised by
// transfer learning share all but their last layers; Nexus finds the common prefix itself (the
// original code read a hand-written `share_prefix:` list; we hash, as the paper describes) so the
// prefix can run once on the merged batch of all member models, and each suffix on its slice.
//
// Canonical node hash: a 64-bit hash over (op, attributes, per-item output shape, weight digest,
// the hashes of its inputs in order); an Input node hashes its position among the graph's inputs
// and its shape. Names never enter the hash. Because each hash chains its inputs' hashes (a Merkle
// DAG), equal hashes mean equal sub-graphs: the node and everything it depends on. Equal structure
// with different weights hashes differently. Matches found by hash are then verified node by node
// (op, attributes, shapes, weight bytes), so a 64-bit collision cannot merge different models.
//
// The shared prefix of a set of graphs is the set of nodes of the first graph whose (verified) hash
// occurs in every other graph: closed under inputs, it always contains the graph inputs when the
// members' inputs agree. A prefix is worth sharing when it holds weights (min_shared_bytes) and a
// real share of each member (min_shared_fraction): inputs alone, a few weightless ops, or a shared
// input normalisation do not make a group.
//
// Thread-safety: free functions on const graphs; safe from any thread.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nexus/model/graph.hpp"

namespace nexus::model {

/// The canonical hash of every node of `graph`, indexed by NodeId (see the file comment).
std::vector<std::uint64_t> node_hashes(const Graph& graph);

/// Digest of a tensor's shape, dtype and bytes (64-bit; 0 for an empty tensor).
std::uint64_t tensor_digest(const Tensor& tensor);

/// The longest common prefix of a set of graphs, as node ids of each graph.
struct CommonPrefix {
  /// nodes[g]: the shared nodes in graphs[g], in graphs[g]'s topological order; nodes[g][j] of
  /// every g are the same (verified equal) node. Empty when the graphs' inputs differ.
  std::vector<std::vector<NodeId>> nodes;
  /// Bytes of the weight tensors of the shared nodes (held once instead of once per graph).
  std::size_t shared_weight_bytes = 0;
  /// Shared nodes that are not graph inputs.
  int compute_nodes = 0;
  /// Multiply-accumulates per item of the shared nodes (the work done once per merged batch).
  std::int64_t shared_macs_per_item = 0;
};

/// The longest common prefix of `graphs` (at least one). The graphs' inputs must agree in count
/// and per-item shapes for anything to be shared; otherwise the result has no nodes.
CommonPrefix longest_common_prefix(std::span<const Graph* const> graphs);

struct PrefixGroupOptions {
  /// A shared prefix must hold at least this many weight bytes to form a group.
  std::size_t min_shared_bytes = 1;
  /// ... and, for every member, at least this share of the member's weight bytes or of its
  /// multiply-accumulates per item (Graph::weights_bytes, Graph::macs_per_item). A sliver such as
  /// a shared input normalisation (face-api's landmark, age/gender and expression nets share one
  /// of 24 bytes) gains nothing from merged batches, while the group would be planned under its
  /// tightest member SLO. 0 disables the check.
  double min_shared_fraction = 0.1;
};

/// Models that share a common prefix (paper §6.3): planned and run as one unit.
struct PrefixGroup {
  std::vector<int> members;  ///< indices into the graphs given to find_prefix_groups, ascending
  CommonPrefix prefix;       ///< nodes[j] belongs to graphs[members[j]]
};

/// Partitions `graphs` into prefix groups of two or more models; models in no group are left
/// out (they run as without the feature). Greedy: repeatedly merges the two sets whose common
/// prefix holds the most weight bytes, as long as a set of two or more keeps its whole prefix
/// (a newcomer that shares less does not shrink an existing group). Deterministic.
std::vector<PrefixGroup> find_prefix_groups(std::span<const Graph* const> graphs,
                                            PrefixGroupOptions options = {});

/// Where a value the suffixes or a member's outputs need comes from.
struct PrefixValue {
  enum class Kind {
    kInput,         ///< a graph input, index into the members' inputs (fed to the prefix)
    kPrefixOutput,  ///< an output of the prefix graph, index into its outputs
  };
  Kind kind = Kind::kPrefixOutput;
  int index = 0;
  Shape shape;  ///< per item
};

/// One member model cut after the shared prefix.
struct SuffixPart {
  std::string model;  ///< the member graph's name
  /// The layers after the prefix, fed by boundary values; none when every output of the member
  /// is a prefix value (the member is all prefix).
  std::optional<Graph> graph;
  /// graph->inputs()[k] is fed by PrefixSplit::boundary[inputs[k]].
  std::vector<int> inputs;
  /// One entry per output of the member graph, in order: {false, j} is suffix output j,
  /// {true, b} is PrefixSplit::boundary[b].
  struct Output {
    bool from_prefix = false;
    int index = 0;
  };
  std::vector<Output> outputs;
};

/// Graphs cut into one shared prefix graph and one suffix per member.
struct PrefixSplit {
  /// The shared layers, inputs as the members' inputs, outputs = the computed boundary values.
  /// Its weight tensors share storage with the first member graph's.
  Graph prefix;
  /// The values of the prefix that suffixes or member outputs read.
  std::vector<PrefixValue> boundary;
  std::vector<SuffixPart> suffixes;  ///< one per member, in the order given
  std::size_t shared_weight_bytes = 0;
};

/// Cuts `graphs` (two or more) at their longest common prefix. Throws nexus::Error naming the
/// graph and shapes when their inputs differ in count or shape ("mismatched input shapes"), or
/// when the common prefix holds no computed node (nothing to share).
PrefixSplit split_prefix(std::span<const Graph* const> graphs);

}  // namespace nexus::model
