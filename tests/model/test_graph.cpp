// Graph IR: shape inference (TF padding rules), checks and their messages, folding, pruning.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/model/graph.hpp"

using namespace nexus;
using namespace nexus::model;
using Catch::Matchers::Contains;

namespace {

Tensor filled(Shape s, float v) {
  Tensor t(std::move(s));
  for (float& x : t.values()) x = v;
  return t;
}

Tensor seq(Shape s, float start = 1.0f) {
  Tensor t(std::move(s));
  float v = start;
  for (float& x : t.values()) x = v++;
  return t;
}

Conv2DAttrs conv_attrs(int stride, Padding p, int dilation = 1, int groups = 1) {
  Conv2DAttrs a;
  a.stride_h = a.stride_w = stride;
  a.dilation_h = a.dilation_w = dilation;
  a.groups = groups;
  a.padding = p;
  return a;
}

}  // namespace

TEST_CASE("op_name names every op", "[model]") {
  CHECK(std::string(op_name(OpType::kConv2D)) == "Conv2D");
  CHECK(std::string(op_name(OpType::kResizeBilinear)) == "ResizeBilinear");
  CHECK(std::string(op_name(OpType::kConstant)) == "Constant");
}

TEST_CASE("Conv2D SAME padding follows TensorFlow, extra pixel bottom/right", "[model]") {
  GraphBuilder b("g");
  // Even input 224, k3 s2: out 112, total pad (111*2 + 3 - 224) = 1 -> top 0, bottom 1.
  auto x = b.input("x", Shape{3, 224, 224});
  auto c = b.conv2d("c", x, filled({8, 3, 3, 3}, 0.1f), std::nullopt, conv_attrs(2, Padding::kSame));
  CHECK(b.shape(c) == Shape({8, 112, 112}));
  CHECK(b.node(c).conv.pads == Pads{0, 1, 0, 1});
  // Odd input 7, k3 s2: out 4, total pad 3*2 + 3 - 7 = 2 -> 1 and 1.
  auto y = b.input("y", Shape{2, 7, 7});
  auto d = b.conv2d("d", y, filled({4, 2, 3, 3}, 0.1f), std::nullopt, conv_attrs(2, Padding::kSame));
  CHECK(b.shape(d) == Shape({4, 4, 4}));
  CHECK(b.node(d).conv.pads == Pads{1, 1, 1, 1});
  // Even kernel 4, s1, input 5: total 3 -> top 1, bottom 2.
  auto e = b.conv2d("e", y, filled({1, 2, 4, 4}, 0.1f), std::nullopt, conv_attrs(1, Padding::kSame));
  CHECK(b.shape(e) == Shape({1, 7, 7}));
  CHECK(b.node(e).conv.pads == Pads{1, 2, 1, 2});
  // 1x1 s2 on 6: out 3, no pad.
  auto z = b.input("z", Shape{1, 6, 6});
  auto f = b.conv2d("f", z, filled({1, 1, 1, 1}, 1.0f), std::nullopt, conv_attrs(2, Padding::kSame));
  CHECK(b.shape(f) == Shape({1, 3, 3}));
  CHECK(b.node(f).conv.pads == Pads{0, 0, 0, 0});
}

TEST_CASE("Conv2D VALID, explicit pads, dilation, groups", "[model]") {
  GraphBuilder b("g");
  auto x = b.input("x", Shape{4, 7, 10});
  // VALID k3 s2: (7-3)/2+1 = 3, (10-3)/2+1 = 4.
  auto v = b.conv2d("v", x, filled({2, 4, 3, 3}, 1.f), std::nullopt, conv_attrs(2, Padding::kValid));
  CHECK(b.shape(v) == Shape({2, 3, 4}));
  // Dilation 2, k3 -> effective 5. VALID: 7-5+1 = 3, 10-5+1 = 6. SAME: total 4 -> 2/2.
  auto dv = b.conv2d("dv", x, filled({2, 4, 3, 3}, 1.f), std::nullopt,
                     conv_attrs(1, Padding::kValid, 2));
  CHECK(b.shape(dv) == Shape({2, 3, 6}));
  auto ds = b.conv2d("ds", x, filled({2, 4, 3, 3}, 1.f), std::nullopt,
                     conv_attrs(1, Padding::kSame, 2));
  CHECK(b.shape(ds) == Shape({2, 7, 10}));
  CHECK(b.node(ds).conv.pads == Pads{2, 2, 2, 2});
  // Explicit pads: (7 + 1 + 2 - 3)/1 + 1 = 8, (10 + 0 + 0 - 3)/1 + 1 = 8.
  Conv2DAttrs ea = conv_attrs(1, Padding::kExplicit);
  ea.pads = Pads{1, 2, 0, 0};
  auto ex = b.conv2d("ex", x, filled({2, 4, 3, 3}, 1.f), std::nullopt, ea);
  CHECK(b.shape(ex) == Shape({2, 8, 8}));
  // Groups 2: weight [6, 2, 1, 1]; depthwise: groups 4, weight [8, 1, 3, 3] (multiplier 2).
  auto gr = b.conv2d("gr", x, filled({6, 2, 1, 1}, 1.f), std::nullopt,
                     conv_attrs(1, Padding::kSame, 1, 2));
  CHECK(b.shape(gr) == Shape({6, 7, 10}));
  auto dw = b.conv2d("dw", x, filled({8, 1, 3, 3}, 1.f), std::nullopt,
                     conv_attrs(2, Padding::kSame, 1, 4));
  CHECK(b.shape(dw) == Shape({8, 4, 5}));
  b.output(dw);
  auto g = std::move(b).build();
  // Only what feeds dw survives (plus the input).
  REQUIRE(g.nodes().size() == 2);
  CHECK(g.node(1).name == "dw");
  // MACs: 8 * 4 * 5 outputs x (1 * 3 * 3) = 1440.
  CHECK(g.macs_per_item() == 8 * 4 * 5 * 9);
  CHECK(g.weights_bytes() == 8 * 9 * 4);
}

TEST_CASE("Conv2D shape errors name the node and shapes", "[model]") {
  GraphBuilder b("g");
  auto x = b.input("x", Shape{3, 8, 8});
  CHECK_THROWS_WITH(b.conv2d("bad_c", x, filled({4, 2, 3, 3}, 1.f), std::nullopt,
                             conv_attrs(1, Padding::kSame)),
                    Contains("bad_c") && Contains("[4, 2, 3, 3]") && Contains("[3, 8, 8]"));
  CHECK_THROWS_WITH(b.conv2d("bad_g", x, filled({4, 1, 3, 3}, 1.f), std::nullopt,
                             conv_attrs(1, Padding::kSame, 1, 2)),
                    Contains("bad_g") && Contains("groups 2"));
  CHECK_THROWS_WITH(b.conv2d("bad_bias", x, filled({4, 3, 3, 3}, 1.f), filled({5}, 0.f),
                             conv_attrs(1, Padding::kSame)),
                    Contains("bad_bias") && Contains("[5]") && Contains("[4]"));
  CHECK_THROWS_WITH(b.conv2d("too_big", x, filled({4, 3, 9, 9}, 1.f), std::nullopt,
                             conv_attrs(1, Padding::kValid)),
                    Contains("too_big") && Contains("VALID"));
  auto f = b.flatten("flat", x);
  CHECK_THROWS_WITH(b.conv2d("on_flat", f, filled({4, 3, 3, 3}, 1.f), std::nullopt,
                             conv_attrs(1, Padding::kSame)),
                    Contains("on_flat") && Contains("[192]"));
  CHECK_THROWS_WITH(b.fully_connected("fc", x, filled({10, 100}, 1.f), std::nullopt),
                    Contains("fc") && Contains("[10, 100]") && Contains("192"));
}

TEST_CASE("Pools, global pool, FC, flatten, reshape, resize shapes", "[model]") {
  GraphBuilder b("g");
  auto x = b.input("x", Shape{16, 112, 112});
  Pool2DAttrs p;
  p.kernel_h = p.kernel_w = 3;
  p.stride_h = p.stride_w = 2;
  p.padding = Padding::kSame;
  auto mp = b.max_pool("mp", x, p);
  CHECK(b.shape(mp) == Shape({16, 56, 56}));
  CHECK(b.node(mp).pool.pads == Pads{0, 1, 0, 1});
  p.padding = Padding::kValid;
  auto ap = b.avg_pool("ap", x, p);
  CHECK(b.shape(ap) == Shape({16, 55, 55}));
  auto gp = b.global_avg_pool("gp", mp);
  CHECK(b.shape(gp) == Shape({16}));
  auto fc = b.fully_connected("fc", mp, filled({10, 16 * 56 * 56}, 0.f), filled({10}, 0.f));
  CHECK(b.shape(fc) == Shape({10}));
  auto fl = b.flatten("fl", ap);
  CHECK(b.shape(fl) == Shape({16 * 55 * 55}));
  auto rs = b.reshape("rs", gp, Shape{4, 2, 2});
  CHECK(b.shape(rs) == Shape({4, 2, 2}));
  CHECK_THROWS_WITH(b.reshape("rs_bad", gp, Shape{5, 3}), Contains("rs_bad") && Contains("[5, 3]"));
  ResizeAttrs r;
  r.out_h = 7;
  r.out_w = 9;
  auto rz = b.resize_bilinear("rz", x, r);
  CHECK(b.shape(rz) == Shape({16, 7, 9}));
  auto sm = b.softmax("sm", fc);
  CHECK(b.node(sm).axis == 0);
}

TEST_CASE("Add/Mul broadcast, concat, constant", "[model]") {
  GraphBuilder b("g");
  auto x = b.input("x", Shape{4, 5, 6});
  auto y = b.input("y", Shape{2, 5, 6});
  auto c = b.constant("c", filled({4}, 1.f));
  auto c3 = b.constant("c3", filled({4, 1, 1}, 1.f));
  CHECK(b.shape(b.add("a1", x, x)) == Shape({4, 5, 6}));
  CHECK(b.shape(b.add("a2", x, c)) == Shape({4, 5, 6}));
  CHECK(b.shape(b.mul("m1", x, c3)) == Shape({4, 5, 6}));
  CHECK_THROWS_WITH(b.add("bad_add", x, y),
                    Contains("bad_add") && Contains("[4, 5, 6]") && Contains("[2, 5, 6]"));
  auto cat = b.concat("cat", {x, y, x}, 0);
  CHECK(b.shape(cat) == Shape({10, 5, 6}));
  auto cat2 = b.concat("cat2", {x, x}, -1);
  CHECK(b.shape(cat2) == Shape({4, 5, 12}));
  CHECK_THROWS_WITH(b.concat("bad_cat", {x, y}, 1), Contains("bad_cat") && Contains("[2, 5, 6]"));
  CHECK_THROWS_WITH(b.softmax("bad_sm", x, 3), Contains("bad_sm") && Contains("axis 3"));
}

TEST_CASE("build folds BatchNorm and ScaleOffset into a sole-consumer conv", "[model]") {
  GraphBuilder b("g");
  auto x = b.input("x", Shape{1, 4, 4});
  // Weight [2, 1, 1, 1] = {2, 3}, bias {1, -1}.
  auto c = b.conv2d("c", x, Tensor::from(Shape{2, 1, 1, 1}, std::vector<float>{2.f, 3.f}),
                    Tensor::from(Shape{2}, std::vector<float>{1.f, -1.f}),
                    conv_attrs(1, Padding::kSame));
  // BN: mean {1, 2}, var {3, 15}, eps 1 -> 1/sqrt(4)=0.5, 1/sqrt(16)=0.25; scale {2, 4}; offset {0, 1}.
  // k = {1, 1}; folded w = {2, 3}; folded bias = (b - mean)*k + offset = {0, -3 + 1} = {0, -2}.
  auto bn = b.batch_norm("bn", c, Tensor::from(Shape{2}, std::vector<float>{1.f, 2.f}),
                         Tensor::from(Shape{2}, std::vector<float>{3.f, 15.f}),
                         Tensor::from(Shape{2}, std::vector<float>{2.f, 4.f}),
                         Tensor::from(Shape{2}, std::vector<float>{0.f, 1.f}), 1.0f);
  // Then ScaleOffset s {10, 100}, o {1, 2}: w = {20, 300}, bias = {1, -198}.
  auto so = b.scale_offset("so", bn, Tensor::from(Shape{2}, std::vector<float>{10.f, 100.f}),
                           Tensor::from(Shape{2}, std::vector<float>{1.f, 2.f}));
  auto r = b.relu("r", so);
  b.output(r);
  const Tensor original_w = b.node(c).weight;
  auto g = std::move(b).build();
  REQUIRE(g.nodes().size() == 3);  // x, c (folded), r
  const Node& conv = g.node(1);
  CHECK(conv.op == OpType::kConv2D);
  CHECK(g.node(2).inputs == std::vector<NodeId>{1});
  CHECK(conv.weight.values()[0] == Approx(20.f));
  CHECK(conv.weight.values()[1] == Approx(300.f));
  CHECK(conv.bias.values()[0] == Approx(1.f));
  CHECK(conv.bias.values()[1] == Approx(-198.f));
  // The caller's weight tensor is untouched.
  CHECK(original_w.values()[0] == 2.f);
}

TEST_CASE("build does not fold when the conv output has another consumer", "[model]") {
  GraphBuilder b("g");
  auto x = b.input("x", Shape{1, 4, 4});
  auto c = b.conv2d("c", x, filled({2, 1, 1, 1}, 1.f), std::nullopt, conv_attrs(1, Padding::kSame));
  auto so = b.scale_offset("so", c, filled({2}, 2.f), filled({2}, 0.f));
  auto a = b.add("a", c, so);
  b.output(a);
  auto g = std::move(b).build();
  CHECK(g.nodes().size() == 4);
  CHECK(g.node(2).op == OpType::kScaleOffset);
  // Also: a conv that is itself a graph output is not folded.
  GraphBuilder b2("g2");
  auto x2 = b2.input("x", Shape{1, 4, 4});
  auto c2 = b2.conv2d("c", x2, filled({2, 1, 1, 1}, 1.f), std::nullopt, conv_attrs(1, Padding::kSame));
  auto so2 = b2.scale_offset("so", c2, filled({2}, 2.f), filled({2}, 0.f));
  b2.output(c2);
  b2.output(so2);
  auto g2 = std::move(b2).build();
  CHECK(g2.nodes().size() == 3);
  CHECK(g2.outputs() == std::vector<NodeId>{1, 2});
}

TEST_CASE("build requires inputs and outputs; finds nodes by name", "[model]") {
  GraphBuilder b("empty");
  CHECK_THROWS_WITH(std::move(b).build(), Contains("empty") && Contains("no input"));
  GraphBuilder b2("noout");
  b2.input("x", Shape{3});
  CHECK_THROWS_WITH(std::move(b2).build(), Contains("no output"));
  GraphBuilder b3("ok");
  auto x = b3.input("x", Shape{3});
  b3.output(b3.sigmoid("s", x));
  auto g = std::move(b3).build();
  CHECK(g.find("s") == 1);
  CHECK(g.find("nope") == -1);
  CHECK(g.name() == "ok");
}
