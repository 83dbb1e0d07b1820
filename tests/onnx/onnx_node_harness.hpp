#pragma once
// The ONNX node-test harness (Debian libonnx-testdata: <dir>/<test>/{model.onnx,
// test_data_set_0/*.pb}) shared by tests/onnx (CpuBackend) and tests/cuda (CudaBackend).
//
// The IR needs weights at load, so the harness turns graph inputs that are op parameters (Conv's
// W, Reshape's shape, Clip's min, ...) into initializers holding their test values; inputs that
// are data (used at position 0, or by Add/Sub/Mul/Div/MatMul/Concat with the same batch) stay
// graph inputs. Dimension 0 of the first input is the batch. NEXUS_ONNX_TESTDATA overrides the
// data folder.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "nexus/model/onnx.hpp"
#include "onnx_test_util.hpp"

namespace nexus::onnx_test {

namespace fs = std::filesystem;

/// Thrown by a NodeRunner whose backend refuses the graph at load (an op or shape it cannot
/// run): the node test is listed as refused, not failed.
struct BackendRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Runs `graph` for batches up to max_batch on a backend: the outputs for `feeds`.
using NodeRunner = std::function<std::vector<Tensor>(const model::Graph& graph, int max_batch,
                                                     const std::vector<Tensor>& feeds)>;

/// status: "pass", "fail", "unsupported-op" / "unsupported" (the loader refuses), "refused"
/// (the backend refuses).
struct Outcome {
  std::string test, ops, status, detail;
};

inline fs::path node_data_dir() {
  if (const char* d = std::getenv("NEXUS_ONNX_TESTDATA")) return d;
  return "/usr/share/libonnx-testdata/data/node";
}

// Tolerance per op (absolute, relative): |got - want| <= atol + rtol * |want|.
inline std::pair<double, double> tolerance(const std::set<std::string>& ops) {
  double atol = 1e-5, rtol = 1e-4;
  for (const auto& op : ops) {
    if (op == "Conv" || op == "ConvTranspose" || op == "Gemm" || op == "MatMul") {
      atol = std::max(atol, 1e-4);  // sums of hundreds of products in float32
    }
    if (op == "Pow" || op == "Resize" || op == "Upsample") rtol = std::max(rtol, 1e-4);
  }
  return {atol, rtol};
}

// Runs one node test: patches parameter inputs into initializers, loads the model and runs it
// with `run` (graph, max batch, feeds) -> outputs; compares with the expected outputs.
/// `floor`: the least (atol, rtol) to use, e.g. FP16's documented tolerance (docs/cuda.md).
inline Outcome run_node_test_inner(const fs::path& dir, const NodeRunner& run,
                                   std::pair<double, double> floor) {
  Outcome r;
  r.test = dir.filename().string();
  onnx::ModelProto m;
  const std::string bytes = onnx_test::read_bytes(dir / "model.onnx");
  if (!m.ParseFromString(bytes)) return {r.test, "", "fail", "model.onnx does not parse"};
  std::set<std::string> ops;
  for (const auto& n : m.graph().node()) ops.insert(n.op_type());
  for (const auto& op : ops) r.ops += (r.ops.empty() ? "" : ",") + op;
  const auto& sup = model::onnx_supported_ops();
  for (const auto& op : ops)
    if (std::find(sup.begin(), sup.end(), op) == sup.end()) {
      r.status = "unsupported-op";
      r.detail = op;
      return r;
    }
  const fs::path data = dir / "test_data_set_0";
  std::vector<onnx::TensorProto> ins;
  for (int k = 0; fs::exists(data / ("input_" + std::to_string(k) + ".pb")); ++k)
    ins.push_back(onnx_test::read_tensor_proto(data / ("input_" + std::to_string(k) + ".pb")));
  std::vector<onnx::TensorProto> outs;
  for (int k = 0; fs::exists(data / ("output_" + std::to_string(k) + ".pb")); ++k)
    outs.push_back(onnx_test::read_tensor_proto(data / ("output_" + std::to_string(k) + ".pb")));
  auto* g = m.mutable_graph();
  if (ins.empty() || g->input_size() != static_cast<int>(ins.size()))
    return {r.test, r.ops, "unsupported", "no inputs or inputs do not match the test data"};
  for (const auto& vi : g->input())
    if (!vi.type().has_tensor_type())
      return {r.test, r.ops, "unsupported", "a graph input is not a tensor (sequence/map/optional)"};
  // Which graph inputs are data.
  std::set<std::string> data_use;
  for (const auto& n : g->node())
    for (int k = 0; k < n.input_size(); ++k) {
      const auto& op = n.op_type();
      if (k == 0 || op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "MatMul" ||
          op == "Concat")
        data_use.insert(n.input(k));
    }
  std::vector<Tensor> feeds;
  google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> keep;
  for (int k = 0; k < g->input_size(); ++k) {
    const auto& t = ins[static_cast<std::size_t>(k)];
    const bool same_batch = t.dims_size() >= 2 && ins[0].dims_size() == t.dims_size() &&
                            t.dims(0) == ins[0].dims(0);
    if (k == 0 || (data_use.count(g->input(k).name()) && same_batch)) {
      if (t.data_type() != onnx::TensorProto::FLOAT)
        return {r.test, r.ops, "unsupported", "a data input is not float32"};
      *keep.Add() = g->input(k);
      feeds.push_back(onnx_test::to_tensor(t));
    } else {
      auto* init = g->add_initializer();
      *init = t;
      init->set_name(g->input(k).name());
    }
  }
  g->mutable_input()->Swap(&keep);
  std::string patched;
  m.SerializeToString(&patched);
  model::OnnxOptions opt;
  opt.single_input = false;
  model::Graph graph;
  try {
    graph = model::load_onnx_bytes(patched, opt);
  } catch (const Error& e) {
    return {r.test, r.ops, "unsupported", e.what()};
  }
  try {
    std::vector<Tensor> got;
    try {
      got = run(graph, static_cast<int>(feeds[0].shape()[0]), feeds);
    } catch (const BackendRefused& e) {
      return {r.test, r.ops, "refused", e.what()};
    }
    if (got.size() != outs.size())
      return {r.test, r.ops, "fail", fmt::format("{} outputs, expected {}", got.size(), outs.size())};
    auto [atol, rtol] = tolerance(ops);
    atol = std::max(atol, floor.first);
    rtol = std::max(rtol, floor.second);
    for (std::size_t k = 0; k < outs.size(); ++k) {
      if (outs[k].data_type() != onnx::TensorProto::FLOAT)
        return {r.test, r.ops, "unsupported", "a non-float32 output"};
      const Tensor want = onnx_test::to_tensor(outs[k]);
      if (got[k].shape() != want.shape())
        return {r.test, r.ops, "unsupported",
                fmt::format("output {} has shape {}, expected {} (the batch axis moved)", k,
                            got[k].shape(), want.shape())};
      const auto d = onnx_test::compare(got[k], want, atol, rtol);
      if (!d.ok)
        return {r.test, r.ops, "fail",
                fmt::format("output {}: max abs err {:.3g}, max rel err {:.3g} (atol {}, rtol {})",
                            k, d.max_abs, d.max_rel, atol, rtol)};
      r.detail = fmt::format("max abs err {:.2g} (atol {}, rtol {})", d.max_abs, atol, rtol);
    }
  } catch (const Error& e) {
    return {r.test, r.ops, "fail", e.what()};
  }
  r.status = "pass";
  return r;
}

inline Outcome run_node_test(const fs::path& dir, const NodeRunner& run,
                             std::pair<double, double> floor = {0.0, 0.0}) {
  try {
    return run_node_test_inner(dir, run, floor);
  } catch (const std::exception& e) {
    return {dir.filename().string(), "", "fail", std::string("harness: ") + e.what()};
  }
}

}  // namespace nexus::onnx_test
