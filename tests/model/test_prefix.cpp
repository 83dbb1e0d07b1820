// Prefix detection (paper §6.3): canonical hashes, the longest common prefix, prefix groups and
// the prefix/suffix split. Expected prefixes are counted by hand from prefix_models.hpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/model/prefix.hpp"
#include "prefix_models.hpp"

using namespace nexus;
using namespace nexus::model;
using namespace prefix_test;
using Catch::Matchers::Contains;

namespace {

std::vector<std::string> names_of(const Graph& g, const std::vector<NodeId>& ids) {
  std::vector<std::string> out;
  for (NodeId id : ids) out.push_back(g.node(id).name);
  return out;
}

// Backbone node names after build(): input, conv1, relu1, conv2, res, relu2, conv3, relu3, gap.
const std::vector<std::string> kBackbone = {"image", "conv1", "relu1", "conv2", "res",
                                            "relu2", "conv3", "relu3", "gap"};
// conv1 [8,3,3,3]+[8], conv2 [8,8,3,3]+[8], conv3 [16,8,3,3]+[16], float32.
constexpr std::size_t kConv12Bytes = (8 * 3 * 9 + 8 + 8 * 8 * 9 + 8) * 4;
constexpr std::size_t kBackboneBytes = kConv12Bytes + (16 * 8 * 9 + 16) * 4;

}  // namespace

TEST_CASE("node hashes ignore names and see weights and attributes", "[model][prefix]") {
  const Graph a = variant("a", 1, 1);
  const Graph renamed = [] {
    GraphBuilder b("other");
    NodeId x = b.input("pixels", Shape{3, 16, 16});
    NodeId c1 = b.relu("r1", b.conv2d("c1", x, seeded({8, 3, 3, 3}, 11), seeded({8}, 12),
                                      same3x3()));
    NodeId c2 = b.conv2d("c2", c1, seeded({8, 8, 3, 3}, 13), seeded({8}, 14), same3x3());
    NodeId r = b.relu("r2", b.add("sum", c2, c1));
    NodeId c3 = b.relu("r3", b.conv2d("c3", r, seeded({16, 8, 3, 3}, 15), seeded({16}, 16),
                                      same3x3(2)));
    NodeId f = b.global_avg_pool("pool", c3);
    NodeId y = b.fully_connected("head", f, seeded({5, 16}, 17), seeded({5}, 18));
    b.output(b.softmax("softmax", y));
    return std::move(b).build();
  }();
  CHECK(node_hashes(a) == node_hashes(renamed));

  // One stride changed: that node and everything after it hash differently.
  const Graph strided = [] {
    GraphBuilder b("s");
    NodeId x = b.input("image", Shape{3, 16, 16});
    NodeId c1 = b.relu("relu1", b.conv2d("conv1", x, seeded({8, 3, 3, 3}, 11), seeded({8}, 12),
                                         same3x3(2)));
    b.output(c1);
    return std::move(b).build();
  }();
  const auto ha = node_hashes(a), hs = node_hashes(strided);
  CHECK(ha[0] == hs[0]);  // the inputs agree
  CHECK(ha[1] != hs[1]);  // conv1 differs by its stride

  // A weight digest sees a single changed bit.
  Tensor w = seeded({4, 4}, 3);
  Tensor w2 = w.clone();
  const std::uint64_t d = tensor_digest(w);
  CHECK(tensor_digest(w2) == d);
  w2.values()[15] = std::nextafter(w2.values()[15], 1.0f);
  CHECK(tensor_digest(w2) != d);
  CHECK(tensor_digest(w.reshape(Shape{16})) != d);  // the shape is part of it
}

TEST_CASE("equal structure with different weights shares nothing", "[model][prefix]") {
  const Graph a = variant("a", 1, 1), b = variant("b", 2, 1);  // same head seed, other backbone
  const std::vector<const Graph*> gs{&a, &b};
  const CommonPrefix cp = longest_common_prefix(gs);
  CHECK(names_of(a, cp.nodes[0]) == std::vector<std::string>{"image"});  // the input only
  CHECK(cp.compute_nodes == 0);
  CHECK(cp.shared_weight_bytes == 0);
  CHECK(find_prefix_groups(gs).empty());
  CHECK_THROWS_WITH(split_prefix(gs), Contains("share no layer") && Contains("'a'"));
}

TEST_CASE("the shared prefix is found whatever its length", "[model][prefix]") {
  const Graph a = variant("a", 1, 1);
  const Graph b = variant("b", 1, 2);                // other head: all but fc and softmax
  const Graph c = variant("c", 1, 3, 5, /*deep*/ 9);  // other conv3 too: up to relu2
  const Graph d = variant("d", 1, 1);                // identical to a: everything

  const std::vector<const Graph*> ab{&a, &b};
  const CommonPrefix p_ab = longest_common_prefix(ab);
  CHECK(names_of(a, p_ab.nodes[0]) == kBackbone);
  CHECK(names_of(b, p_ab.nodes[1]) == kBackbone);
  CHECK(p_ab.compute_nodes == 8);
  CHECK(p_ab.shared_weight_bytes == kBackboneBytes);
  CHECK(p_ab.shared_macs_per_item == 16 * 16 * 8 * 27 + 16 * 16 * 8 * 72 + 8 * 8 * 16 * 72);

  const std::vector<const Graph*> ac{&a, &c};
  const CommonPrefix p_ac = longest_common_prefix(ac);
  CHECK(names_of(a, p_ac.nodes[0]) ==
        std::vector<std::string>{"image", "conv1", "relu1", "conv2", "res", "relu2"});
  CHECK(p_ac.shared_weight_bytes == kConv12Bytes);

  const std::vector<const Graph*> abc{&a, &b, &c};
  CHECK(longest_common_prefix(abc).compute_nodes == 5);  // the shortest of them

  const std::vector<const Graph*> ad{&a, &d};
  CHECK(longest_common_prefix(ad).nodes[0].size() == a.nodes().size());  // identical models
}

TEST_CASE("prefix groups: the longest prefix wins and groups do not shrink", "[model][prefix]") {
  const Graph a = variant("a", 1, 1), b = variant("b", 1, 2);
  const Graph c = variant("c", 1, 3, 5, 9), e = variant("e", 1, 4, 5, 9);
  const Graph lone = variant("lone", 7, 7);
  const std::vector<const Graph*> gs{&a, &c, &lone, &b, &e};
  const auto groups = find_prefix_groups(gs);
  REQUIRE(groups.size() == 2);
  // {a, b} share the whole backbone; {c, e} share it too (conv3 seeded 9); a and c only conv1-2,
  // which would shrink both groups, so the groups stay apart; `lone` shares nothing.
  CHECK(groups[0].members == std::vector<int>{0, 3});
  CHECK(groups[0].prefix.shared_weight_bytes == kBackboneBytes);
  CHECK(groups[1].members == std::vector<int>{1, 4});
  CHECK(groups[1].prefix.shared_weight_bytes == kBackboneBytes);

  // Only a and c: they share conv1-2 and form a group with the shorter prefix.
  const std::vector<const Graph*> ac{&a, &c};
  const auto g2 = find_prefix_groups(ac);
  REQUIRE(g2.size() == 1);
  CHECK(g2[0].prefix.shared_weight_bytes == kConv12Bytes);
  // Unless the prefix must hold more bytes than that.
  CHECK(find_prefix_groups(ac, {.min_shared_bytes = kConv12Bytes + 1}).empty());
}

TEST_CASE("a prefix that is a sliver of its members (a shared input normalisation) forms no group",
          "[model][prefix]") {
  // face-api's landmark, age/gender and expression nets all begin with the same 3-channel
  // normalisation (24 bytes of weights) and share nothing else: grouping them would plan all of
  // them under the tightest SLO and gain nothing. Two such models, with different convs after it.
  auto normalised = [](const std::string& name, std::uint64_t seed) {
    GraphBuilder b(name);
    NodeId x = b.input("image", Shape{3, 16, 16});
    const float sc[3] = {1 / 255.f, 1 / 255.f, 1 / 255.f}, off[3] = {-0.5f, -0.4f, -0.3f};
    x = b.scale_offset("normalize", x, Tensor::from(Shape{3}, sc), Tensor::from(Shape{3}, off));
    b.output(b.relu("relu1", b.conv2d("conv1", x, seeded({8, 3, 3, 3}, seed), seeded({8}, seed + 1),
                                      same3x3())));
    return std::move(b).build();
  };
  const Graph a = normalised("a", 1), b = normalised("b", 2);
  const std::vector<const Graph*> gs{&a, &b};
  const CommonPrefix cp = longest_common_prefix(gs);
  CHECK(cp.compute_nodes == 1);
  CHECK(cp.shared_weight_bytes == 24);
  // 24 of 920 weight bytes and none of the convolution's MACs: under 10% of both.
  CHECK(find_prefix_groups(gs).empty());
  CHECK(find_prefix_groups(gs, {.min_shared_fraction = 0.0}).size() == 1);
}

TEST_CASE("no common prefix: different input shapes form no group", "[model][prefix]") {
  const Graph a = variant("a", 1, 1);
  GraphBuilder bb("wide");
  NodeId x = bb.input("image", Shape{3, 16, 20});
  bb.output(bb.relu("relu1", bb.conv2d("conv1", x, seeded({8, 3, 3, 3}, 11), seeded({8}, 12),
                                       same3x3())));
  const Graph wide = std::move(bb).build();
  const std::vector<const Graph*> gs{&a, &wide};
  CHECK(longest_common_prefix(gs).nodes[0].empty());
  CHECK(find_prefix_groups(gs).empty());
  CHECK_THROWS_WITH(split_prefix(gs), Contains("mismatched input shapes") &&
                                          Contains("'wide'") && Contains("[3, 16, 20]"));
}

TEST_CASE("split_prefix cuts one prefix and one suffix per member", "[model][prefix]") {
  const Graph a = variant("a", 1, 1), b = variant("b", 1, 2);
  const Graph t = two_output_variant("t", 1, 5);
  const std::vector<const Graph*> gs{&a, &b, &t};
  const PrefixSplit s = split_prefix(gs);
  CHECK(s.prefix.nodes().size() == kBackbone.size());
  CHECK(s.prefix.weights_bytes() == kBackboneBytes);
  CHECK(s.shared_weight_bytes == kBackboneBytes);
  REQUIRE(s.prefix.outputs().size() == 1);
  CHECK(s.prefix.node(s.prefix.outputs()[0]).name == "gap");
  REQUIRE(s.boundary.size() == 1);
  CHECK(s.boundary[0].kind == PrefixValue::Kind::kPrefixOutput);
  CHECK(s.boundary[0].shape == Shape{16});
  // The prefix shares the weight storage of the first member (loaded once, not copied).
  CHECK(s.prefix.node(s.prefix.find("conv1")).weight.raw_data() ==
        a.node(a.find("conv1")).weight.raw_data());

  REQUIRE(s.suffixes.size() == 3);
  const SuffixPart& sa = s.suffixes[0];
  CHECK(sa.model == "a");
  REQUIRE(sa.graph);
  CHECK(names_of(*sa.graph, {0, 1, 2}) == std::vector<std::string>{"prefix/gap", "fc", "prob"});
  CHECK(sa.inputs == std::vector<int>{0});
  REQUIRE(sa.outputs.size() == 1);
  CHECK(!sa.outputs[0].from_prefix);
  CHECK(sa.graph->weights_bytes() == (5 * 16 + 5) * 4);

  const SuffixPart& st = s.suffixes[2];
  REQUIRE(st.outputs.size() == 2);
  CHECK(st.outputs[0].from_prefix);  // the features are a prefix value
  CHECK(st.outputs[0].index == 0);
  CHECK(!st.outputs[1].from_prefix);
  CHECK(st.graph->nodes().size() == 4);  // prefix/gap, h/fc1, h/relu, h/fc2
}

TEST_CASE("Graph::from_nodes rejects nodes out of order", "[model][prefix]") {
  const Graph a = variant("a", 1, 1);
  std::vector<Node> nodes = a.nodes();
  std::swap(nodes[1], nodes[2]);
  CHECK_THROWS_WITH(Graph::from_nodes("bad", nodes, {0}, {1}), Contains("'bad'"));
  CHECK_THROWS_WITH(Graph::from_nodes("bad", a.nodes(), {1}, {2}),
                    Contains("not an Input node"));
}
