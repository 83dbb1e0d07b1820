// Fused convolution graphs on cuDNN 9's backend API (see fused_conv.hpp). Plain C calls of
// cudnn_graph.h: descriptors are created, given attributes, finalized; an operation graph
// gives engine configurations through the heuristics descriptor; each becomes an execution
// plan, run with a variant pack (the unique id of every non-virtual tensor -> its pointer).
#include "fused_conv.hpp"

#include <cfloat>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "nexus/core/error.hpp"

namespace nexus::cuda {
namespace {

enum Uid : std::int64_t { kX = 1, kW = 2, kBias = 3, kZ = 4, kY = 5, kV0 = 100 };

using Desc = std::shared_ptr<void>;

/// A descriptor of `type`, destroyed with the last reference; null when creation fails.
Desc make_desc(cudnnBackendDescriptorType_t type) {
  cudnnBackendDescriptor_t d = nullptr;
  if (cudnnBackendCreateDescriptor(type, &d) != CUDNN_STATUS_SUCCESS) return nullptr;
  return Desc(d, [](void* p) { cudnnBackendDestroyDescriptor(static_cast<cudnnBackendDescriptor_t>(p)); });
}

cudnnBackendDescriptor_t raw(const Desc& d) { return static_cast<cudnnBackendDescriptor_t>(d.get()); }

/// Collects the first failing step, so one failure message names where the graph broke.
struct Builder {
  cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
  std::string where;

  bool ok() const { return status == CUDNN_STATUS_SUCCESS; }
  void check(cudnnStatus_t s, const char* what) {
    if (ok() && s != CUDNN_STATUS_SUCCESS) {
      status = s;
      where = what;
    }
  }
  template <typename T>
  void set(const Desc& d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
           std::int64_t count, const T* values, const char* what) {
    if (!ok()) return;
    if (!d) {
      check(CUDNN_STATUS_ALLOC_FAILED, what);
      return;
    }
    check(cudnnBackendSetAttribute(raw(d), name, type, count, values), what);
  }
  void finalize(const Desc& d, const char* what) {
    if (!ok()) return;
    if (!d) {
      check(CUDNN_STATUS_ALLOC_FAILED, what);
      return;
    }
    check(cudnnBackendFinalize(raw(d)), what);
  }

  Desc tensor(std::int64_t uid, cudnnDataType_t type, const std::int64_t dims[4],
              const std::int64_t strides[4], bool is_virtual) {
    Desc d = make_desc(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const std::int64_t align = 16;
    const bool v = is_virtual;
    set(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor data type");
    set(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims, "tensor dims");
    set(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides, "tensor strides");
    set(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
    set(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, "tensor alignment");
    set(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v, "tensor virtual");
    finalize(d, "tensor finalize");
    return d;
  }

  Desc pointwise(cudnnPointwiseMode_t mode, double lower = 0, double upper = FLT_MAX,
                 double slope = 0, bool relu = false) {
    Desc d = make_desc(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    set(d, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
    set(d, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, "pointwise precision");
    if (relu) {
      set(d, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP, CUDNN_TYPE_DOUBLE, 1, &lower, "relu lower clip");
      set(d, CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP, CUDNN_TYPE_DOUBLE, 1, &upper, "relu upper clip");
      set(d, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE, CUDNN_TYPE_DOUBLE, 1, &slope,
          "relu slope");
    }
    finalize(d, "pointwise finalize");
    return d;
  }

  /// y = mode(x [, b]) as an operation node.
  Desc pointwise_op(const Desc& pw, const Desc& x, const Desc* b, const Desc& y) {
    Desc d = make_desc(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    void* pw_raw = pw.get();
    void* x_raw = x.get();
    void* y_raw = y.get();
    set(d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw_raw,
        "pointwise op descriptor");
    set(d, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x_raw,
        "pointwise op x");
    if (b) {
      void* b_raw = b->get();
      set(d, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b_raw,
          "pointwise op b");
    }
    set(d, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y_raw,
        "pointwise op y");
    finalize(d, "pointwise op finalize");
    return d;
  }
};

void strides_of(const std::int64_t d[4], bool nhwc, std::int64_t s[4]) {
  if (nhwc) {
    s[0] = d[1] * d[2] * d[3];
    s[1] = 1;
    s[2] = d[3] * d[1];
    s[3] = d[1];
  } else {
    s[0] = d[1] * d[2] * d[3];
    s[1] = d[2] * d[3];
    s[2] = d[3];
    s[3] = 1;
  }
}

const char* status_name(cudnnStatus_t s) { return cudnnGetErrorString(s); }

}  // namespace

std::string ConvGeometry::key() const {
  return fmt::format("{}x{}x{}x{}|{}x{}x{}x{}|{}x{}|{},{},{},{}|{},{}|{},{}|{}|{}|{}|{}|{}", n, c,
                     h, w, k, cg, r, s, oh, ow, pad_top, pad_left, pad_bottom, pad_right, stride_h,
                     stride_w, dil_h, dil_w, nhwc ? "nhwc" : "nchw", static_cast<int>(io),
                     residual ? "z" : "-", static_cast<int>(act), alpha);
}

std::vector<GraphPlan> build_fused_conv_plans(cudnnHandle_t handle, const ConvGeometry& g,
                                              std::size_t workspace_limit, int max_plans,
                                              bool allow_runtime_compiled, std::string* why) {
  std::vector<GraphPlan> plans;
  Builder b;
  const std::int64_t xd[4] = {g.n, g.c, g.h, g.w};
  const std::int64_t wd[4] = {g.k, g.cg, g.r, g.s};
  const std::int64_t yd[4] = {g.n, g.k, g.oh, g.ow};
  const std::int64_t bd[4] = {1, g.k, 1, 1};
  std::int64_t xs[4], ws[4], ys[4], bs[4];
  strides_of(xd, g.nhwc, xs);
  strides_of(wd, g.nhwc, ws);
  strides_of(yd, g.nhwc, ys);
  strides_of(bd, g.nhwc, bs);

  std::vector<Desc> ops;
  Desc x = b.tensor(kX, g.io, xd, xs, false);
  Desc w = b.tensor(kW, g.io, wd, ws, false);
  Desc bias = b.tensor(kBias, g.io, bd, bs, false);
  Desc y = b.tensor(kY, g.io, yd, ys, false);
  std::int64_t next_virtual = kV0;
  auto virt = [&] { return b.tensor(next_virtual++, CUDNN_DATA_FLOAT, yd, ys, true); };

  // conv
  Desc conv = make_desc(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  {
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const std::int64_t dims = 2;
    const std::int64_t dil[2] = {g.dil_h, g.dil_w}, str[2] = {g.stride_h, g.stride_w};
    const std::int64_t pre[2] = {g.pad_top, g.pad_left}, post[2] = {g.pad_bottom, g.pad_right};
    b.set(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "conv comp type");
    b.set(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode, "conv mode");
    b.set(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims, "conv spatial dims");
    b.set(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil, "conv dilations");
    b.set(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, str, "conv strides");
    b.set(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pre, "conv pre paddings");
    b.set(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, post, "conv post paddings");
    b.finalize(conv, "conv finalize");
  }
  Desc acc = virt();
  {
    Desc op = make_desc(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
    const float one = 1.f, zero = 0.f;
    void* xr = x.get();
    void* wr = w.get();
    void* yr = acc.get();
    void* cr = conv.get();
    b.set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &xr, "conv op x");
    b.set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &wr, "conv op w");
    b.set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &yr, "conv op y");
    b.set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cr,
          "conv op descriptor");
    b.set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &one, "conv op alpha");
    b.set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &zero, "conv op beta");
    b.finalize(op, "conv op finalize");
    ops.push_back(op);
  }
  // + bias (the last node writes y)
  const bool has_act = g.act != Act::kNone;
  Desc add_pw = b.pointwise(CUDNN_POINTWISE_ADD);
  Desc biased = (g.residual || has_act) ? virt() : y;
  ops.push_back(b.pointwise_op(add_pw, acc, &bias, biased));
  Desc last = biased;
  if (g.residual) {
    Desc z = b.tensor(kZ, g.io, yd, ys, false);
    Desc summed = has_act ? virt() : y;
    ops.push_back(b.pointwise_op(add_pw, last, &z, summed));
    last = summed;
  }
  if (has_act) {
    Desc pw;
    switch (g.act) {
      case Act::kRelu:
        pw = b.pointwise(CUDNN_POINTWISE_RELU_FWD, 0.0, FLT_MAX, 0.0, true);
        break;
      case Act::kRelu6:
        pw = b.pointwise(CUDNN_POINTWISE_RELU_FWD, 0.0, 6.0, 0.0, true);
        break;
      case Act::kLeaky:
        pw = b.pointwise(CUDNN_POINTWISE_RELU_FWD, 0.0, FLT_MAX, g.alpha, true);
        break;
      case Act::kSigmoid:
        pw = b.pointwise(CUDNN_POINTWISE_SIGMOID_FWD);
        break;
      case Act::kTanh:
        pw = b.pointwise(CUDNN_POINTWISE_TANH_FWD);
        break;
      case Act::kNone:
        break;
    }
    ops.push_back(b.pointwise_op(pw, last, nullptr, y));
  }

  Desc graph = make_desc(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  {
    std::vector<void*> raw_ops;
    for (const Desc& o : ops) raw_ops.push_back(o.get());
    b.set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
          static_cast<std::int64_t>(raw_ops.size()), raw_ops.data(), "graph ops");
    b.set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, "graph handle");
    b.finalize(graph, "graph finalize");
  }
  Desc heur = make_desc(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  {
    void* gr = graph.get();
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    b.set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &gr, "heuristics graph");
    b.set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
    b.finalize(heur, "heuristics finalize");
  }
  std::int64_t count = 0;
  if (b.ok())
    b.check(cudnnBackendGetAttribute(raw(heur), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
            "heuristics count");
  if (!b.ok()) {
    if (why) *why = fmt::format("{}: {}", b.where, status_name(b.status));
    return plans;
  }
  if (count <= 0) {
    if (why) *why = "cuDNN heuristics offer no engine for this graph";
    return plans;
  }
  std::vector<Desc> cfgs;
  std::vector<void*> raw_cfgs;
  for (std::int64_t i = 0; i < count; ++i) {
    cfgs.push_back(make_desc(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw_cfgs.push_back(cfgs.back().get());
  }
  std::int64_t returned = 0;
  b.check(cudnnBackendGetAttribute(raw(heur), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw_cfgs.data()),
          "heuristics results");
  if (!b.ok()) {
    if (why) *why = fmt::format("{}: {}", b.where, status_name(b.status));
    return plans;
  }
  std::string last_failure = "no engine configuration finalized";
  for (std::int64_t i = 0; i < returned && static_cast<int>(plans.size()) < max_plans; ++i) {
    void* cr = raw_cfgs[static_cast<std::size_t>(i)];
    // The engine: its global index and whether it compiles at runtime (read before finalizing,
    // since finalizing is where the compilation happens).
    std::int64_t index = -1;
    bool rtc = false;
    {
      Desc engine = make_desc(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
      void* er = engine.get();
      std::int64_t n_eng = 0, n_idx = 0, n_notes = 0;
      cudnnBackendBehaviorNote_t notes[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT + 4];
      if (engine &&
          cudnnBackendGetAttribute(static_cast<cudnnBackendDescriptor_t>(cr), CUDNN_ATTR_ENGINECFG_ENGINE,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n_eng, &er) == CUDNN_STATUS_SUCCESS) {
        if (cudnnBackendGetAttribute(raw(engine), CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1,
                                     &n_idx, &index) != CUDNN_STATUS_SUCCESS)
          index = -1;
        if (cudnnBackendGetAttribute(raw(engine), CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE,
                                     CUDNN_TYPE_BEHAVIOR_NOTE, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT + 4,
                                     &n_notes, notes) == CUDNN_STATUS_SUCCESS)
          for (std::int64_t k = 0; k < n_notes; ++k)
            rtc = rtc || notes[k] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
      }
    }
    if (rtc && !allow_runtime_compiled) {
      last_failure = fmt::format("engine config {} (engine {}) compiles at runtime: not allowed", i, index);
      continue;
    }
    Builder pb;
    Desc plan = make_desc(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    pb.set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, "plan handle");
    pb.set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cr,
           "plan engine config");
    pb.finalize(plan, "plan finalize");
    std::int64_t ws_bytes = 0, n_ws = 0;
    if (pb.ok())
      pb.check(cudnnBackendGetAttribute(raw(plan), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                        CUDNN_TYPE_INT64, 1, &n_ws, &ws_bytes),
               "plan workspace size");
    if (!pb.ok()) {
      last_failure = fmt::format("engine config {}: {}: {}", i, pb.where, status_name(pb.status));
      continue;
    }
    if (ws_bytes < 0 || static_cast<std::size_t>(ws_bytes) > workspace_limit) {
      last_failure = fmt::format("engine config {} needs {} workspace bytes (limit {})", i,
                                 ws_bytes, workspace_limit);
      continue;
    }
    GraphPlan gp;
    gp.plan = plan;
    gp.workspace = ws_bytes;
    gp.engine = index;
    gp.runtime_compiled = rtc;
    gp.label = fmt::format("graph engine {} (heuristic rank {}{})", index, i, rtc ? ", runtime-compiled" : "");
    plans.push_back(std::move(gp));
  }
  if (plans.empty() && why) *why = last_failure;
  return plans;
}

std::shared_ptr<void> make_fused_conv_pack(const void* x, const void* w, const void* bias,
                                           const void* z, void* y, void* workspace) {
  Desc pack = make_desc(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  if (!pack) return nullptr;
  std::int64_t uids[5] = {kX, kW, kBias, kY, kZ};
  void* ptrs[5] = {const_cast<void*>(x), const_cast<void*>(w), const_cast<void*>(bias), y,
                   const_cast<void*>(z)};
  const std::int64_t n = z ? 5 : 4;
  cudnnStatus_t s = cudnnBackendSetAttribute(raw(pack), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                             CUDNN_TYPE_INT64, n, uids);
  if (s == CUDNN_STATUS_SUCCESS)
    s = cudnnBackendSetAttribute(raw(pack), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                 CUDNN_TYPE_VOID_PTR, n, ptrs);
  if (s == CUDNN_STATUS_SUCCESS)
    s = cudnnBackendSetAttribute(raw(pack), CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR,
                                 1, &workspace);
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(raw(pack));
  return s == CUDNN_STATUS_SUCCESS ? pack : nullptr;
}

cudnnStatus_t execute_fused_conv(cudnnHandle_t handle, const GraphPlan& plan,
                                 const std::shared_ptr<void>& pack) {
  if (!plan.plan || !pack) return CUDNN_STATUS_BAD_PARAM;
  return cudnnBackendExecute(handle, static_cast<cudnnBackendDescriptor_t>(plan.plan.get()),
                             static_cast<cudnnBackendDescriptor_t>(pack.get()));
}

}  // namespace nexus::cuda
