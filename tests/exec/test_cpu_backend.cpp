// CpuBackend: every op against hand-computed values or a naive direct reference, batch paths,
// memory planning, and input checking.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/graph.hpp"

using namespace nexus;
using namespace nexus::model;
using Catch::Matchers::Contains;

namespace {

Tensor vals(Shape s, std::vector<float> v) { return Tensor::from(std::move(s), v); }

Tensor iota(Shape s, float start = 1.0f, float step = 1.0f) {
  Tensor t(std::move(s));
  float v = start;
  for (float& x : t.values()) {
    x = v;
    v += step;
  }
  return t;
}

Tensor random(Shape s, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  Tensor t(std::move(s));
  for (float& x : t.values()) x = d(rng);
  return t;
}

Tensor ones(Shape s) {
  Tensor t(std::move(s));
  for (float& x : t.values()) x = 1.0f;
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

Tensor run1(const Graph& g, const Tensor& x, int threads = 2) {
  CpuBackend be(CpuBackendOptions{threads});
  be.load(g, static_cast<int>(x.shape()[0]));
  return be.run_one(x);
}

void check_values(const Tensor& t, const std::vector<float>& expected, float eps = 1e-5f) {
  REQUIRE(static_cast<std::size_t>(t.numel()) == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("element " << i);
    CHECK(t.values()[i] == Approx(expected[i]).margin(eps));
  }
}

// Single-conv graph on a [C, H, W] input.
Graph conv_graph(Shape in, Tensor w, std::optional<Tensor> b, Conv2DAttrs a) {
  GraphBuilder gb("conv");
  auto x = gb.input("x", std::move(in));
  gb.output(gb.conv2d("c", x, std::move(w), std::move(b), a));
  return std::move(gb).build();
}

// Direct 7-loop convolution: the textbook definition, zero padding by the node's resolved pads.
std::vector<float> naive_conv(const Graph& g, const Tensor& x) {
  const Node& c = g.node(1);
  const Shape& in = g.node(0).shape;
  const auto& a = c.conv;
  const auto& ws = c.weight.shape();
  const std::int64_t n = x.shape()[0], C = in[0], H = in[1], W = in[2];
  const std::int64_t O = c.shape[0], OH = c.shape[1], OW = c.shape[2];
  const std::int64_t cg = C / a.groups, og = O / a.groups;
  std::vector<float> out(static_cast<std::size_t>(n * O * OH * OW));
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t o = 0; o < O; ++o)
      for (std::int64_t oy = 0; oy < OH; ++oy)
        for (std::int64_t ox = 0; ox < OW; ++ox) {
          double acc = c.bias.empty() ? 0.0 : c.bias.values()[static_cast<std::size_t>(o)];
          const std::int64_t grp = o / og;
          for (std::int64_t ci = 0; ci < cg; ++ci)
            for (std::int64_t ky = 0; ky < ws[2]; ++ky)
              for (std::int64_t kx = 0; kx < ws[3]; ++kx) {
                const std::int64_t iy = oy * a.stride_h - a.pads.top + ky * a.dilation_h;
                const std::int64_t ix = ox * a.stride_w - a.pads.left + kx * a.dilation_w;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                const float xv = x.values()[static_cast<std::size_t>(
                    ((b * C + grp * cg + ci) * H + iy) * W + ix)];
                const float wv =
                    c.weight.values()[static_cast<std::size_t>(((o * cg + ci) * ws[2] + ky) * ws[3] + kx)];
                acc += static_cast<double>(xv) * wv;
              }
          out[static_cast<std::size_t>(((b * O + o) * OH + oy) * OW + ox)] = static_cast<float>(acc);
        }
  return out;
}

}  // namespace

TEST_CASE("CpuBackend device name and threads", "[exec]") {
  CpuBackend be(CpuBackendOptions{2});
  CHECK(be.device_name() == "cpu");
  CHECK(be.threads() == 2);
  const std::string isa = exec::cpu_kernel_isa();
  CHECK((isa == "avx512+fma" || isa == "avx2+fma" || isa == "baseline"));
  CHECK((be.kernel_isa() == "avx512+fma" || be.kernel_isa() == "avx2+fma" ||
         be.kernel_isa() == "baseline"));
  CHECK_THROWS_WITH(CpuBackend(CpuBackendOptions{.kernels = "sse"}), Contains("expected ''"));
  CHECK_THROWS_WITH(be.run({}), Contains("no model loaded"));
}

TEST_CASE("Conv2D 3x3 SAME stride 1 against hand values", "[exec]") {
  auto g = conv_graph(Shape{1, 3, 3}, ones({1, 1, 3, 3}), std::nullopt, conv_attrs(1, Padding::kSame));
  auto y = run1(g, iota({1, 1, 3, 3}));
  check_values(y, {12, 21, 16, 27, 45, 33, 24, 39, 28});
}

TEST_CASE("Conv2D SAME stride 2: TF puts the extra pad pixel bottom/right", "[exec]") {
  SECTION("even input 4x4: pads top 0, bottom 1") {
    auto g = conv_graph(Shape{1, 4, 4}, ones({1, 1, 3, 3}), std::nullopt, conv_attrs(2, Padding::kSame));
    // out(0,0) = rows 0-2 x cols 0-2 of 1..16; out(0,1) = cols 2-3 (col 4 is padding); ...
    check_values(run1(g, iota({1, 1, 4, 4})), {54, 45, 72, 54});
  }
  SECTION("odd input 5x5: pads 1 and 1") {
    auto g = conv_graph(Shape{1, 5, 5}, ones({1, 1, 3, 3}), std::nullopt, conv_attrs(2, Padding::kSame));
    auto y = run1(g, iota({1, 1, 5, 5}));
    REQUIRE(y.shape() == Shape({1, 1, 3, 3}));
    CHECK(y.values()[0] == Approx(1 + 2 + 6 + 7));
    CHECK(y.values()[4] == Approx(7 + 8 + 9 + 12 + 13 + 14 + 17 + 18 + 19));
    CHECK(y.values()[8] == Approx(19 + 20 + 24 + 25));
  }
}

TEST_CASE("Conv2D dilation against hand values", "[exec]") {
  auto valid = conv_graph(Shape{1, 5, 5}, ones({1, 1, 3, 3}), std::nullopt,
                          conv_attrs(1, Padding::kValid, 2));
  check_values(run1(valid, iota({1, 1, 5, 5})), {1 + 3 + 5 + 11 + 13 + 15 + 21 + 23 + 25});
  auto same = conv_graph(Shape{1, 5, 5}, ones({1, 1, 3, 3}), std::nullopt,
                         conv_attrs(1, Padding::kSame, 2));
  auto y = run1(same, iota({1, 1, 5, 5}));
  CHECK(y.values()[0] == Approx(1 + 3 + 11 + 13));           // taps (0,0) (0,2) (2,0) (2,2)
  CHECK(y.values()[12] == Approx(1 + 3 + 5 + 11 + 13 + 15 + 21 + 23 + 25));  // centre
}

TEST_CASE("Grouped and depthwise conv against hand values", "[exec]") {
  // groups 2, 4 -> 2 channels, 1x1: out0 = 1*x0 + 2*x1, out1 = 3*x2 + 4*x3; bias {10, 20}.
  auto g = conv_graph(Shape{4, 1, 2}, vals({2, 2, 1, 1}, {1, 2, 3, 4}), vals({2}, {10, 20}),
                      conv_attrs(1, Padding::kSame, 1, 2));
  auto y = run1(g, vals({1, 4, 1, 2}, {1, 2, 3, 4, 5, 6, 7, 8}));
  check_values(y, {10 + 1 + 6, 10 + 2 + 8, 20 + 15 + 28, 20 + 18 + 32});
  // Depthwise, multiplier 2: channel c feeds outputs 2c and 2c+1.
  auto d = conv_graph(Shape{2, 1, 2}, vals({4, 1, 1, 1}, {1, -1, 2, 3}), std::nullopt,
                      conv_attrs(1, Padding::kSame, 1, 2));
  check_values(run1(d, vals({1, 2, 1, 2}, {1, 2, 3, 4})), {1, 2, -1, -2, 6, 8, 9, 12});
}

TEST_CASE("Conv2D sweep matches the direct definition", "[exec]") {
  std::mt19937 rng(7);
  struct Case {
    int c, h, w, o, k, stride, dil, groups;
    Padding pad;
  };
  const std::vector<Case> cases = {
      {3, 9, 8, 5, 3, 1, 1, 1, Padding::kSame},   {3, 9, 8, 5, 3, 2, 1, 1, Padding::kSame},
      {4, 10, 11, 6, 3, 2, 1, 2, Padding::kSame}, {4, 7, 7, 8, 1, 1, 1, 1, Padding::kValid},
      {4, 7, 7, 8, 1, 2, 1, 1, Padding::kSame},   {5, 12, 9, 5, 3, 1, 1, 5, Padding::kSame},
      {5, 12, 9, 5, 3, 2, 1, 5, Padding::kSame},  {3, 11, 13, 6, 3, 1, 2, 3, Padding::kSame},
      {2, 8, 8, 4, 5, 2, 1, 1, Padding::kValid},  {3, 13, 12, 4, 3, 1, 3, 1, Padding::kSame},
      {2, 8, 8, 6, 3, 3, 1, 2, Padding::kSame},   {8, 40, 40, 16, 3, 1, 1, 1, Padding::kSame},
      {6, 9, 9, 6, 3, 2, 2, 6, Padding::kSame},   {3, 20, 18, 12, 7, 2, 1, 1, Padding::kSame},
      // depthwise on tiny widths (no interior), 5-wide kernels, stride 3, multiplier 2
      {4, 3, 1, 4, 3, 1, 1, 4, Padding::kSame},   {4, 2, 2, 8, 3, 2, 1, 4, Padding::kSame},
      {3, 9, 10, 3, 5, 1, 1, 3, Padding::kSame},  {3, 9, 10, 3, 3, 3, 1, 3, Padding::kSame},
      {3, 11, 12, 6, 3, 2, 1, 3, Padding::kValid}, {2, 16, 16, 4, 5, 2, 2, 2, Padding::kSame},
  };
  for (const auto& cs : cases) {
    for (bool bias : {false, true}) {
      for (int batch : {1, 3}) {
        INFO("c" << cs.c << " h" << cs.h << " w" << cs.w << " o" << cs.o << " k" << cs.k << " s"
                 << cs.stride << " d" << cs.dil << " g" << cs.groups << " bias " << bias
                 << " batch " << batch);
        auto g = conv_graph(Shape{cs.c, cs.h, cs.w},
                            random({cs.o, cs.c / cs.groups, cs.k, cs.k}, rng),
                            bias ? std::optional<Tensor>(random({cs.o}, rng)) : std::nullopt,
                            conv_attrs(cs.stride, cs.pad, cs.dil, cs.groups));
        const Tensor x = random({batch, cs.c, cs.h, cs.w}, rng);
        check_values(run1(g, x), naive_conv(g, x), 1e-4f);
      }
    }
  }
}

TEST_CASE("Conv2D explicit pads", "[exec]") {
  Conv2DAttrs a = conv_attrs(1, Padding::kExplicit);
  a.pads = Pads{1, 0, 0, 2};
  auto g = conv_graph(Shape{1, 2, 2}, ones({1, 1, 2, 2}), std::nullopt, a);
  // Padded input rows: [0 0 0 0], [1 2 0 0], [3 4 0 0]; 2x2 windows -> 2x3 outputs.
  check_values(run1(g, iota({1, 1, 2, 2})), {3, 2, 0, 10, 6, 0});
}

TEST_CASE("Pools: AvgPool excludes padding, MaxPool ignores it", "[exec]") {
  GraphBuilder gb("pool");
  auto x = gb.input("x", Shape{1, 3, 3});
  Pool2DAttrs p;
  p.kernel_h = p.kernel_w = 3;
  p.stride_h = p.stride_w = 1;
  p.padding = Padding::kSame;
  gb.output(gb.avg_pool("avg", x, p));
  gb.output(gb.max_pool("max", x, p));
  auto g = std::move(gb).build();
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, 1);
  auto out = be.run({iota({1, 1, 3, 3}, -1.0f, -1.0f)});  // -1 .. -9
  // avg(0,0) = (-1-2-4-5)/4 = -3; avg(0,1) = -(1+2+3+4+5+6)/6 = -3.5; avg(1,1) = -5.
  CHECK(out[0].values()[0] == Approx(-3.0f));
  CHECK(out[0].values()[1] == Approx(-3.5f));
  CHECK(out[0].values()[4] == Approx(-5.0f));
  // max over real pixels only: max(-1, -2, -4, -5) = -1 (padding would have given 0).
  CHECK(out[1].values()[0] == Approx(-1.0f));
  CHECK(out[1].values()[8] == Approx(-5.0f));

  GraphBuilder gb2("pool2");
  auto x2 = gb2.input("x", Shape{1, 4, 4});
  Pool2DAttrs q;
  q.kernel_h = q.kernel_w = 3;
  q.stride_h = q.stride_w = 2;
  q.padding = Padding::kSame;  // pads bottom/right 1
  gb2.output(gb2.max_pool("max", x2, q));
  gb2.output(gb2.avg_pool("avg", x2, q));
  Pool2DAttrs v;  // 2x2 s2 VALID
  gb2.output(gb2.avg_pool("avg_valid", x2, v));
  auto g2 = std::move(gb2).build();
  CpuBackend be2(CpuBackendOptions{2});
  be2.load(g2, 1);
  auto o2 = be2.run({iota({1, 1, 4, 4})});
  check_values(o2[0], {11, 12, 15, 16});
  check_values(o2[1], {54.0f / 9, 45.0f / 6, 72.0f / 6, 54.0f / 4});
  check_values(o2[2], {3.5f, 5.5f, 11.5f, 13.5f});
}

TEST_CASE("ResizeBilinear: align_corners, half_pixel_centers and legacy as TensorFlow", "[exec]") {
  // Input f(r, c) = 2r + c on 2x2; bilinear is exact for it, so out = 2*ey + ex with the
  // effective source coordinates TF computes (clamped to [0, 1]).
  auto run_resize = [](bool align, bool half) {
    GraphBuilder gb("rz");
    auto x = gb.input("x", Shape{1, 2, 2});
    ResizeAttrs r;
    r.out_h = r.out_w = 4;
    r.align_corners = align;
    r.half_pixel_centers = half;
    gb.output(gb.resize_bilinear("r", x, r));
    return run1(std::move(gb).build(), vals({1, 1, 2, 2}, {0, 1, 2, 3}));
  };
  auto expect = [](std::vector<float> e) {
    std::vector<float> out;
    for (float y : e)
      for (float x : e) out.push_back(2 * y + x);
    return out;
  };
  check_values(run_resize(true, false), expect({0, 1.0f / 3, 2.0f / 3, 1}));  // scale (2-1)/(4-1)
  check_values(run_resize(false, true), expect({0, 0.25f, 0.75f, 1}));         // (i+.5)/2-.5
  check_values(run_resize(false, false), expect({0, 0.5f, 1, 1}));             // i/2
}

TEST_CASE("BatchNorm folded into a conv equals the unfolded result", "[exec]") {
  std::mt19937 rng(3);
  const Tensor w = random({4, 3, 3, 3}, rng), b = random({4}, rng);
  const Tensor mean = random({4}, rng), scale = random({4}, rng), offset = random({4}, rng);
  Tensor var = random({4}, rng);
  for (float& v : var.values()) v = v * v + 0.1f;
  auto make = [&](bool keep_conv) {
    GraphBuilder gb("bn");
    auto x = gb.input("x", Shape{3, 6, 6});
    auto c = gb.conv2d("c", x, w, b, conv_attrs(2, Padding::kSame));
    gb.output(gb.batch_norm("bn", c, mean, var, scale, offset, 1e-3f));
    if (keep_conv) gb.output(c);  // a second consumer: no folding
    return std::move(gb).build();
  };
  const Graph folded = make(false), unfolded = make(true);
  REQUIRE(folded.nodes().size() == 2);
  REQUIRE(unfolded.nodes().size() == 3);
  const Tensor x = random({2, 3, 6, 6}, rng);
  CpuBackend a(CpuBackendOptions{2}), u(CpuBackendOptions{2});
  a.load(folded, 2);
  u.load(unfolded, 2);
  const Tensor yf = a.run_one(x);
  const auto yu = u.run({x});
  // The unfolded BN output by hand from the conv output, and the folded one, agree.
  const std::int64_t plane = 3 * 3;
  for (std::int64_t i = 0; i < yf.numel(); ++i) {
    const auto ch = static_cast<std::size_t>((i / plane) % 4);
    const float conv = yu[1].values()[static_cast<std::size_t>(i)];
    const float hand = (conv - mean.values()[ch]) / std::sqrt(var.values()[ch] + 1e-3f) *
                           scale.values()[ch] + offset.values()[ch];
    CHECK(yu[0].values()[static_cast<std::size_t>(i)] == Approx(hand).margin(1e-5));
    CHECK(yf.values()[static_cast<std::size_t>(i)] == Approx(hand).margin(1e-4));
  }
}

TEST_CASE("FullyConnected with fused ReLU, softmax, global pool, flatten/reshape", "[exec]") {
  GraphBuilder gb("fc");
  auto x = gb.input("x", Shape{3});
  auto fc = gb.fully_connected("fc", x, vals({2, 3}, {1, 0, -1, 2, 1, 0}), vals({2}, {0.5f, -1}));
  gb.output(gb.relu("r", fc));
  auto fc2 = gb.fully_connected("fc2", x, vals({2, 3}, {1, 0, -1, 2, 1, 0}), vals({2}, {0.5f, -1}));
  gb.output(fc2);
  gb.output(gb.softmax("sm", x));
  auto g = std::move(gb).build();
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, 2);
  auto out = be.run({vals({2, 3}, {1, 2, 3, 3, 2, 1})});
  // fc: [1 - 3 + .5, 2 + 2 - 1] = [-1.5, 3]; item 2: [3 - 1 + .5, 6 + 2 - 1] = [2.5, 7].
  check_values(out[0], {0, 3, 2.5f, 7});
  check_values(out[1], {-1.5f, 3, 2.5f, 7});
  check_values(out[2], {0.09003057f, 0.24472847f, 0.66524096f, 0.66524096f, 0.24472847f,
                        0.09003057f});

  GraphBuilder gb2("gap");
  auto x2 = gb2.input("x", Shape{2, 2, 2});
  auto gp = gb2.global_avg_pool("gap", x2);
  gb2.output(gp);
  auto fl = gb2.flatten("fl", x2);
  auto rs = gb2.reshape("rs", fl, Shape{4, 2});
  gb2.output(gb2.softmax("sm0", rs, 0));
  auto g2 = std::move(gb2).build();
  CpuBackend be2(CpuBackendOptions{2});
  be2.load(g2, 1);
  auto o2 = be2.run({iota({1, 2, 2, 2})});
  check_values(o2[0], {2.5f, 6.5f});
  // softmax over axis 0 of [[1,2],[3,4],[5,6],[7,8]]: columns e^(v - 7) / sum.
  const double s = std::exp(-6.0) + std::exp(-4.0) + std::exp(-2.0) + 1.0;
  check_values(o2[1], {float(std::exp(-6.0) / s), float(std::exp(-6.0) / s),
                       float(std::exp(-4.0) / s), float(std::exp(-4.0) / s),
                       float(std::exp(-2.0) / s), float(std::exp(-2.0) / s), float(1 / s),
                       float(1 / s)});
}

TEST_CASE("Elementwise activations, affine, add/mul broadcast, concat, constants", "[exec]") {
  GraphBuilder gb("ew");
  auto x = gb.input("x", Shape{2, 1, 3});
  gb.output(gb.relu("relu", x));
  gb.output(gb.relu6("relu6", x));
  gb.output(gb.leaky_relu("leaky", x, 0.1f));
  gb.output(gb.sigmoid("sig", x));
  gb.output(gb.tanh("tanh", x));
  gb.output(gb.scale_offset("so", x, vals({2}, {2, 3}), vals({2}, {1, -1})));
  auto c = gb.constant("c", vals({2}, {10, 20}));
  gb.output(gb.add("addc", x, c));
  auto c3 = gb.constant("c3", vals({2, 1, 1}, {2, -1}));
  gb.output(gb.mul("mulc", x, c3));
  gb.output(gb.add("addx", x, x));
  gb.output(gb.concat("cat", {x, c3}, 2));   // [2, 1, 4]
  gb.output(gb.concat("cat0", {x, x}, 0));   // [4, 1, 3]
  auto g = std::move(gb).build();
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, 2);
  const std::vector<float> xv = {-2, 0.5f, 8, 1, -7, 3, 0, 1, 2, 3, 4, 5};
  auto o = be.run({vals({2, 2, 1, 3}, xv)});
  REQUIRE(o.size() == 11);
  check_values(o[0], {0, 0.5f, 8, 1, 0, 3, 0, 1, 2, 3, 4, 5});
  check_values(o[1], {0, 0.5f, 6, 1, 0, 3, 0, 1, 2, 3, 4, 5});
  check_values(o[2], {-0.2f, 0.5f, 8, 1, -0.7f, 3, 0, 1, 2, 3, 4, 5});
  std::vector<float> sig, th;
  for (float v : xv) {
    sig.push_back(1.0f / (1.0f + std::exp(-v)));
    th.push_back(std::tanh(v));
  }
  check_values(o[3], sig);
  check_values(o[4], th);
  check_values(o[5], {-3, 2, 17, 2, -22, 8, 1, 3, 5, 8, 11, 14});
  check_values(o[6], {8, 10.5f, 18, 21, 13, 23, 10, 11, 12, 23, 24, 25});
  check_values(o[7], {-4, 1, 16, -1, 7, -3, 0, 2, 4, -3, -4, -5});
  check_values(o[8], {-4, 1, 16, 2, -14, 6, 0, 2, 4, 6, 8, 10});
  REQUIRE(o[9].shape() == Shape({2, 2, 1, 4}));
  check_values(o[9], {-2, 0.5f, 8, 2, 1, -7, 3, -1, 0, 1, 2, 2, 3, 4, 5, -1});
  REQUIRE(o[10].shape() == Shape({2, 4, 1, 3}));
  check_values(o[10], {-2, 0.5f, 8, 1, -7, 3, -2, 0.5f, 8, 1, -7, 3,
                       0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5});
}

TEST_CASE("A batch gives the same result as its items run one by one", "[exec]") {
  std::mt19937 rng(11);
  GraphBuilder gb("net");
  auto x = gb.input("x", Shape{3, 17, 15});
  auto c1 = gb.relu("r1", gb.conv2d("c1", x, random({16, 3, 3, 3}, rng), random({16}, rng),
                                    conv_attrs(2, Padding::kSame)));
  auto dw = gb.relu6("r2", gb.conv2d("dw", c1, random({16, 1, 3, 3}, rng), random({16}, rng),
                                     conv_attrs(1, Padding::kSame, 1, 16)));
  auto pw = gb.conv2d("pw", dw, random({8, 16, 1, 1}, rng), std::nullopt, conv_attrs(1, Padding::kSame));
  auto sum = gb.add("sum", pw, gb.conv2d("sc", c1, random({8, 16, 1, 1}, rng), std::nullopt,
                                         conv_attrs(1, Padding::kSame)));
  auto gp = gb.global_avg_pool("gap", sum);
  gb.output(gb.softmax("prob", gb.fully_connected("fc", gp, random({5, 8}, rng), random({5}, rng))));
  auto g = std::move(gb).build();
  const Tensor batch = random({4, 3, 17, 15}, rng);
  for (int threads : {1, 2, 3}) {
    CpuBackend be(CpuBackendOptions{threads});
    be.load(g, 4);
    const Tensor all = be.run_one(batch);
    for (int i = 0; i < 4; ++i) {
      const Tensor one = be.run_one(batch.slice(i, i + 1));
      for (int j = 0; j < 5; ++j)
        CHECK(all.values()[static_cast<std::size_t>(i * 5 + j)] ==
              Approx(one.values()[static_cast<std::size_t>(j)]).margin(1e-5));
    }
  }
}

TEST_CASE("Activation memory is planned by lifetime", "[exec]") {
  GraphBuilder gb("chain");
  auto x = gb.input("x", Shape{4, 8, 8});
  NodeId y = x;
  for (int i = 0; i < 10; ++i) y = gb.sigmoid("s" + std::to_string(i), y);
  gb.output(y);
  auto g = std::move(gb).build();
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, 4);
  // Ten [4, 8, 8] values, computed in place one after the other: one 256-float buffer per item.
  CHECK(be.activation_bytes(1) == 256 * 4);
  CHECK(be.activation_bytes(4) == 4 * 256 * 4);
  CHECK(be.weights_bytes() == 0);
  Tensor in = iota({4, 4, 8, 8}, -1.0f, 0.01f);
  const Tensor out = be.run_one(in);
  double v = -1.0;
  for (int i = 0; i < 10; ++i) v = 1.0 / (1.0 + std::exp(-v));
  CHECK(out.values()[0] == Approx(v));
}

TEST_CASE("Buffers are reused once their last consumer ran", "[exec]") {
  // x -> a = conv(x) -> b = conv(a) -> c = conv(b) -> d = conv(c): 1x1 convs are not in place,
  // so at most two [2, 4, 4] values (32 floats) are live at once; c reuses a's slot.
  GraphBuilder gb("convs");
  auto x = gb.input("x", Shape{2, 4, 4});
  NodeId y = x;
  for (int i = 0; i < 4; ++i)
    y = gb.conv2d("c" + std::to_string(i), y, vals({2, 2, 1, 1}, {1, 1, 0, 1}), std::nullopt,
                  conv_attrs(1, Padding::kSame));
  gb.output(y);
  auto g = std::move(gb).build();
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, 1);
  CHECK(be.activation_bytes(1) == 2 * 32 * 4);
  // Each conv maps (p, q) -> (p + q, q): after four, (p + 4q, q).
  Tensor in = iota({1, 2, 4, 4});
  const Tensor out = be.run_one(in);
  for (int i = 0; i < 16; ++i) {
    CHECK(out.values()[static_cast<std::size_t>(i)] ==
          Approx(in.values()[static_cast<std::size_t>(i)] + 4 * in.values()[static_cast<std::size_t>(16 + i)]));
    CHECK(out.values()[static_cast<std::size_t>(16 + i)] == in.values()[static_cast<std::size_t>(16 + i)]);
  }
}

TEST_CASE("Residual add with a fused ReLU, in place, keeps its operands intact for others", "[exec]") {
  GraphBuilder gb("res");
  auto x = gb.input("x", Shape{1, 2, 2});
  auto a = gb.sigmoid("a", x);                           // a is used by sum and later by out2
  auto b = gb.scale_offset("b", x, vals({1}, {-2}), vals({1}, {0}));
  auto sum = gb.relu("relu", gb.add("sum", a, b));       // relu(a - 2x), in place into b
  gb.output(sum);
  gb.output(gb.mul("out2", a, a));
  auto g = std::move(gb).build();
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, 2);
  const std::vector<float> xv = {-3, -1, 0.1f, 2, 1, -1, 0.5f, 0.25f};
  auto o = be.run({vals({2, 1, 2, 2}, xv)});
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const float s = 1.0f / (1.0f + std::exp(-xv[i]));
    CHECK(o[0].values()[i] == Approx(std::max(s - 2 * xv[i], 0.0f)));
    CHECK(o[1].values()[i] == Approx(s * s));
  }
}

TEST_CASE("Wrong inputs throw errors naming the input and the expected shape", "[exec]") {
  GraphBuilder gb("two");
  auto a = gb.input("image", Shape{3, 4, 4});
  auto b = gb.input("mask", Shape{3, 4, 4});
  gb.output(gb.add("sum", a, b));
  auto g = std::move(gb).build();
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, 2);
  CHECK(be.input_shape(1) == Shape({3, 4, 4}));
  CHECK_THROWS_WITH(be.input_shape(2), Contains("input index 2"));
  const Tensor ok(Shape{1, 3, 4, 4});
  CHECK_THROWS_WITH(be.run({ok}), Contains("got 1 input tensors, expected 2"));
  CHECK_THROWS_WITH(be.run({ok, Tensor(Shape{1, 3, 4, 5})}),
                    Contains("'mask'") && Contains("[1, 3, 4, 5]") && Contains("[n, 3, 4, 4]"));
  CHECK_THROWS_WITH(be.run({Tensor(Shape{3, 4, 4}), ok}),
                    Contains("'image'") && Contains("[3, 4, 4]") && Contains("[n, 3, 4, 4]"));
  CHECK_THROWS_WITH(be.run({Tensor(Shape{3, 3, 4, 4}), Tensor(Shape{3, 3, 4, 4})}),
                    Contains("'image'") && Contains("n <= 2"));
  CHECK_THROWS_WITH(be.run({ok, Tensor(Shape{1, 3, 4, 4}, DType::kInt32)}),
                    Contains("'mask'") && Contains("int32") && Contains("float32"));
  CHECK_THROWS_WITH(be.run({ok, Tensor(Shape{2, 3, 4, 4})}),
                    Contains("'mask'") && Contains("batch 2"));
  CHECK_THROWS_WITH(be.load(g, 0), Contains("max_batch"));
  CHECK(be.run({ok, ok}).at(0).shape() == Shape({1, 3, 4, 4}));
}
