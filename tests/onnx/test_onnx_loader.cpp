// ONNX loader: models built here with the ONNX protobuf classes; every bad input of issue #13
// gets a nexus::Error naming the node, the attribute or tensor, and what is supported.
#include <catch2/catch.hpp>

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/onnx.hpp"
#include "nexus/runtime/onnx_model.hpp"

#include <unistd.h>

using namespace nexus;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

void add_input(onnx::GraphProto* g, const std::string& name, std::vector<std::int64_t> dims,
               const char* batch_param = "N") {
  auto* vi = g->add_input();
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  for (std::size_t k = 0; k < dims.size(); ++k) {
    auto* d = tt->mutable_shape()->add_dim();
    if (k == 0 && batch_param) d->set_dim_param(batch_param);
    else if (dims[k] < 0) d->set_dim_param("H" + std::to_string(k));
    else d->set_dim_value(dims[k]);
  }
}

onnx::TensorProto* add_init(onnx::GraphProto* g, const std::string& name,
                            std::vector<std::int64_t> dims, std::vector<float> values) {
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (auto d : dims) t->add_dims(d);
  for (float v : values) t->add_float_data(v);
  return t;
}

onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, std::vector<std::string> in,
                          std::vector<std::string> out, const std::string& name = "") {
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(name.empty() ? op + "_0" : name);
  for (auto& s : in) n->add_input(s);
  for (auto& s : out) n->add_output(s);
  return n;
}

void set_ints(onnx::NodeProto* n, const std::string& name, std::vector<std::int64_t> v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto x : v) a->add_ints(x);
}
void set_str(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

// x [N, 2, 4, 4] -> Conv 3x3 (2 -> 2, pads 1) -> BatchNormalization -> Relu -> y
onnx::ModelProto conv_bn_relu() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("tiny");
  add_input(g, "x", {-1, 2, 4, 4});
  std::vector<float> w(2 * 2 * 3 * 3);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  add_init(g, "w", {2, 2, 3, 3}, w);
  add_init(g, "b", {2}, {0.5f, -0.25f});
  add_init(g, "scale", {2}, {2.0f, 0.5f});
  add_init(g, "shift", {2}, {0.1f, 0.2f});
  add_init(g, "mean", {2}, {0.3f, -0.1f});
  add_init(g, "var", {2}, {4.0f, 0.25f});
  auto* conv = add_node(g, "Conv", {"x", "w", "b"}, {"c"}, "conv1");
  set_ints(conv, "pads", {1, 1, 1, 1});
  add_node(g, "BatchNormalization", {"c", "scale", "shift", "mean", "var"}, {"bn"}, "bn1");
  add_node(g, "Relu", {"bn"}, {"y"}, "relu1");
  g->add_output()->set_name("y");
  return m;
}

std::string bytes(const onnx::ModelProto& m) {
  std::string s;
  m.SerializeToString(&s);
  return s;
}

}  // namespace

TEST_CASE("ONNX Conv + BatchNormalization + Relu: BN folded, dynamic batch, values by hand",
          "[onnx]") {
  const model::Graph g = model::load_onnx_bytes(bytes(conv_bn_relu()));
  for (const auto& n : g.nodes()) CHECK(n.op != model::OpType::kBatchNorm);
  CpuBackend cpu(CpuBackendOptions{.threads = 1});
  cpu.load(g, 3);
  Tensor x{Shape{3, 2, 4, 4}};
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = 0.05f * static_cast<float>(i % 11) - 0.2f;
  const Tensor y = cpu.run_one(x);
  REQUIRE(y.shape() == Shape({3, 2, 4, 4}));
  // Direct evaluation of conv -> BN -> ReLU, item 2, output (o, r, c).
  const auto m = conv_bn_relu();
  const auto& init = m.graph().initializer();
  auto val = [&](int t, int i) { return init[t].float_data(i); };
  for (int o = 0; o < 2; ++o)
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) {
        double acc = val(1, o);
        for (int i = 0; i < 2; ++i)
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              const int yy = r + ky - 1, xx = c + kx - 1;
              if (yy < 0 || yy >= 4 || xx < 0 || xx >= 4) continue;
              acc += val(0, ((o * 2 + i) * 3 + ky) * 3 + kx) *
                     x.data<float>()[((2 * 2 + i) * 4 + yy) * 4 + xx];
            }
        double bn = (acc - val(4, o)) / std::sqrt(val(5, o) + 1e-5) * val(2, o) + val(3, o);
        bn = std::max(bn, 0.0);
        CHECK(y.data<float>()[((2 * 2 + o) * 4 + r) * 4 + c] == Approx(bn).margin(1e-5));
      }
}

TEST_CASE("ONNX weights from an external data file", "[onnx]") {
  const fs::path dir = fs::temp_directory_path() / "nexus_onnx_external";
  fs::create_directories(dir);
  auto m = conv_bn_relu();
  auto* w = m.mutable_graph()->mutable_initializer(0);
  std::string raw(reinterpret_cast<const char*>(w->float_data().data()), w->float_data_size() * 4);
  w->clear_float_data();
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* kv = w->add_external_data();
  kv->set_key("location");
  kv->set_value("weights.bin");
  {
    std::ofstream f(dir / "model.onnx", std::ios::binary);
    f << bytes(m);
  }
  fs::remove(dir / "weights.bin");
  CHECK_THROWS_WITH(model::load_onnx(dir / "model.onnx"),
                    Contains("external data file") && Contains("weights.bin") &&
                        Contains("missing"));
  {
    std::ofstream f(dir / "weights.bin", std::ios::binary);
    f << raw;
  }
  const model::Graph ext = model::load_onnx(dir / "model.onnx");
  const model::Graph inl = model::load_onnx_bytes(bytes(conv_bn_relu()));
  CpuBackend a, b;
  a.load(ext, 1);
  b.load(inl, 1);
  Tensor x{Shape{1, 2, 4, 4}};
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i) * 0.01f;
  const Tensor ya = a.run_one(x), yb = b.run_one(x);
  for (std::int64_t i = 0; i < ya.numel(); ++i) CHECK(ya.data<float>()[i] == yb.data<float>()[i]);
  fs::remove_all(dir);
}

TEST_CASE("ONNX bad input: an unsupported op names the node, op and opset", "[onnx]") {
  auto m = conv_bn_relu();
  add_node(m.mutable_graph(), "Erf", {"y"}, {"z"}, "erf_node");
  m.mutable_graph()->mutable_output(0)->set_name("z");
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(m)),
                    Contains("erf_node") && Contains("Erf") && Contains("opset 13") &&
                        Contains("not supported") && Contains("supported: "));
}

TEST_CASE("ONNX bad input: Conv auto_pad=VALID with explicit pads", "[onnx]") {
  auto m = conv_bn_relu();
  set_str(m.mutable_graph()->mutable_node(0), "auto_pad", "VALID");
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(m)),
                    Contains("conv1") && Contains("Conv") && Contains("auto_pad=VALID") &&
                        Contains("pads") && Contains("NOTSET"));
}

// Found by fuzz_onnx (fuzz/corpus/fuzz_onnx/regress-pool-strides): a MaxPool with one stride
// value read strides[1] past the end of the attribute.
TEST_CASE("ONNX bad input: pooling attributes of the wrong length or range", "[onnx]") {
  auto pool_model = [](std::vector<std::int64_t> strides, std::vector<std::int64_t> kernel) {
    auto m = conv_bn_relu();
    auto* g = m.mutable_graph();
    auto* p = add_node(g, "MaxPool", {"y"}, {"z"}, "pool1");
    set_ints(p, "kernel_shape", kernel);
    set_ints(p, "strides", strides);
    g->mutable_output(0)->set_name("z");
    return m;
  };
  CHECK_NOTHROW(model::load_onnx_bytes(bytes(pool_model({2, 2}, {2, 2}))));
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(pool_model({3}, {2, 2}))),
                    Contains("pool1") && Contains("MaxPool") && Contains("'strides' must have 2 values"));
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(pool_model({0, 1}, {2, 2}))),
                    Contains("pool1") && Contains("'strides'") && Contains("[1, 65536]"));
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(pool_model({1, 1}, {0, 2}))),
                    Contains("pool1") && Contains("'kernel_shape'") && Contains(">= 1"));
}

TEST_CASE("ONNX bad input: truncated or non-ONNX files", "[onnx]") {
  const std::string full = bytes(conv_bn_relu());
  CHECK_THROWS_WITH(model::load_onnx_bytes(full.substr(0, full.size() / 2)),
                    Contains("not a valid ONNX") || Contains("not an ONNX"));
  CHECK_THROWS_WITH(model::load_onnx_bytes("this is a text file, not a model\n"),
                    Contains("ONNX"));
  CHECK_THROWS_WITH(model::load_onnx_bytes(""), Contains("not an ONNX model"));
  CHECK_THROWS_WITH(model::load_onnx("/nonexistent/model.onnx"), Contains("cannot open"));
  // Every prefix and a few bit flips of a valid model: an error or a graph, never a crash.
  for (std::size_t len = 0; len < full.size(); len += 7) {
    try {
      (void)model::load_onnx_bytes(full.substr(0, len));
    } catch (const Error&) {
    }
  }
  for (std::size_t i = 0; i < full.size(); i += 3) {
    std::string s = full;
    s[i] = static_cast<char>(s[i] ^ 0x5a);
    try {
      (void)model::load_onnx_bytes(s);
    } catch (const Error&) {
    }
  }
}

TEST_CASE("ONNX bad input: zero or several image inputs", "[onnx]") {
  auto two = conv_bn_relu();
  add_input(two.mutable_graph(), "x2", {-1, 2, 4, 4});
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(two)),
                    Contains("2 graph inputs") && Contains("x, x2") && Contains("exactly one"));
  auto none = conv_bn_relu();
  none.mutable_graph()->clear_input();
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(none)),
                    Contains("0 graph inputs") && Contains("exactly one"));
}

TEST_CASE("ONNX bad input: weights of another data type; float16 weights are converted",
          "[onnx]") {
  auto m = conv_bn_relu();
  auto* w = m.mutable_graph()->mutable_initializer(0);
  w->set_data_type(onnx::TensorProto::INT32);
  const int n = w->float_data_size();
  w->clear_float_data();
  for (int i = 0; i < n; ++i) w->add_int32_data(1);
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(m)),
                    Contains("conv1") && Contains("weight") && Contains("int32") &&
                        Contains("float32 or float16"));
  // float16: 1.0 = 0x3c00, -2.0 = 0xc000
  auto h = conv_bn_relu();
  auto* wh = h.mutable_graph()->mutable_initializer(0);
  wh->set_data_type(onnx::TensorProto::FLOAT16);
  wh->clear_float_data();
  for (int i = 0; i < n; ++i) wh->add_int32_data(i % 2 ? 0xc000 : 0x3c00);
  const model::Graph g = model::load_onnx_bytes(bytes(h));
  CHECK(g.nodes().size() >= 2);
}

TEST_CASE("ONNX bad input: shapes that do not infer", "[onnx]") {
  auto sym = conv_bn_relu();  // H and W symbolic, no values given
  auto* shape = sym.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
  shape->mutable_dim(2)->set_dim_param("height");
  shape->mutable_dim(3)->set_dim_param("width");
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(sym)),
                    Contains("'x'") && Contains("height") && Contains("symbolic") &&
                        Contains("input_shape"));
  model::OnnxOptions opt;
  opt.input_shape = {2, 8, 6};
  CHECK(model::load_onnx_bytes(bytes(sym), opt).node(0).shape == Shape({2, 8, 6}));
  opt.input_shape = {};
  opt.dims = {{"height", 5}, {"width", 7}};
  CHECK(model::load_onnx_bytes(bytes(sym), opt).node(0).shape == Shape({2, 5, 7}));

  auto bad = conv_bn_relu();  // weight for 3 input channels on a 2-channel input
  auto* w = bad.mutable_graph()->mutable_initializer(0);
  w->set_dims(1, 3);
  for (int i = 0; i < 2 * 3 * 9 - w->float_data_size(); ) w->add_float_data(0.0f);
  while (w->float_data_size() < 2 * 3 * 9) w->add_float_data(0.0f);
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(bad)),
                    Contains("conv1") && Contains("input channels"));

  auto reshape = conv_bn_relu();  // Reshape to a size that does not fit
  auto* t = reshape.mutable_graph()->add_initializer();
  t->set_name("shape");
  t->set_data_type(onnx::TensorProto::INT64);
  t->add_dims(2);
  t->add_int64_data(-1);
  t->add_int64_data(7);
  add_node(reshape.mutable_graph(), "Reshape", {"y", "shape"}, {"z"}, "reshape1");
  reshape.mutable_graph()->mutable_output(0)->set_name("z");
  CHECK_THROWS_WITH(model::load_onnx_bytes(bytes(reshape)),
                    Contains("reshape1") && Contains("Reshape") && Contains("cannot reshape"));
}

#include "nexus/profile/model_store.hpp"

TEST_CASE("ModelStore: an entry points a model name at an ONNX file", "[onnx]") {
  const fs::path dir = fs::temp_directory_path() / "nexus_onnx_store";
  fs::remove_all(dir);
  fs::create_directories(dir / "models");
  {
    std::ofstream f(dir / "models" / "tiny_v1.onnx", std::ios::binary);
    f << bytes(conv_bn_relu());
  }
  {
    std::ofstream f(dir / "tiny.json");
    f << R"({"model": "tiny", "onnx": "models/tiny_v1.onnx"})";
  }
  const ModelStore store(dir);
  CHECK(store.has_model_file("tiny"));
  CHECK(store.has_model_file("tiny_v1"));  // every .onnx file by its stem
  const model::Graph g = model::load_onnx(store.model_file("tiny"));
  CHECK(g.name() == "tiny_v1");
  CHECK_THROWS_WITH(store.model_file("resnet"), Contains("resnet") && Contains("tiny"));
  {
    std::ofstream f(dir / "broken.json");
    f << R"({"model": "gone", "onnx": "models/missing.onnx"})";
  }
  CHECK_THROWS_WITH(ModelStore(dir), Contains("gone") && Contains("does not exist"));
  fs::remove_all(dir);
}

TEST_CASE("model_spec_from_onnx: an ONNX file served by the Engine in one call", "[onnx]") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("nexus_onnx_spec_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "tiny_cbr.onnx";
  {
    std::ofstream f(file, std::ios::binary);
    f << bytes(conv_bn_relu());
  }
  // A given profile of another model is refused, naming both.
  CHECK_THROWS_WITH(runtime::model_spec_from_onnx(
                        file, {.profile = BatchProfile("other", "cpu", {1}, {1000.0})}),
                    Contains("'other'") && Contains("'tiny_cbr'"));
  // Measured on the CpuBackend (quick Profiler settings), named by the file's stem.
  runtime::OnnxModelOptions opt;
  opt.profiler.max_batch = 2;
  opt.profiler.batches = {1, 2};
  const runtime::ModelSpec spec = runtime::model_spec_from_onnx(file, opt);
  CHECK(spec.name == "tiny_cbr");
  CHECK(spec.profile.model() == "tiny_cbr");
  CHECK(spec.profile.device() == "cpu");
  REQUIRE(spec.graph);

  // The reference: the same file loaded and run directly.
  const model::Graph g = model::load_onnx(file);
  CpuBackend cpu(CpuBackendOptions{.threads = 1});
  cpu.load(g, 1);
  Tensor x{Shape{2, 4, 4}};
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = 0.07f * static_cast<float>(i % 9) - 0.3f;
  const Tensor want = cpu.run_one(x.reshape(Shape{1, 2, 4, 4}));

  runtime::Engine engine({.devices = "cpu", .cpu_workers = 1});
  engine.load_model(spec);
  engine.add_query({.name = "q", .slo = std::chrono::seconds(30), .expected_rate_rps = 1,
                    .stages = {{.name = "s", .model = "tiny_cbr"}}});
  engine.submit("q", x);
  std::vector<runtime::QueryResult> rs;
  for (int i = 0; i < 100 && rs.empty(); ++i) rs = engine.poll(1, std::chrono::milliseconds(100));
  engine.shutdown();
  REQUIRE(rs.size() == 1);
  REQUIRE(rs[0].ok());
  const Tensor& got = rs[0].stages.at(0).outputs.at(0);
  REQUIRE(got.numel() == want.numel());
  for (std::int64_t i = 0; i < got.numel(); ++i)
    CHECK(got.data<float>()[i] == Approx(want.data<float>()[i]).margin(1e-6));
  std::filesystem::remove_all(dir);
}
