// Prefix detection: canonical node hashes, the longest common prefix, prefix groups, and cutting
// graphs into one prefix and per-model suffixes (paper §6.3).
#include "nexus/model/prefix.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "nexus/core/error.hpp"

namespace nexus::model {

namespace {

// SplitMix64's finalizer: a strong 64-bit mixer.
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Hasher {
 public:
  void add(std::uint64_t v) { h_ = mix(h_ ^ mix(v + 0x9E3779B97F4A7C15ull)) + 0x632BE59BD9B4E019ull; }
  void add_int(std::int64_t v) { add(static_cast<std::uint64_t>(v)); }
  void add_float(float v) { add(std::bit_cast<std::uint32_t>(v)); }
  void add_shape(const Shape& s) {
    add_int(s.rank());
    for (auto d : s.dims()) add_int(d);
  }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 0x6A09E667F3BCC908ull;
};

void add_pads(Hasher& h, const Pads& p) {
  h.add_int(p.top);
  h.add_int(p.bottom);
  h.add_int(p.left);
  h.add_int(p.right);
}

// Every attribute field, whatever the op (unused fields hold their defaults): conservative, so an
// attribute that matters to some op can never be left out.
void add_attrs(Hasher& h, const Node& n) {
  const Conv2DAttrs& c = n.conv;
  for (int v : {c.kernel_h, c.kernel_w, c.stride_h, c.stride_w, c.dilation_h, c.dilation_w,
                c.groups, static_cast<int>(c.padding)})
    h.add_int(v);
  add_pads(h, c.pads);
  const Pool2DAttrs& p = n.pool;
  for (int v : {p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, static_cast<int>(p.padding)})
    h.add_int(v);
  add_pads(h, p.pads);
  h.add_int(n.resize.out_h);
  h.add_int(n.resize.out_w);
  h.add_int(n.resize.align_corners);
  h.add_int(n.resize.half_pixel_centers);
  h.add_float(n.alpha);
  h.add_int(n.axis);
  h.add_shape(n.target);
}

bool same_attrs(const Node& a, const Node& b) {
  const Conv2DAttrs &x = a.conv, &y = b.conv;
  const bool conv = x.kernel_h == y.kernel_h && x.kernel_w == y.kernel_w &&
                    x.stride_h == y.stride_h && x.stride_w == y.stride_w &&
                    x.dilation_h == y.dilation_h && x.dilation_w == y.dilation_w &&
                    x.groups == y.groups && x.padding == y.padding && x.pads == y.pads;
  const Pool2DAttrs &p = a.pool, &q = b.pool;
  const bool pool = p.kernel_h == q.kernel_h && p.kernel_w == q.kernel_w &&
                    p.stride_h == q.stride_h && p.stride_w == q.stride_w &&
                    p.padding == q.padding && p.pads == q.pads;
  const bool resize = a.resize.out_h == b.resize.out_h && a.resize.out_w == b.resize.out_w &&
                      a.resize.align_corners == b.resize.align_corners &&
                      a.resize.half_pixel_centers == b.resize.half_pixel_centers;
  return conv && pool && resize &&
         std::bit_cast<std::uint32_t>(a.alpha) == std::bit_cast<std::uint32_t>(b.alpha) &&
         a.axis == b.axis && a.target == b.target;
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  if (a.empty() || b.empty()) return a.empty() == b.empty();
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.raw_data() == b.raw_data()) return true;
  return std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

std::size_t node_weight_bytes(const Node& n) {
  std::size_t bytes = 0;
  for (const Tensor* t : {&n.weight, &n.bias, &n.mean, &n.variance})
    if (!t->empty()) bytes += t->nbytes();
  return bytes;
}

std::int64_t node_macs(const Node& n) {
  if (n.op == OpType::kConv2D) {
    const auto& w = n.weight.shape();
    return n.shape.numel() * w[1] * w[2] * w[3];
  }
  if (n.op == OpType::kFullyConnected) return n.weight.shape()[0] * n.weight.shape()[1];
  return 0;
}

bool inputs_agree(std::span<const Graph* const> graphs) {
  const Graph& g0 = *graphs[0];
  for (const Graph* g : graphs) {
    if (g->inputs().size() != g0.inputs().size()) return false;
    for (std::size_t i = 0; i < g0.inputs().size(); ++i)
      if (g->node(g->inputs()[i]).shape != g0.node(g0.inputs()[i]).shape) return false;
  }
  return true;
}

struct Match {
  CommonPrefix prefix;
  std::unordered_set<std::uint64_t> shared;  // hashes of the shared nodes
};

// The common prefix from precomputed hashes. With verify_bytes, the weights of matched nodes are
// compared byte by byte (else their digests, which are in the hash, are trusted).
Match common_prefix(std::span<const Graph* const> graphs,
                    std::span<const std::vector<std::uint64_t>> hashes, bool verify_bytes) {
  Match m;
  m.prefix.nodes.resize(graphs.size());
  if (graphs.empty() || !inputs_agree(graphs)) return m;
  const Graph& g0 = *graphs[0];
  const auto& h0 = hashes[0];
  std::vector<std::unordered_map<std::uint64_t, NodeId>> first(graphs.size());
  for (std::size_t g = 1; g < graphs.size(); ++g)
    for (const Node& n : graphs[g]->nodes()) first[g].emplace(hashes[g][n.id], n.id);

  for (const Node& n : g0.nodes()) {
    const std::uint64_t h = h0[n.id];
    if (m.shared.contains(h)) continue;
    bool ok = std::all_of(n.inputs.begin(), n.inputs.end(),
                          [&](NodeId in) { return m.shared.contains(h0[in]); });
    for (std::size_t g = 1; ok && g < graphs.size(); ++g) {
      const auto it = first[g].find(h);
      if (it == first[g].end()) {
        ok = false;
        break;
      }
      const Node& o = graphs[g]->node(it->second);
      ok = o.op == n.op && o.shape == n.shape && same_attrs(n, o) &&
           o.inputs.size() == n.inputs.size();
      for (std::size_t k = 0; ok && k < n.inputs.size(); ++k)
        ok = hashes[g][o.inputs[k]] == h0[n.inputs[k]];
      if (ok && verify_bytes)
        ok = same_tensor(n.weight, o.weight) && same_tensor(n.bias, o.bias) &&
             same_tensor(n.mean, o.mean) && same_tensor(n.variance, o.variance);
    }
    if (!ok) continue;
    m.shared.insert(h);
    m.prefix.shared_weight_bytes += node_weight_bytes(n);
    m.prefix.shared_macs_per_item += node_macs(n);
    if (n.op != OpType::kInput) ++m.prefix.compute_nodes;
  }
  for (std::size_t g = 0; g < graphs.size(); ++g)
    for (const Node& n : graphs[g]->nodes())
      if (m.shared.contains(hashes[g][n.id])) m.prefix.nodes[g].push_back(n.id);
  return m;
}

std::string shapes_of_inputs(const Graph& g) {
  std::string s;
  for (NodeId in : g.inputs()) s += fmt::format("{}{}", s.empty() ? "" : ", ", g.node(in).shape);
  return "[" + s + "]";
}

}  // namespace

std::uint64_t tensor_digest(const Tensor& t) {
  if (t.empty()) return 0;
  Hasher h;
  h.add_shape(t.shape());
  h.add_int(static_cast<int>(t.dtype()));
  const auto* bytes = static_cast<const unsigned char*>(t.raw_data());
  const std::size_t n = t.nbytes();
  // Four independent lanes over 8-byte words, folded at the end.
  std::uint64_t lane[4] = {1, 2, 3, 4};
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      std::uint64_t w;
      std::memcpy(&w, bytes + i + 8 * k, 8);
      lane[k] = (lane[k] ^ mix(w + static_cast<std::uint64_t>(k))) * 0x9FB21C651E98DF25ull;
    }
  }
  for (; i < n; ++i) lane[0] = (lane[0] ^ bytes[i]) * 0x100000001B3ull;
  for (std::uint64_t l : lane) h.add(l);
  h.add(n);
  return h.value();
}

std::vector<std::uint64_t> node_hashes(const Graph& graph) {
  std::vector<std::uint64_t> out(graph.nodes().size());
  for (const Node& n : graph.nodes()) {
    Hasher h;
    h.add_int(static_cast<int>(n.op));
    h.add_shape(n.shape);
    if (n.op == OpType::kInput) {
      const auto& ins = graph.inputs();
      h.add_int(std::find(ins.begin(), ins.end(), n.id) - ins.begin());
    }
    add_attrs(h, n);
    for (const Tensor* t : {&n.weight, &n.bias, &n.mean, &n.variance}) h.add(tensor_digest(*t));
    h.add_int(static_cast<std::int64_t>(n.inputs.size()));
    for (NodeId in : n.inputs) h.add(out[static_cast<std::size_t>(in)]);
    out[static_cast<std::size_t>(n.id)] = h.value();
  }
  return out;
}

CommonPrefix longest_common_prefix(std::span<const Graph* const> graphs) {
  NEXUS_CHECK(!graphs.empty(), "longest_common_prefix: no graphs (expected at least one)");
  std::vector<std::vector<std::uint64_t>> hashes;
  for (const Graph* g : graphs) hashes.push_back(node_hashes(*g));
  return common_prefix(graphs, hashes, true).prefix;
}

std::vector<PrefixGroup> find_prefix_groups(std::span<const Graph* const> graphs,
                                            PrefixGroupOptions options) {
  std::vector<std::vector<std::uint64_t>> hashes;
  for (const Graph* g : graphs) hashes.push_back(node_hashes(*g));
  // Worth a group: enough bytes, and a real share of every member's weights or work.
  auto worth = [&](const CommonPrefix& cp, const std::vector<int>& members) {
    if (cp.compute_nodes == 0 || cp.shared_weight_bytes < options.min_shared_bytes) return false;
    if (options.min_shared_fraction <= 0) return true;
    for (int i : members) {
      const Graph& g = *graphs[static_cast<std::size_t>(i)];
      const double bytes = static_cast<double>(g.weights_bytes());
      const double macs = static_cast<double>(g.macs_per_item());
      const bool by_bytes = bytes > 0 && double(cp.shared_weight_bytes) >= options.min_shared_fraction * bytes;
      const bool by_macs = macs > 0 && double(cp.shared_macs_per_item) >= options.min_shared_fraction * macs;
      if (!by_bytes && !by_macs) return false;
    }
    return true;
  };
  struct Set {
    std::vector<int> members;
    int compute_nodes = 0;  // of its prefix, when it has two or more members
  };
  std::vector<Set> sets;
  for (int i = 0; i < static_cast<int>(graphs.size()); ++i) sets.push_back({{i}, 0});

  auto prefix_of = [&](const std::vector<int>& members, bool verify) {
    std::vector<const Graph*> gs;
    std::vector<std::vector<std::uint64_t>> hs;
    for (int i : members) {
      gs.push_back(graphs[static_cast<std::size_t>(i)]);
      hs.push_back(hashes[static_cast<std::size_t>(i)]);
    }
    return common_prefix(gs, hs, verify).prefix;
  };
  for (;;) {
    std::size_t best_a = 0, best_b = 0, best_bytes = 0;
    int best_nodes = 0;
    bool found = false;
    for (std::size_t a = 0; a < sets.size(); ++a) {
      for (std::size_t b = a + 1; b < sets.size(); ++b) {
        std::vector<int> merged = sets[a].members;
        merged.insert(merged.end(), sets[b].members.begin(), sets[b].members.end());
        std::sort(merged.begin(), merged.end());
        const CommonPrefix cp = prefix_of(merged, false);
        if (!worth(cp, merged)) continue;
        const bool keeps_a = sets[a].members.size() < 2 || cp.compute_nodes == sets[a].compute_nodes;
        const bool keeps_b = sets[b].members.size() < 2 || cp.compute_nodes == sets[b].compute_nodes;
        if (!keeps_a || !keeps_b) continue;
        if (!found || cp.shared_weight_bytes > best_bytes) {
          found = true;
          best_a = a;
          best_b = b;
          best_bytes = cp.shared_weight_bytes;
          best_nodes = cp.compute_nodes;
        }
      }
    }
    if (!found) break;
    sets[best_a].members.insert(sets[best_a].members.end(), sets[best_b].members.begin(),
                                sets[best_b].members.end());
    std::sort(sets[best_a].members.begin(), sets[best_a].members.end());
    sets[best_a].compute_nodes = best_nodes;
    sets.erase(sets.begin() + static_cast<std::ptrdiff_t>(best_b));
  }

  std::vector<PrefixGroup> groups;
  for (const Set& s : sets) {
    if (s.members.size() < 2) continue;
    PrefixGroup group{s.members, prefix_of(s.members, true)};  // weights verified byte by byte
    if (!worth(group.prefix, group.members)) continue;
    groups.push_back(std::move(group));
  }
  std::sort(groups.begin(), groups.end(),
            [](const PrefixGroup& a, const PrefixGroup& b) { return a.members < b.members; });
  return groups;
}

PrefixSplit split_prefix(std::span<const Graph* const> graphs) {
  NEXUS_CHECK(graphs.size() >= 2, "split_prefix: {} graph(s) given (expected two or more)",
              graphs.size());
  const Graph& g0 = *graphs[0];
  for (const Graph* g : graphs) {
    NEXUS_CHECK(inputs_agree(std::span<const Graph* const>(std::vector<const Graph*>{&g0, g})),
                "prefix group: mismatched input shapes: model '{}' takes {}, model '{}' takes {} "
                "(members of a prefix group must take the same inputs)",
                g->name(), shapes_of_inputs(*g), g0.name(), shapes_of_inputs(g0));
  }
  std::vector<std::vector<std::uint64_t>> hashes;
  for (const Graph* g : graphs) hashes.push_back(node_hashes(*g));
  const Match m = common_prefix(graphs, hashes, true);
  NEXUS_CHECK(m.prefix.compute_nodes > 0,
              "prefix group: models '{}' and '{}' share no layer after their inputs (expected a "
              "common prefix of identical layers and weights)",
              g0.name(), graphs[1]->name());

  PrefixSplit split;
  split.shared_weight_bytes = m.prefix.shared_weight_bytes;
  const auto& h0 = hashes[0];
  std::unordered_map<std::uint64_t, NodeId> first0;  // hash -> first node of graph 0
  for (const Node& n : g0.nodes()) first0.emplace(h0[n.id], n.id);

  // Boundary values: shared nodes a non-shared node reads, or a member outputs.
  std::vector<NodeId> boundary_nodes;  // in graph 0
  auto need = [&](std::uint64_t h) {
    const NodeId id = first0.at(h);
    if (std::find(boundary_nodes.begin(), boundary_nodes.end(), id) == boundary_nodes.end())
      boundary_nodes.push_back(id);
  };
  for (std::size_t g = 0; g < graphs.size(); ++g) {
    const auto& hg = hashes[g];
    for (const Node& n : graphs[g]->nodes()) {
      if (m.shared.contains(hg[n.id])) continue;
      for (NodeId in : n.inputs)
        if (m.shared.contains(hg[in])) need(hg[in]);
    }
    for (NodeId o : graphs[g]->outputs())
      if (m.shared.contains(hg[o])) need(hg[o]);
  }
  std::sort(boundary_nodes.begin(), boundary_nodes.end());

  // The prefix graph: graph 0's shared nodes, renumbered.
  std::vector<NodeId> new_id(g0.nodes().size(), -1);
  std::vector<Node> nodes;
  std::vector<NodeId> prefix_inputs, prefix_outputs;
  for (NodeId id : m.prefix.nodes[0]) {
    new_id[static_cast<std::size_t>(id)] = static_cast<NodeId>(nodes.size());
    Node n = g0.node(id);
    n.id = new_id[static_cast<std::size_t>(id)];
    for (NodeId& in : n.inputs) in = new_id[static_cast<std::size_t>(in)];
    nodes.push_back(std::move(n));
  }
  for (NodeId in : g0.inputs()) prefix_inputs.push_back(new_id[static_cast<std::size_t>(in)]);
  std::unordered_map<std::uint64_t, int> boundary_index;
  for (NodeId id : boundary_nodes) {
    const Node& n = g0.node(id);
    PrefixValue v;
    v.shape = n.shape;
    if (n.op == OpType::kInput) {
      v.kind = PrefixValue::Kind::kInput;
      v.index = static_cast<int>(std::find(g0.inputs().begin(), g0.inputs().end(), id) -
                                 g0.inputs().begin());
    } else {
      v.kind = PrefixValue::Kind::kPrefixOutput;
      v.index = static_cast<int>(prefix_outputs.size());
      prefix_outputs.push_back(new_id[static_cast<std::size_t>(id)]);
    }
    boundary_index.emplace(h0[id], static_cast<int>(split.boundary.size()));
    split.boundary.push_back(std::move(v));
  }
  split.prefix = Graph::from_nodes(g0.name() + "/prefix", std::move(nodes),
                                   std::move(prefix_inputs), std::move(prefix_outputs));

  // One suffix per member: its non-shared nodes, fed by Input nodes for the boundary values.
  for (std::size_t g = 0; g < graphs.size(); ++g) {
    const Graph& graph = *graphs[g];
    const auto& hg = hashes[g];
    SuffixPart part;
    part.model = graph.name();
    std::vector<NodeId> sid(graph.nodes().size(), -1);
    std::vector<Node> snodes;
    std::vector<NodeId> sinputs, soutputs;
    std::unordered_map<int, NodeId> input_of_boundary;
    auto boundary_input = [&](std::uint64_t h) {
      const int b = boundary_index.at(h);
      auto it = input_of_boundary.find(b);
      if (it != input_of_boundary.end()) return it->second;
      Node in;
      in.id = -1;  // numbered below
      in.name = "prefix/" + g0.node(first0.at(h)).name;
      in.op = OpType::kInput;
      in.shape = split.boundary[static_cast<std::size_t>(b)].shape;
      snodes.push_back(std::move(in));
      const NodeId id = static_cast<NodeId>(snodes.size() - 1);
      input_of_boundary.emplace(b, id);
      sinputs.push_back(id);
      part.inputs.push_back(b);
      return id;
    };
    for (const Node& n : graph.nodes()) {
      if (m.shared.contains(hg[n.id])) continue;
      Node c = n;
      for (NodeId& in : c.inputs)
        in = m.shared.contains(hg[in]) ? boundary_input(hg[in]) : sid[static_cast<std::size_t>(in)];
      snodes.push_back(std::move(c));
      sid[static_cast<std::size_t>(n.id)] = static_cast<NodeId>(snodes.size() - 1);
    }
    for (NodeId o : graph.outputs()) {
      if (m.shared.contains(hg[o])) {
        part.outputs.push_back({true, boundary_index.at(hg[o])});
      } else {
        part.outputs.push_back({false, static_cast<int>(soutputs.size())});
        soutputs.push_back(sid[static_cast<std::size_t>(o)]);
      }
    }
    if (!soutputs.empty()) {
      // Boundary inputs were appended just before their first reader: topological already.
      for (std::size_t i = 0; i < snodes.size(); ++i) snodes[i].id = static_cast<NodeId>(i);
      part.graph = Graph::from_nodes(graph.name() + "/suffix", std::move(snodes),
                                     std::move(sinputs), std::move(soutputs));
    } else {
      part.inputs.clear();
    }
    split.suffixes.push_back(std::move(part));
  }
  return split;
}

}  // namespace nexus::model
