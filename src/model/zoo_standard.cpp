// Standard architectures with seeded He-uniform weights (see zoo/standard.hpp).
#include "nexus/model/zoo/standard.hpp"

#include <cmath>
#include <string>
#include <utility>

#include "nexus/core/error.hpp"
#include "zoo_rng.hpp"

namespace nexus::model::zoo {

namespace {

using detail::Rng;

enum class Act { kNone, kRelu, kRelu6 };

class Net {
 public:
  Net(std::string name, std::uint64_t seed) : b(std::move(name)), rng(seed) {}

  GraphBuilder b;
  Rng rng;

  // U(-a, a) with a = sqrt(3 * gain / fan_in): variance gain / fan_in.
  Tensor random(Shape s, std::int64_t fan_in, float gain) {
    Tensor t(std::move(s));
    const float a = std::sqrt(3.0f * gain / static_cast<float>(fan_in));
    for (float& v : t.values()) v = a * rng.symmetric();
    return t;
  }
  static Tensor filled(std::int64_t n, float v) {
    Tensor t(Shape{n});
    for (float& x : t.values()) x = v;
    return t;
  }

  NodeId activate(const std::string& name, NodeId x, Act act) {
    switch (act) {
      case Act::kRelu: return b.relu(name + "/relu", x);
      case Act::kRelu6: return b.relu6(name + "/relu6", x);
      case Act::kNone: break;
    }
    return x;
  }

  /// conv [+ BatchNorm] [+ activation]. groups == input channels makes it depthwise.
  NodeId conv(const std::string& name, NodeId x, std::int64_t out, int k, int stride, Act act,
              bool batch_norm = true, int groups = 1, float bn_scale = 1.0f,
              Padding padding = Padding::kSame) {
    return conv_hw(name, x, out, k, k, stride, act, batch_norm, groups, bn_scale, padding);
  }

  NodeId conv_hw(const std::string& name, NodeId x, std::int64_t out, int kh, int kw, int stride,
                 Act act, bool batch_norm = true, int groups = 1, float bn_scale = 1.0f,
                 Padding padding = Padding::kSame) {
    const std::int64_t in = b.shape(x)[0];
    const std::int64_t fan_in = in / groups * kh * kw;
    Conv2DAttrs a;
    a.kernel_h = kh;
    a.kernel_w = kw;
    a.stride_h = a.stride_w = stride;
    a.groups = groups;
    a.padding = padding;
    const float gain = act == Act::kNone ? 1.0f : 2.0f;
    NodeId y = b.conv2d(name, x, random(Shape{out, in / groups, kh, kw}, fan_in, gain),
                        batch_norm ? std::nullopt : std::optional<Tensor>(filled(out, 0.0f)), a);
    if (batch_norm)
      y = b.batch_norm(name + "/bn", y, filled(out, 0.0f), filled(out, 1.0f),
                       filled(out, bn_scale), filled(out, 0.0f), 1e-3f);
    return activate(name, y, act);
  }

  NodeId fc(const std::string& name, NodeId x, std::int64_t out, Act act) {
    const std::int64_t in = b.shape(x).numel();
    NodeId y = b.fully_connected(name, x, random(Shape{out, in}, in, act == Act::kNone ? 1.0f : 2.0f),
                                 filled(out, 0.0f));
    return activate(name, y, act);
  }

  NodeId max_pool(const std::string& name, NodeId x, int k, int stride,
                  Padding padding = Padding::kSame) {
    return b.max_pool(name, x, pool_attrs(k, stride, padding));
  }
  NodeId avg_pool(const std::string& name, NodeId x, int k, int stride,
                  Padding padding = Padding::kSame) {
    return b.avg_pool(name, x, pool_attrs(k, stride, padding));
  }
  static Pool2DAttrs pool_attrs(int k, int stride, Padding padding) {
    Pool2DAttrs p;
    p.kernel_h = p.kernel_w = k;
    p.stride_h = p.stride_w = stride;
    p.padding = padding;
    return p;
  }

  Graph classifier_head(NodeId features, std::int64_t classes = 1000) {
    NodeId y = b.global_avg_pool("avgpool", features);
    y = fc("fc", y, classes, Act::kNone);
    b.output(b.softmax("prob", y));
    return std::move(b).build();
  }
};

// ResNet v1.5 bottleneck: 1x1 -> 3x3 (stride) -> 1x1 x4, projection shortcut when needed.
NodeId bottleneck(Net& n, const std::string& name, NodeId x, std::int64_t width, int stride) {
  const std::int64_t out = width * 4;
  NodeId y = n.conv(name + "/conv1", x, width, 1, 1, Act::kRelu);
  y = n.conv(name + "/conv2", y, width, 3, stride, Act::kRelu);
  y = n.conv(name + "/conv3", y, out, 1, 1, Act::kNone, true, 1, 0.2f);
  NodeId shortcut = x;
  if (stride != 1 || n.b.shape(x)[0] != out)
    shortcut = n.conv(name + "/shortcut", x, out, 1, stride, Act::kNone);
  return n.b.relu(name + "/relu", n.b.add(name + "/add", y, shortcut));
}

// MobileNetV1 body up to conv13; `taps` receives the conv11 and conv13 outputs.
NodeId mobilenet_body(Net& n, NodeId x, std::vector<NodeId>* taps = nullptr) {
  struct Layer {
    std::int64_t out;
    int stride;
  };
  const Layer layers[] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1}, {512, 2}, {512, 1},
                          {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};
  NodeId y = n.conv("conv0", x, 32, 3, 2, Act::kRelu6);
  int i = 1;
  for (const Layer& l : layers) {
    const std::string name = "conv" + std::to_string(i);
    const std::int64_t c = n.b.shape(y)[0];
    y = n.conv(name + "/depthwise", y, c, 3, l.stride, Act::kRelu6, true, static_cast<int>(c));
    y = n.conv(name + "/pointwise", y, l.out, 1, 1, Act::kRelu6);
    if (taps && (i == 11 || i == 13)) taps->push_back(y);
    ++i;
  }
  return y;
}

struct Inception {
  std::int64_t b1, b2_reduce, b2, b3_reduce, b3, b4;
};

NodeId inception(Net& n, const std::string& name, NodeId x, const Inception& s) {
  const NodeId a = n.conv(name + "/1x1", x, s.b1, 1, 1, Act::kRelu, false);
  NodeId b = n.conv(name + "/3x3_reduce", x, s.b2_reduce, 1, 1, Act::kRelu, false);
  b = n.conv(name + "/3x3", b, s.b2, 3, 1, Act::kRelu, false);
  NodeId c = n.conv(name + "/5x5_reduce", x, s.b3_reduce, 1, 1, Act::kRelu, false);
  c = n.conv(name + "/5x5", c, s.b3, 5, 1, Act::kRelu, false);
  NodeId d = n.max_pool(name + "/pool", x, 3, 1);
  d = n.conv(name + "/pool_proj", d, s.b4, 1, 1, Act::kRelu, false);
  return n.b.concat(name + "/concat", {a, b, c, d}, 0);
}

// Inception-v3 blocks (Szegedy et al. 2016; names as TF-slim's Mixed_* layers).
NodeId inception_a(Net& n, const std::string& name, NodeId x, std::int64_t pool_features) {
  const NodeId a = n.conv(name + "/b0_1x1", x, 64, 1, 1, Act::kRelu);
  NodeId b = n.conv(name + "/b1_1x1", x, 48, 1, 1, Act::kRelu);
  b = n.conv(name + "/b1_5x5", b, 64, 5, 1, Act::kRelu);
  NodeId c = n.conv(name + "/b2_1x1", x, 64, 1, 1, Act::kRelu);
  c = n.conv(name + "/b2_3x3a", c, 96, 3, 1, Act::kRelu);
  c = n.conv(name + "/b2_3x3b", c, 96, 3, 1, Act::kRelu);
  NodeId d = n.avg_pool(name + "/b3_pool", x, 3, 1);
  d = n.conv(name + "/b3_1x1", d, pool_features, 1, 1, Act::kRelu);
  return n.b.concat(name + "/concat", {a, b, c, d}, 0);
}

NodeId inception_b(Net& n, const std::string& name, NodeId x) {  // 35 -> 17
  const NodeId a = n.conv(name + "/b0_3x3", x, 384, 3, 2, Act::kRelu, true, 1, 1.0f, Padding::kValid);
  NodeId b = n.conv(name + "/b1_1x1", x, 64, 1, 1, Act::kRelu);
  b = n.conv(name + "/b1_3x3a", b, 96, 3, 1, Act::kRelu);
  b = n.conv(name + "/b1_3x3b", b, 96, 3, 2, Act::kRelu, true, 1, 1.0f, Padding::kValid);
  const NodeId c = n.max_pool(name + "/b2_pool", x, 3, 2, Padding::kValid);
  return n.b.concat(name + "/concat", {a, b, c}, 0);
}

NodeId inception_c(Net& n, const std::string& name, NodeId x, std::int64_t c7) {
  const NodeId a = n.conv(name + "/b0_1x1", x, 192, 1, 1, Act::kRelu);
  NodeId b = n.conv(name + "/b1_1x1", x, c7, 1, 1, Act::kRelu);
  b = n.conv_hw(name + "/b1_1x7", b, c7, 1, 7, 1, Act::kRelu);
  b = n.conv_hw(name + "/b1_7x1", b, 192, 7, 1, 1, Act::kRelu);
  NodeId c = n.conv(name + "/b2_1x1", x, c7, 1, 1, Act::kRelu);
  c = n.conv_hw(name + "/b2_7x1a", c, c7, 7, 1, 1, Act::kRelu);
  c = n.conv_hw(name + "/b2_1x7a", c, c7, 1, 7, 1, Act::kRelu);
  c = n.conv_hw(name + "/b2_7x1b", c, c7, 7, 1, 1, Act::kRelu);
  c = n.conv_hw(name + "/b2_1x7b", c, 192, 1, 7, 1, Act::kRelu);
  NodeId d = n.avg_pool(name + "/b3_pool", x, 3, 1);
  d = n.conv(name + "/b3_1x1", d, 192, 1, 1, Act::kRelu);
  return n.b.concat(name + "/concat", {a, b, c, d}, 0);
}

NodeId inception_d(Net& n, const std::string& name, NodeId x) {  // 17 -> 8
  NodeId a = n.conv(name + "/b0_1x1", x, 192, 1, 1, Act::kRelu);
  a = n.conv(name + "/b0_3x3", a, 320, 3, 2, Act::kRelu, true, 1, 1.0f, Padding::kValid);
  NodeId b = n.conv(name + "/b1_1x1", x, 192, 1, 1, Act::kRelu);
  b = n.conv_hw(name + "/b1_1x7", b, 192, 1, 7, 1, Act::kRelu);
  b = n.conv_hw(name + "/b1_7x1", b, 192, 7, 1, 1, Act::kRelu);
  b = n.conv(name + "/b1_3x3", b, 192, 3, 2, Act::kRelu, true, 1, 1.0f, Padding::kValid);
  const NodeId c = n.max_pool(name + "/b2_pool", x, 3, 2, Padding::kValid);
  return n.b.concat(name + "/concat", {a, b, c}, 0);
}

NodeId inception_e(Net& n, const std::string& name, NodeId x) {
  const NodeId a = n.conv(name + "/b0_1x1", x, 320, 1, 1, Act::kRelu);
  const NodeId b = n.conv(name + "/b1_1x1", x, 384, 1, 1, Act::kRelu);
  const NodeId b1 = n.conv_hw(name + "/b1_1x3", b, 384, 1, 3, 1, Act::kRelu);
  const NodeId b2 = n.conv_hw(name + "/b1_3x1", b, 384, 3, 1, 1, Act::kRelu);
  NodeId c = n.conv(name + "/b2_1x1", x, 448, 1, 1, Act::kRelu);
  c = n.conv(name + "/b2_3x3", c, 384, 3, 1, Act::kRelu);
  const NodeId c1 = n.conv_hw(name + "/b2_1x3", c, 384, 1, 3, 1, Act::kRelu);
  const NodeId c2 = n.conv_hw(name + "/b2_3x1", c, 384, 3, 1, 1, Act::kRelu);
  NodeId d = n.avg_pool(name + "/b3_pool", x, 3, 1);
  d = n.conv(name + "/b3_1x1", d, 192, 1, 1, Act::kRelu);
  return n.b.concat(name + "/concat", {a, b1, b2, c1, c2, d}, 0);
}

}  // namespace

Graph resnet50(std::uint64_t seed) {
  Net n("resnet50", seed);
  NodeId x = n.b.input("image", Shape{3, 224, 224});
  NodeId y = n.conv("conv1", x, 64, 7, 2, Act::kRelu);
  y = n.max_pool("pool1", y, 3, 2);
  const int blocks[] = {3, 4, 6, 3};
  std::int64_t width = 64;
  for (int stage = 0; stage < 4; ++stage, width *= 2)
    for (int i = 0; i < blocks[stage]; ++i)
      y = bottleneck(n, "res" + std::to_string(stage + 2) + static_cast<char>('a' + i), y, width,
                     i == 0 && stage > 0 ? 2 : 1);
  return n.classifier_head(y);
}

Graph mobilenet_v1(std::uint64_t seed) {
  Net n("mobilenet_v1", seed);
  NodeId x = n.b.input("image", Shape{3, 224, 224});
  return n.classifier_head(mobilenet_body(n, x));
}

Graph vgg16(std::uint64_t seed) {
  Net n("vgg16", seed);
  NodeId y = n.b.input("image", Shape{3, 224, 224});
  const std::vector<std::vector<std::int64_t>> blocks = {
      {64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}};
  for (std::size_t bi = 0; bi < blocks.size(); ++bi) {
    for (std::size_t ci = 0; ci < blocks[bi].size(); ++ci)
      y = n.conv("conv" + std::to_string(bi + 1) + "_" + std::to_string(ci + 1), y, blocks[bi][ci],
                 3, 1, Act::kRelu, false);
    y = n.max_pool("pool" + std::to_string(bi + 1), y, 2, 2, Padding::kValid);
  }
  y = n.fc("fc6", y, 4096, Act::kRelu);
  y = n.fc("fc7", y, 4096, Act::kRelu);
  y = n.fc("fc8", y, 1000, Act::kNone);
  n.b.output(n.b.softmax("prob", y));
  return std::move(n.b).build();
}

Graph googlenet(std::uint64_t seed) {
  Net n("googlenet", seed);
  NodeId x = n.b.input("image", Shape{3, 224, 224});
  NodeId y = n.conv("conv1/7x7_s2", x, 64, 7, 2, Act::kRelu, false);
  y = n.max_pool("pool1/3x3_s2", y, 3, 2);
  y = n.conv("conv2/3x3_reduce", y, 64, 1, 1, Act::kRelu, false);
  y = n.conv("conv2/3x3", y, 192, 3, 1, Act::kRelu, false);
  y = n.max_pool("pool2/3x3_s2", y, 3, 2);
  y = inception(n, "inception_3a", y, {64, 96, 128, 16, 32, 32});
  y = inception(n, "inception_3b", y, {128, 128, 192, 32, 96, 64});
  y = n.max_pool("pool3/3x3_s2", y, 3, 2);
  y = inception(n, "inception_4a", y, {192, 96, 208, 16, 48, 64});
  y = inception(n, "inception_4b", y, {160, 112, 224, 24, 64, 64});
  y = inception(n, "inception_4c", y, {128, 128, 256, 24, 64, 64});
  y = inception(n, "inception_4d", y, {112, 144, 288, 32, 64, 64});
  y = inception(n, "inception_4e", y, {256, 160, 320, 32, 128, 128});
  y = n.max_pool("pool4/3x3_s2", y, 3, 2);
  y = inception(n, "inception_5a", y, {256, 160, 320, 32, 128, 128});
  y = inception(n, "inception_5b", y, {384, 192, 384, 48, 128, 128});
  return n.classifier_head(y);
}

Graph inception_v3(std::uint64_t seed) {
  Net n("inception_v3", seed);
  NodeId x = n.b.input("image", Shape{3, 299, 299});
  NodeId y = n.conv("Conv2d_1a_3x3", x, 32, 3, 2, Act::kRelu, true, 1, 1.0f, Padding::kValid);
  y = n.conv("Conv2d_2a_3x3", y, 32, 3, 1, Act::kRelu, true, 1, 1.0f, Padding::kValid);
  y = n.conv("Conv2d_2b_3x3", y, 64, 3, 1, Act::kRelu);
  y = n.max_pool("MaxPool_3a_3x3", y, 3, 2, Padding::kValid);
  y = n.conv("Conv2d_3b_1x1", y, 80, 1, 1, Act::kRelu);
  y = n.conv("Conv2d_4a_3x3", y, 192, 3, 1, Act::kRelu, true, 1, 1.0f, Padding::kValid);
  y = n.max_pool("MaxPool_5a_3x3", y, 3, 2, Padding::kValid);  // [192, 35, 35]
  y = inception_a(n, "Mixed_5b", y, 32);
  y = inception_a(n, "Mixed_5c", y, 64);
  y = inception_a(n, "Mixed_5d", y, 64);
  y = inception_b(n, "Mixed_6a", y);  // [768, 17, 17]
  y = inception_c(n, "Mixed_6b", y, 128);
  y = inception_c(n, "Mixed_6c", y, 160);
  y = inception_c(n, "Mixed_6d", y, 160);
  y = inception_c(n, "Mixed_6e", y, 192);
  y = inception_d(n, "Mixed_7a", y);  // [1280, 8, 8]
  y = inception_e(n, "Mixed_7b", y);
  y = inception_e(n, "Mixed_7c", y);  // [2048, 8, 8]
  return n.classifier_head(y);
}

Graph ssd_mobilenet_v1_300(std::uint64_t seed) {
  Net n("ssd_mobilenet_v1_300", seed);
  NodeId x = n.b.input("image", Shape{3, 300, 300});
  std::vector<NodeId> maps;
  NodeId y = mobilenet_body(n, x, &maps);  // conv11 [512, 19, 19], conv13 [1024, 10, 10]
  const std::int64_t extras[][2] = {{256, 512}, {128, 256}, {128, 256}, {64, 128}};
  int i = 14;
  for (const auto& e : extras) {
    const std::string name = "layer_" + std::to_string(i++);
    y = n.conv(name + "_1x1", y, e[0], 1, 1, Act::kRelu6);
    y = n.conv(name + "_3x3_s2", y, e[1], 3, 2, Act::kRelu6);
    maps.push_back(y);
  }
  constexpr std::int64_t kClasses = 91;  // COCO's 90 + background
  std::vector<NodeId> boxes, classes;
  for (std::size_t m = 0; m < maps.size(); ++m) {
    const std::int64_t anchors = m == 0 ? 3 : 6;
    const std::string name = "box_predictor_" + std::to_string(m);
    boxes.push_back(n.conv(name + "/box", maps[m], anchors * 4, 1, 1, Act::kNone, false));
    classes.push_back(n.conv(name + "/class", maps[m], anchors * kClasses, 1, 1, Act::kNone, false));
  }
  for (NodeId b : boxes) n.b.output(b);
  for (NodeId c : classes) n.b.output(c);
  return std::move(n.b).build();
}

Graph lenet(std::uint64_t seed) {
  Net n("lenet", seed);
  NodeId y = n.b.input("image", Shape{1, 28, 28});
  y = n.conv("conv1", y, 20, 5, 1, Act::kNone, false, 1, 1.0f, Padding::kValid);
  y = n.max_pool("pool1", y, 2, 2, Padding::kValid);
  y = n.conv("conv2", y, 50, 5, 1, Act::kNone, false, 1, 1.0f, Padding::kValid);
  y = n.max_pool("pool2", y, 2, 2, Padding::kValid);
  y = n.fc("ip1", y, 500, Act::kRelu);
  y = n.fc("ip2", y, 10, Act::kNone);
  n.b.output(n.b.softmax("prob", y));
  return std::move(n.b).build();
}

std::vector<std::string> standard_model_names() {
  return {"resnet50", "mobilenet_v1", "vgg16", "googlenet", "inception_v3", "ssd_mobilenet_v1_300", "lenet"};
}

Graph standard_model(std::string_view name, std::uint64_t seed) {
  if (name == "resnet50") return resnet50(seed);
  if (name == "mobilenet_v1") return mobilenet_v1(seed);
  if (name == "vgg16") return vgg16(seed);
  if (name == "googlenet") return googlenet(seed);
  if (name == "inception_v3") return inception_v3(seed);
  if (name == "ssd_mobilenet_v1_300") return ssd_mobilenet_v1_300(seed);
  if (name == "lenet") return lenet(seed);
  throw_error("unknown standard model '{}': expected one of resnet50, mobilenet_v1, vgg16, "
              "googlenet, inception_v3, ssd_mobilenet_v1_300, lenet",
              name);
}

}  // namespace nexus::model::zoo
