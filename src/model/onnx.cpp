// ONNX import: ModelProto (Debian libonnx protobuf classes) -> Graph IR. See model/onnx.hpp.
#include "nexus/model/onnx.hpp"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "nexus/core/error.hpp"

namespace nexus::model {

namespace {

// The symbolic batch size while folding shape subgraphs (a prime no real dimension equals).
constexpr std::int64_t kBatch = 1000003;

std::string dims_str(const std::vector<std::int64_t>& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i) s += ", ";
    s += d[i] == kBatch ? std::string("N") : std::to_string(d[i]);
  }
  return s + "]";
}

/// Element count; a shape whose count overflows int64 (a corrupt file) is an error, not UB.
std::int64_t numel(const std::vector<std::int64_t>& d) {
  std::int64_t n = 1;
  for (auto v : d)
    if (__builtin_mul_overflow(n, v, &n))
      throw_error("ONNX: shape {} has more elements than an int64 counts (a corrupt file?)", dims_str(d));
  return n;
}

// An ONNX value: a constant known at load (weights, folded shape arithmetic) or a node of the
// IR graph, whose ONNX shape is `full` with the batch at `batch_axis`.
struct Value {
  bool is_const = false;
  // constant
  std::vector<std::int64_t> dims;
  bool is_int = false;
  std::vector<float> f;
  std::vector<std::int64_t> i;
  std::string type_name;  // the ONNX data type, for messages
  // node
  NodeId id = -1;
  int batch_axis = 0;
  std::vector<std::int64_t> full;

  std::int64_t count() const { return numel(dims); }
  std::vector<std::int64_t> item() const {
    std::vector<std::int64_t> d = full;
    d.erase(d.begin() + batch_axis);
    return d;
  }
};

const char* onnx_type_name(int t) {
  switch (t) {
    case onnx::TensorProto::FLOAT: return "float32";
    case onnx::TensorProto::FLOAT16: return "float16";
    case onnx::TensorProto::DOUBLE: return "float64";
    case onnx::TensorProto::INT64: return "int64";
    case onnx::TensorProto::INT32: return "int32";
    case onnx::TensorProto::INT8: return "int8";
    case onnx::TensorProto::UINT8: return "uint8";
    case onnx::TensorProto::BOOL: return "bool";
    case onnx::TensorProto::STRING: return "string";
    case onnx::TensorProto::BFLOAT16: return "bfloat16";
    default: return "an unknown type";
  }
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal
      int e = -1;
      std::uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

class Loader {
 public:
  Loader(const onnx::ModelProto& model, const OnnxOptions& options, std::string name)
      : model_(model), options_(options), builder_(std::move(name)) {}

  Graph load();

 private:
  const onnx::ModelProto& model_;
  const OnnxOptions& options_;
  GraphBuilder builder_;
  std::unordered_map<std::string, Value> values_;
  std::int64_t opset_ = 1;
  std::int64_t declared_batch_ = 0;  // a static batch dimension of the input(s), 0 if symbolic
  const onnx::NodeProto* cur_ = nullptr;  // for messages
  std::string cur_name_;

  // ---- messages
  std::string where() const {
    return fmt::format("node '{}' ({}, opset {})", cur_name_, cur_ ? cur_->op_type() : "",
                       opset_);
  }
  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    throw_error("ONNX {}: {}", where(), fmt::format(f, std::forward<Args>(args)...));
  }

  // ---- tensors
  Value tensor_value(const onnx::TensorProto& t, const std::string& what);
  const Value& get(int k) const;
  bool has_input(int k) const { return k < cur_->input_size() && !cur_->input(k).empty(); }
  const Value& const_input(int k, const char* what) const;
  std::vector<float> floats(const Value& v, const char* what) const;
  std::vector<std::int64_t> ints(const Value& v, const char* what) const;
  Tensor weight_tensor(const Value& v, const char* what) const;
  NodeId as_node(const Value& v, const Value& like, const char* what);

  // ---- attributes
  const onnx::AttributeProto* attr(const char* name) const;
  std::int64_t attr_int(const char* name, std::int64_t def) const;
  float attr_float(const char* name, float def) const;
  std::string attr_str(const char* name, const std::string& def) const;
  std::vector<std::int64_t> attr_ints(const char* name) const;
  std::vector<float> attr_floats(const char* name) const;
  void refuse_attrs(std::initializer_list<const char*> known) const;

  // ---- helpers
  void set_output(int k, Value v);
  Value node_value(NodeId id, std::vector<std::int64_t> full, int batch_axis) const;
  Value reshaped(const Value& x, std::vector<std::int64_t> full, int batch_axis);
  int item_axis(const Value& x, std::int64_t onnx_axis, const char* what) const;
  std::string name_for(int k = 0) const;

  void input(const onnx::ValueInfoProto& vi);
  void node(const onnx::NodeProto& n);
  void dispatch(const onnx::NodeProto& n);
  bool fold(const onnx::NodeProto& n);
  void conv(bool transpose);
  void pool(bool max);
  void binary(OpType op);
  void unary_op(const std::string& op);
  void resize(bool upsample);
  void gemm();
  void matmul();
  void reshape_like(const std::string& op);
  void softmax();
  void concat();
  void transpose();
  void pad();
  void slice();
  void reduce_mean();
  void batch_norm();
};

// ---- tensors -----------------------------------------------------------------------------------

template <typename T>
void read_raw(const std::string& raw, std::int64_t n, std::vector<T>& out, const std::string& what,
              const char* type) {
  NEXUS_CHECK(raw.size() == static_cast<std::size_t>(n) * sizeof(T),
              "ONNX tensor '{}': raw data holds {} bytes, {} {} values need {}", what, raw.size(),
              n, type, static_cast<std::size_t>(n) * sizeof(T));
  out.resize(static_cast<std::size_t>(n));
  if (n) std::memcpy(out.data(), raw.data(), raw.size());
}

Value Loader::tensor_value(const onnx::TensorProto& t, const std::string& what) {
  Value v;
  v.is_const = true;
  for (auto d : t.dims()) {
    NEXUS_CHECK(d >= 0 && d < (std::int64_t{1} << 31), "ONNX tensor '{}': dimension {} is invalid",
                what, d);
    v.dims.push_back(d);
  }
  const std::int64_t n = numel(v.dims);
  NEXUS_CHECK(n <= (std::int64_t{1} << 32), "ONNX tensor '{}': {} elements is too large", what,
              n);
  v.type_name = onnx_type_name(t.data_type());
  std::string raw;
  const std::string* rawp = &t.raw_data();
  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    std::int64_t offset = 0, length = -1;
    for (const auto& kv : t.external_data()) {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = std::atoll(kv.value().c_str());
      else if (kv.key() == "length") length = std::atoll(kv.value().c_str());
    }
    NEXUS_CHECK(!location.empty(), "ONNX tensor '{}': external data without a location", what);
    NEXUS_CHECK(location.find("..") == std::string::npos && location[0] != '/',
                "ONNX tensor '{}': external data location '{}' must be a relative path inside "
                "the model's folder", what, location);
    const std::filesystem::path file = options_.external_data_dir / location;
    std::ifstream in(file, std::ios::binary);
    NEXUS_CHECK(in.good(), "ONNX tensor '{}': external data file '{}' is missing or unreadable",
                what, file.string());
    in.seekg(0, std::ios::end);
    const std::int64_t size = in.tellg();
    if (length < 0) length = size - offset;
    NEXUS_CHECK(offset >= 0 && length >= 0 && offset + length <= size,
                "ONNX tensor '{}': external data file '{}' has {} bytes, the tensor needs bytes "
                "[{}, {})", what, file.string(), size, offset, offset + length);
    raw.resize(static_cast<std::size_t>(length));
    in.seekg(offset);
    in.read(raw.data(), length);
    rawp = &raw;
  }
  const bool use_raw = !rawp->empty() || t.data_location() == onnx::TensorProto::EXTERNAL;
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      if (use_raw) {
        read_raw(*rawp, n, v.f, what, "float32");
      } else {
        NEXUS_CHECK(t.float_data_size() == n, "ONNX tensor '{}': {} float values for shape {}",
                    what, t.float_data_size(), dims_str(v.dims));
        v.f.assign(t.float_data().begin(), t.float_data().end());
      }
      break;
    case onnx::TensorProto::FLOAT16: {
      std::vector<std::uint16_t> h;
      if (use_raw) {
        read_raw(*rawp, n, h, what, "float16");
      } else {
        NEXUS_CHECK(t.int32_data_size() == n, "ONNX tensor '{}': {} float16 values for shape {}",
                    what, t.int32_data_size(), dims_str(v.dims));
        for (auto x : t.int32_data()) h.push_back(static_cast<std::uint16_t>(x));
      }
      for (auto x : h) v.f.push_back(half_to_float(x));
      break;
    }
    case onnx::TensorProto::DOUBLE: {
      std::vector<double> d;
      if (use_raw) read_raw(*rawp, n, d, what, "float64");
      else d.assign(t.double_data().begin(), t.double_data().end());
      NEXUS_CHECK(static_cast<std::int64_t>(d.size()) == n,
                  "ONNX tensor '{}': {} values for shape {}", what, d.size(), dims_str(v.dims));
      for (auto x : d) v.f.push_back(static_cast<float>(x));
      break;
    }
    case onnx::TensorProto::INT64:
      v.is_int = true;
      if (use_raw) {
        read_raw(*rawp, n, v.i, what, "int64");
      } else {
        NEXUS_CHECK(t.int64_data_size() == n, "ONNX tensor '{}': {} int64 values for shape {}",
                    what, t.int64_data_size(), dims_str(v.dims));
        v.i.assign(t.int64_data().begin(), t.int64_data().end());
      }
      break;
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL: {
      v.is_int = true;
      if (use_raw) {
        if (t.data_type() == onnx::TensorProto::INT32) {
          std::vector<std::int32_t> x;
          read_raw(*rawp, n, x, what, "int32");
          v.i.assign(x.begin(), x.end());
        } else if (t.data_type() == onnx::TensorProto::INT8) {
          std::vector<std::int8_t> x;
          read_raw(*rawp, n, x, what, "int8");
          v.i.assign(x.begin(), x.end());
        } else {
          std::vector<std::uint8_t> x;
          read_raw(*rawp, n, x, what, "uint8");
          v.i.assign(x.begin(), x.end());
        }
      } else {
        NEXUS_CHECK(t.int32_data_size() == n, "ONNX tensor '{}': {} values for shape {}", what,
                    t.int32_data_size(), dims_str(v.dims));
        v.i.assign(t.int32_data().begin(), t.int32_data().end());
      }
      break;
    }
    default:
      throw_error("ONNX tensor '{}': data type {} ({}) is not supported (float32, float16, "
                  "float64, int64, int32, int8, uint8, bool)",
                  what, onnx_type_name(t.data_type()), t.data_type());
  }
  return v;
}

const Value& Loader::get(int k) const {
  NEXUS_CHECK(k < cur_->input_size() && !cur_->input(k).empty(), "ONNX {}: input {} is missing",
              where(), k);
  auto it = values_.find(cur_->input(k));
  NEXUS_CHECK(it != values_.end(),
              "ONNX {}: input '{}' is not produced by any earlier node, initializer or graph input "
              "(nodes must be in topological order)", where(), cur_->input(k));
  return it->second;
}

const Value& Loader::const_input(int k, const char* what) const {
  const Value& v = get(k);
  if (!v.is_const)
    fail("{} (input {} '{}') must be a constant (initializer or constant-foldable), it is "
         "computed from the graph input", what, k, cur_->input(k));
  return v;
}

std::vector<float> Loader::floats(const Value& v, const char* what) const {
  if (!v.is_int) return v.f;
  std::vector<float> out;
  for (auto x : v.i) out.push_back(static_cast<float>(x));
  (void)what;
  return out;
}

std::vector<std::int64_t> Loader::ints(const Value& v, const char* what) const {
  if (!v.is_int) fail("{} must be an integer tensor, got {}", what, v.type_name);
  return v.i;
}

Tensor Loader::weight_tensor(const Value& v, const char* what) const {
  if (v.is_int)
    fail("weight '{}' has data type {}; weights must be float32 or float16", what, v.type_name);
  return Tensor::from(Shape(v.dims), v.f);
}

// A value as an IR node to combine with `like` (a node value): constants become per-item
// constants, aligned on the right with like's ONNX shape; their batch position must be 1.
NodeId Loader::as_node(const Value& v, const Value& like, const char* what) {
  if (!v.is_const) return v.id;
  const int r = static_cast<int>(like.full.size());
  const int cr = static_cast<int>(v.dims.size());
  if (cr > r) fail("{} {} has a higher rank than the input {}", what, dims_str(v.dims), dims_str(like.full));
  std::vector<std::int64_t> d(static_cast<std::size_t>(r - cr), 1);
  d.insert(d.end(), v.dims.begin(), v.dims.end());
  if (d[static_cast<std::size_t>(like.batch_axis)] != 1)
    fail("{} {} varies along the batch axis of {} (a constant must broadcast over the batch)",
         what, dims_str(v.dims), dims_str(like.full));
  d.erase(d.begin() + like.batch_axis);
  if (d.empty()) d.push_back(1);
  std::vector<float> f = floats(v, what);
  if (f.empty()) fail("{} is empty", what);
  return builder_.constant(fmt::format("{}:{}", cur_name_, what), Tensor::from(Shape(d), f));
}

// ---- attributes ---------------------------------------------------------------------------------

const onnx::AttributeProto* Loader::attr(const char* name) const {
  for (const auto& a : cur_->attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
std::int64_t Loader::attr_int(const char* name, std::int64_t def) const {
  const auto* a = attr(name);
  return a ? a->i() : def;
}
float Loader::attr_float(const char* name, float def) const {
  const auto* a = attr(name);
  return a ? a->f() : def;
}
std::string Loader::attr_str(const char* name, const std::string& def) const {
  const auto* a = attr(name);
  return a ? a->s() : def;
}
std::vector<std::int64_t> Loader::attr_ints(const char* name) const {
  const auto* a = attr(name);
  return a ? std::vector<std::int64_t>(a->ints().begin(), a->ints().end())
           : std::vector<std::int64_t>{};
}
std::vector<float> Loader::attr_floats(const char* name) const {
  const auto* a = attr(name);
  return a ? std::vector<float>(a->floats().begin(), a->floats().end()) : std::vector<float>{};
}

// ---- helpers ------------------------------------------------------------------------------------

Value Loader::node_value(NodeId id, std::vector<std::int64_t> full, int batch_axis) const {
  Value v;
  v.id = id;
  v.full = std::move(full);
  v.batch_axis = batch_axis;
  return v;
}

void Loader::set_output(int k, Value v) {
  if (k < cur_->output_size() && !cur_->output(k).empty()) values_[cur_->output(k)] = std::move(v);
}

std::string Loader::name_for(int k) const {
  return k < cur_->output_size() && !cur_->output(k).empty() ? cur_->output(k) : cur_name_;
}

int Loader::item_axis(const Value& x, std::int64_t a, const char* what) const {
  const auto r = static_cast<std::int64_t>(x.full.size());
  if (a < -r || a >= r) fail("{} {} is out of range for rank {}", what, a, r);
  if (a < 0) a += r;
  if (a == x.batch_axis)
    fail("{} {} is the batch axis of {}; ops along the batch axis are not supported", what, a,
         dims_str(x.full));
  return static_cast<int>(a > x.batch_axis ? a - 1 : a);
}

Value Loader::reshaped(const Value& x, std::vector<std::int64_t> full, int batch_axis) {
  std::vector<std::int64_t> item = full;
  item.erase(item.begin() + batch_axis);
  if (item.empty()) fail("the result {} has no dimension besides the batch", dims_str(full));
  NodeId id = x.id;
  if (item != x.item()) id = builder_.reshape(name_for(), x.id, Shape(item));
  return node_value(id, std::move(full), batch_axis);
}

void Loader::input(const onnx::ValueInfoProto& vi) {
  const auto& tt = vi.type().tensor_type();
  NEXUS_CHECK(vi.type().has_tensor_type(), "ONNX graph input '{}': not a tensor", vi.name());
  NEXUS_CHECK(tt.elem_type() == onnx::TensorProto::FLOAT,
              "ONNX graph input '{}': data type {}, only float32 inputs are supported", vi.name(),
              onnx_type_name(tt.elem_type()));
  NEXUS_CHECK(tt.has_shape() && tt.shape().dim_size() >= 2,
              "ONNX graph input '{}': needs a shape of rank >= 2 ([batch, ...]), got rank {}",
              vi.name(), tt.has_shape() ? tt.shape().dim_size() : 0);
  std::vector<std::int64_t> full{kBatch};
  const int r = tt.shape().dim_size();
  if (!options_.input_shape.empty())
    NEXUS_CHECK(static_cast<int>(options_.input_shape.size()) == r - 1,
                "ONNX graph input '{}': options.input_shape has {} dims, the input has rank {} "
                "(expected {} item dims after the batch)",
                vi.name(), options_.input_shape.size(), r, r - 1);
  for (int k = 0; k < r; ++k) {
    const auto& d = tt.shape().dim(k);
    std::int64_t v = d.has_dim_value() ? d.dim_value() : -1;
    if (v < 0 && d.has_dim_param()) {
      auto it = options_.dims.find(d.dim_param());
      if (it != options_.dims.end()) v = it->second;
    }
    if (k == 0) {
      if (v > 0) declared_batch_ = v;
      continue;
    }
    if (!options_.input_shape.empty()) {
      const std::int64_t given = options_.input_shape[static_cast<std::size_t>(k - 1)];
      NEXUS_CHECK(v <= 0 || v == given,
                  "ONNX graph input '{}': dimension {} is fixed at {}, options.input_shape "
                  "gives {}", vi.name(), k, v, given);
      v = given;
    }
    NEXUS_CHECK(v > 0,
                "ONNX graph input '{}': dimension {} ('{}') is symbolic; give its value in "
                "OnnxOptions::input_shape (item shape) or OnnxOptions::dims",
                vi.name(), k, d.has_dim_param() ? d.dim_param() : std::string("?"));
    full.push_back(v);
  }
  std::vector<std::int64_t> item(full.begin() + 1, full.end());
  const NodeId id = builder_.input(vi.name(), Shape(item));
  values_[vi.name()] = node_value(id, std::move(full), 0);
}

Graph Loader::load() {
  for (const auto& o : model_.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = o.version();
  const auto& g = model_.graph();
  std::set<std::string> init_names;
  for (const auto& t : g.initializer()) {
    init_names.insert(t.name());
    values_[t.name()] = tensor_value(t, t.name());
  }
  int inputs = 0;
  std::vector<std::string> names;
  for (const auto& vi : g.input()) {
    if (init_names.count(vi.name())) continue;
    ++inputs;
    names.push_back(vi.name());
  }
  if (options_.single_input)
    NEXUS_CHECK(inputs == 1,
                "ONNX graph '{}': has {} graph inputs ({}), exactly one image input is required",
                g.name(), inputs, fmt::join(names, ", "));
  NEXUS_CHECK(inputs >= 1, "ONNX graph '{}': has no graph input", g.name());
  for (const auto& vi : g.input())
    if (!init_names.count(vi.name())) input(vi);
  for (const auto& n : g.node()) node(n);
  cur_ = nullptr;
  NEXUS_CHECK(g.output_size() >= 1, "ONNX graph '{}': has no output", g.name());
  for (const auto& o : g.output()) {
    auto it = values_.find(o.name());
    NEXUS_CHECK(it != values_.end(), "ONNX graph output '{}' is not produced by any node",
                o.name());
    NEXUS_CHECK(!it->second.is_const,
                "ONNX graph output '{}' is a constant (it does not depend on the input)", o.name());
    NEXUS_CHECK(it->second.batch_axis == 0,
                "ONNX graph output '{}' {} has its batch on axis {}; graph outputs must keep the "
                "batch on axis 0 (a Transpose/Unsqueeze moved it)", o.name(),
                dims_str(it->second.full), it->second.batch_axis);
    builder_.output(it->second.id);
  }
  return std::move(builder_).build();
}

// ---- nodes --------------------------------------------------------------------------------------

void Loader::node(const onnx::NodeProto& n) {
  cur_ = &n;
  cur_name_ = n.name().empty() ? (n.output_size() ? n.output(0) : n.op_type()) : n.name();
  if (!n.domain().empty() && n.domain() != "ai.onnx")
    fail("op domain '{}' is not supported (only the default ONNX domain)", n.domain());
  const std::string& op = n.op_type();
  if (op == "Constant") {
    const auto* a = attr("value");
    if (a && a->has_t()) {
      set_output(0, tensor_value(a->t(), name_for()));
    } else if ((a = attr("value_float"))) {
      Value v; v.is_const = true; v.f = {a->f()}; v.type_name = "float32";
      set_output(0, v);
    } else if ((a = attr("value_floats"))) {
      Value v; v.is_const = true; v.f.assign(a->floats().begin(), a->floats().end());
      v.dims = {static_cast<std::int64_t>(v.f.size())}; v.type_name = "float32";
      set_output(0, v);
    } else if ((a = attr("value_int"))) {
      Value v; v.is_const = true; v.is_int = true; v.i = {a->i()}; v.type_name = "int64";
      set_output(0, v);
    } else if ((a = attr("value_ints"))) {
      Value v; v.is_const = true; v.is_int = true; v.i.assign(a->ints().begin(), a->ints().end());
      v.dims = {static_cast<std::int64_t>(v.i.size())}; v.type_name = "int64";
      set_output(0, v);
    } else {
      fail("attribute 'value' (a tensor, value_float(s) or value_int(s)) is required; sparse and "
           "string constants are not supported");
    }
    return;
  }
  for (int k = 0; k < n.input_size(); ++k) {
    if (n.input(k).empty()) continue;
    if (!values_.count(n.input(k)))
      fail("input '{}' is not produced by any earlier node, initializer or graph input",
           n.input(k));
  }
  try {
    dispatch(n);
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind("ONNX", 0) == 0) throw;
    throw Error(fmt::format("ONNX {}: {}", where(), what));  // an IR shape check: name the node
  }
}

void Loader::dispatch(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  if (fold(n)) return;
  if (op == "Conv") conv(false);
  else if (op == "ConvTranspose") conv(true);
  else if (op == "MaxPool") pool(true);
  else if (op == "AveragePool") pool(false);
  else if (op == "Add") binary(OpType::kAdd);
  else if (op == "Sub") binary(OpType::kSub);
  else if (op == "Mul") binary(OpType::kMul);
  else if (op == "Div") binary(OpType::kDiv);
  else if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "LeakyRelu" ||
           op == "HardSigmoid" || op == "HardSwish" || op == "Clip" || op == "Sqrt" ||
           op == "Pow" || op == "Identity" || op == "Dropout" || op == "Cast" ||
           op == "GlobalAveragePool")
    unary_op(op);
  else if (op == "BatchNormalization") batch_norm();
  else if (op == "Resize") resize(false);
  else if (op == "Upsample") resize(true);
  else if (op == "Gemm") gemm();
  else if (op == "MatMul") matmul();
  else if (op == "Flatten" || op == "Reshape" || op == "Squeeze" || op == "Unsqueeze")
    reshape_like(op);
  else if (op == "Softmax") softmax();
  else if (op == "Concat") concat();
  else if (op == "Transpose") transpose();
  else if (op == "Pad") pad();
  else if (op == "Slice") slice();
  else if (op == "ReduceMean") reduce_mean();
  else
    fail("op '{}' is not supported on data computed from the graph input (supported: {})", op,
         fmt::join(onnx_supported_ops(), ", "));
}

// Evaluates a node whose inputs are all constants (shape subgraphs). Returns false when some
// input is computed from the graph input (and the op is not Shape).
bool Loader::fold(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  if (op == "Shape") {
    const Value& x = get(0);
    Value v;
    v.is_const = true;
    v.is_int = true;
    v.type_name = "int64";
    v.i = x.is_const ? x.dims : x.full;
    if (x.is_const || true) {
      std::int64_t start = attr_int("start", 0), end = attr_int("end", static_cast<std::int64_t>(v.i.size()));
      const auto r = static_cast<std::int64_t>(v.i.size());
      if (start < 0) start += r;
      if (end < 0) end += r;
      start = std::clamp<std::int64_t>(start, 0, r);
      end = std::clamp<std::int64_t>(end, start, r);
      v.i = std::vector<std::int64_t>(v.i.begin() + start, v.i.begin() + end);
    }
    v.dims = {static_cast<std::int64_t>(v.i.size())};
    set_output(0, v);
    return true;
  }
  for (int k = 0; k < n.input_size(); ++k)
    if (!n.input(k).empty() && !values_.at(n.input(k)).is_const) return false;
  if (n.input_size() == 0 && op != "ConstantOfShape") return false;
  auto out = [&](Value v) { set_output(0, std::move(v)); };
  auto batch_free = [&](const std::vector<std::int64_t>& xs) {
    for (auto x : xs)
      if (x == kBatch) return false;
    return true;
  };
  if (op == "Identity" || op == "Dropout") {
    out(get(0));
    return true;
  }
  if (op == "Cast") {
    Value v = get(0);
    const auto to = attr_int("to", onnx::TensorProto::FLOAT);
    if (to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::FLOAT16 ||
        to == onnx::TensorProto::DOUBLE) {
      if (v.is_int) {
        if (!batch_free(v.i)) fail("casts the symbolic batch size to float");
        v.f = floats(v, "input");
        v.i.clear();
        v.is_int = false;
      }
      v.type_name = "float32";
    } else {
      if (!v.is_int) {
        for (float x : v.f) v.i.push_back(static_cast<std::int64_t>(x));
        v.f.clear();
        v.is_int = true;
      }
      v.type_name = onnx_type_name(static_cast<int>(to));
    }
    out(v);
    return true;
  }
  if (op == "Unsqueeze" || op == "Squeeze" || op == "Reshape" || op == "Flatten") {
    Value v = get(0);
    std::vector<std::int64_t> d = v.dims;
    const auto r = static_cast<std::int64_t>(d.size());
    if (op == "Reshape") {
      auto t = ints(get(1), "shape");
      std::int64_t known = 1;
      int infer = -1;
      for (std::size_t k = 0; k < t.size(); ++k) {
        if (t[k] == 0 && !attr_int("allowzero", 0)) t[k] = k < d.size() ? d[k] : 1;
        if (t[k] == -1) infer = static_cast<int>(k);
        else known *= t[k];
      }
      if (infer >= 0) t[static_cast<std::size_t>(infer)] = known ? v.count() / known : 0;
      if (numel(t) != v.count()) fail("cannot reshape constant {} to {}", dims_str(d), dims_str(t));
      d = t;
    } else if (op == "Flatten") {
      std::int64_t a = attr_int("axis", 1);
      if (a < 0) a += r;
      std::int64_t lead = 1;
      for (std::int64_t k = 0; k < a && k < r; ++k) lead *= d[static_cast<std::size_t>(k)];
      d = {lead, lead ? v.count() / lead : 0};
    } else {
      std::vector<std::int64_t> axes = opset_ >= 13 && n.input_size() > 1 && !n.input(1).empty()
                                           ? ints(get(1), "axes")
                                           : attr_ints("axes");
      if (op == "Unsqueeze") {
        const auto outr = r + static_cast<std::int64_t>(axes.size());
        for (auto& a : axes) a = a < 0 ? a + outr : a;
        std::sort(axes.begin(), axes.end());
        for (auto a : axes) {
          if (a < 0 || a > static_cast<std::int64_t>(d.size())) fail("axis {} out of range", a);
          d.insert(d.begin() + a, 1);
        }
      } else {
        std::vector<std::int64_t> nd;
        for (std::int64_t k = 0; k < r; ++k) {
          const bool listed = axes.empty() ? d[static_cast<std::size_t>(k)] == 1
                                           : std::find_if(axes.begin(), axes.end(), [&](auto a) {
                                               return (a < 0 ? a + r : a) == k;
                                             }) != axes.end();
          if (!listed) nd.push_back(d[static_cast<std::size_t>(k)]);
        }
        d = nd;
      }
    }
    v.dims = d;
    out(v);
    return true;
  }
  if (op == "Gather") {
    const Value& x = get(0);
    const auto idx = ints(get(1), "indices");
    std::int64_t axis = attr_int("axis", 0);
    const auto r = static_cast<std::int64_t>(x.dims.size());
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= r) fail("axis {} out of range for {}", axis, dims_str(x.dims));
    std::int64_t outer = 1, inner = 1;
    for (std::int64_t k = 0; k < axis; ++k) outer *= x.dims[static_cast<std::size_t>(k)];
    for (std::int64_t k = axis + 1; k < r; ++k) inner *= x.dims[static_cast<std::size_t>(k)];
    const std::int64_t len = x.dims[static_cast<std::size_t>(axis)];
    Value v;
    v.is_const = true;
    v.is_int = x.is_int;
    v.type_name = x.type_name;
    v.dims.assign(x.dims.begin(), x.dims.begin() + axis);
    const Value& iv = get(1);
    v.dims.insert(v.dims.end(), iv.dims.begin(), iv.dims.end());
    v.dims.insert(v.dims.end(), x.dims.begin() + axis + 1, x.dims.end());
    for (std::int64_t o = 0; o < outer; ++o)
      for (auto j : idx) {
        if (j < 0) j += len;
        if (j < 0 || j >= len) fail("index {} out of range [0, {})", j, len);
        for (std::int64_t in = 0; in < inner; ++in) {
          const auto at = static_cast<std::size_t>((o * len + j) * inner + in);
          if (x.is_int) v.i.push_back(x.i[at]);
          else v.f.push_back(x.f[at]);
        }
      }
    out(v);
    return true;
  }
  if (op == "Concat") {
    Value v = get(0);
    std::int64_t axis = attr_int("axis", 0);
    const auto r = static_cast<std::int64_t>(v.dims.size());
    if (axis < 0) axis += r;
    if (r == 0 || axis < 0 || axis >= r) fail("axis {} out of range", axis);
    if (axis != 0) return false;  // constant concat along inner axes: rare; not folded
    for (int k = 1; k < n.input_size(); ++k) {
      const Value& w = get(k);
      if (w.is_int != v.is_int || w.dims.size() != v.dims.size())
        fail("inputs of different types or ranks");
      v.dims[0] += w.dims[0];
      v.i.insert(v.i.end(), w.i.begin(), w.i.end());
      v.f.insert(v.f.end(), w.f.begin(), w.f.end());
    }
    out(v);
    return true;
  }
  if (op == "Slice") {
    const Value& x = get(0);
    if (x.dims.size() != 1) return false;
    auto st = opset_ >= 10 ? ints(get(1), "starts") : attr_ints("starts");
    auto en = opset_ >= 10 ? ints(get(2), "ends") : attr_ints("ends");
    if (st.size() != 1 || en.size() != 1) fail("starts/ends of a 1-D constant must have 1 value");
    const std::int64_t len = x.dims[0];
    std::int64_t s0 = st.at(0), e0 = en.at(0),
                 step = opset_ >= 10 && has_input(4) ? ints(get(4), "steps").at(0) : 1;
    if (step != 1) return false;
    if (s0 < 0) s0 += len;
    if (e0 < 0) e0 += len;
    s0 = std::clamp<std::int64_t>(s0, 0, len);
    e0 = std::clamp<std::int64_t>(e0, s0, len);
    Value v = x;
    v.i.clear();
    v.f.clear();
    for (std::int64_t k = s0; k < e0; ++k) {
      if (x.is_int) v.i.push_back(x.i[static_cast<std::size_t>(k)]);
      else v.f.push_back(x.f[static_cast<std::size_t>(k)]);
    }
    v.dims = {e0 - s0};
    out(v);
    return true;
  }
  if (op == "ConstantOfShape") {
    const auto shape = ints(get(0), "input");
    if (!batch_free(shape)) return false;
    Value v;
    v.is_const = true;
    v.dims = shape;
    v.type_name = "float32";
    float fill = 0.0f;
    if (const auto* a = attr("value"); a && a->has_t()) {
      Value t = tensor_value(a->t(), "value");
      if (t.is_int) {
        v.is_int = true;
        v.type_name = "int64";
        v.i.assign(static_cast<std::size_t>(numel(shape)), t.i.empty() ? 0 : t.i[0]);
        out(v);
        return true;
      }
      fill = t.f.empty() ? 0.0f : t.f[0];
    }
    v.f.assign(static_cast<std::size_t>(numel(shape)), fill);
    out(v);
    return true;
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    const Value& a = get(0);
    const Value& b = get(1);
    // numpy broadcast of two constants
    const std::size_t r = std::max(a.dims.size(), b.dims.size());
    std::vector<std::int64_t> d(r);
    auto ext = [&](const Value& x) {
      std::vector<std::int64_t> e(r - x.dims.size(), 1);
      e.insert(e.end(), x.dims.begin(), x.dims.end());
      return e;
    };
    const auto da = ext(a), db = ext(b);
    for (std::size_t k = 0; k < r; ++k) {
      if (da[k] != db[k] && da[k] != 1 && db[k] != 1)
        fail("constant shapes {} and {} do not broadcast", dims_str(a.dims), dims_str(b.dims));
      d[k] = std::max(da[k], db[k]);
    }
    Value v;
    v.is_const = true;
    v.dims = d;
    v.is_int = a.is_int && b.is_int;
    v.type_name = v.is_int ? "int64" : "float32";
    const std::int64_t total = numel(d);
    auto index = [&](const std::vector<std::int64_t>& dx, std::int64_t flat) {
      std::int64_t off = 0, mul = 1;
      for (std::size_t k = r; k-- > 0;) {
        const std::int64_t c = flat % d[k];
        flat /= d[k];
        off += (dx[k] == 1 ? 0 : c) * mul;
        mul *= dx[k];
      }
      return static_cast<std::size_t>(off);
    };
    if (v.is_int) {
      for (std::int64_t k = 0; k < total; ++k) {
        const std::int64_t x = a.i[index(da, k)], y = b.i[index(db, k)];
        if ((x == kBatch || y == kBatch) && !(op == "Mul" && (x == 1 || y == 1)) &&
            !((op == "Add" || op == "Sub") && y == 0) && !(op == "Div" && y == 1))
          fail("computes with the symbolic batch size in a shape subgraph (not supported)");
        if (op == "Div" && y == 0) fail("integer division by zero in a shape subgraph");
        v.i.push_back(op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y);
      }
    } else {
      const auto fa = floats(a, "A"), fb = floats(b, "B");
      for (std::int64_t k = 0; k < total; ++k) {
        const float x = fa[index(da, k)], y = fb[index(db, k)];
        v.f.push_back(op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y);
      }
    }
    out(v);
    return true;
  }
  return false;  // not foldable here: handled (or refused) as a graph op
}

// ---- ops ----------------------------------------------------------------------------------------

void Loader::conv(bool transpose) {
  const Value& x = get(0);
  const char* op = transpose ? "ConvTranspose" : "Conv";
  if (x.is_const) fail("input X must come from the graph input");
  if (x.full.size() != 4 || x.batch_axis != 0)
    fail("only 2-D convolutions of NCHW inputs are supported; X is {}", dims_str(x.full));
  const Value& w = const_input(1, "weight W");
  if (w.dims.size() != 4) fail("weight W must be 4-D, got {}", dims_str(w.dims));
  Conv2DAttrs a;
  a.groups = static_cast<int>(attr_int("group", 1));
  if (a.groups < 1) fail("attribute 'group' = {} must be >= 1", a.groups);
  auto strides = attr_ints("strides"), dil = attr_ints("dilations"), pads = attr_ints("pads"),
       ks = attr_ints("kernel_shape");
  if (!strides.empty() && strides.size() != 2) fail("attribute 'strides' must have 2 values");
  if (!dil.empty() && dil.size() != 2) fail("attribute 'dilations' must have 2 values");
  if (!pads.empty() && pads.size() != 4) fail("attribute 'pads' must have 4 values");
  if (!ks.empty() && (ks.size() != 2 || ks[0] != w.dims[2] || ks[1] != w.dims[3]))
    fail("attribute 'kernel_shape' {} does not match the weight {}", dims_str(ks),
         dims_str(w.dims));
  a.stride_h = strides.empty() ? 1 : static_cast<int>(strides[0]);
  a.stride_w = strides.empty() ? 1 : static_cast<int>(strides[1]);
  a.dilation_h = dil.empty() ? 1 : static_cast<int>(dil[0]);
  a.dilation_w = dil.empty() ? 1 : static_cast<int>(dil[1]);
  if (a.stride_h < 1 || a.stride_w < 1 || a.dilation_h < 1 || a.dilation_w < 1)
    fail("strides and dilations must be >= 1");
  const std::string auto_pad = attr_str("auto_pad", "NOTSET");
  const bool any_pad = std::any_of(pads.begin(), pads.end(), [](auto p) { return p != 0; });
  if (auto_pad != "NOTSET" && any_pad)
    fail("attribute auto_pad={} with explicit pads [{}] is invalid (pads may only be given with "
         "auto_pad=NOTSET)", auto_pad, fmt::join(pads, ", "));
  if (std::any_of(pads.begin(), pads.end(), [](auto p) { return p < 0; }))
    fail("negative pads [{}] are not supported", fmt::join(pads, ", "));
  const std::int64_t kh = w.dims[2], kw = w.dims[3];
  auto same_pads = [&](std::int64_t in, std::int64_t k, int s, int d, bool lower, int& before,
                       int& after, std::int64_t out_given) {
    const std::int64_t eff = (k - 1) * d + 1;
    const std::int64_t out = transpose ? in * s : (in + s - 1) / s;
    (void)out_given;
    const std::int64_t total =
        transpose ? std::max<std::int64_t>((in - 1) * s + eff - out, 0)
                  : std::max<std::int64_t>((out - 1) * s + eff - in, 0);
    before = static_cast<int>(lower ? total - total / 2 : total / 2);
    after = static_cast<int>(total - before);
  };
  if (auto_pad == "NOTSET") {
    a.padding = Padding::kExplicit;
    if (!pads.empty()) {
      a.pads.top = static_cast<int>(pads[0]);
      a.pads.left = static_cast<int>(pads[1]);
      a.pads.bottom = static_cast<int>(pads[2]);
      a.pads.right = static_cast<int>(pads[3]);
    }
  } else if (auto_pad == "VALID") {
    a.padding = Padding::kExplicit;
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    a.padding = Padding::kExplicit;
    const bool lower = auto_pad == "SAME_LOWER";
    same_pads(x.full[2], kh, a.stride_h, a.dilation_h, lower, a.pads.top, a.pads.bottom, 0);
    same_pads(x.full[3], kw, a.stride_w, a.dilation_w, lower, a.pads.left, a.pads.right, 0);
  } else {
    fail("attribute auto_pad='{}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", auto_pad);
  }
  std::optional<Tensor> bias;
  if (has_input(2)) bias = weight_tensor(const_input(2, "bias B"), "B");
  if (transpose) {
    auto op_ = attr_ints("output_padding");
    if (!op_.empty() && op_.size() != 2) fail("attribute 'output_padding' must have 2 values");
    a.out_pad_h = op_.empty() ? 0 : static_cast<int>(op_[0]);
    a.out_pad_w = op_.empty() ? 0 : static_cast<int>(op_[1]);
    auto os = attr_ints("output_shape");
    if (!os.empty()) {
      if (os.size() == 4) os = {os[2], os[3]};
      if (os.size() != 2) fail("attribute 'output_shape' must have 2 (or 4) values");
      // total padding = stride*(in-1) + output_padding + eff - out; SAME_UPPER-style split
      std::int64_t in[2] = {x.full[2], x.full[3]}, k[2] = {kh, kw};
      int s[2] = {a.stride_h, a.stride_w}, d[2] = {a.dilation_h, a.dilation_w},
          opd[2] = {a.out_pad_h, a.out_pad_w};
      int* before[2] = {&a.pads.top, &a.pads.left};
      int* after[2] = {&a.pads.bottom, &a.pads.right};
      const bool lower = auto_pad == "SAME_LOWER";
      for (int i = 0; i < 2; ++i) {
        const std::int64_t total = s[i] * (in[i] - 1) + opd[i] + (k[i] - 1) * d[i] + 1 - os[static_cast<std::size_t>(i)];
        if (total < 0) fail("output_shape {} is larger than the transposed conv can produce", dims_str(os));
        *before[i] = static_cast<int>(lower ? total - total / 2 : total / 2);
        *after[i] = static_cast<int>(total - *before[i]);
      }
    }
    const NodeId id = builder_.conv_transpose(name_for(), x.id, weight_tensor(w, "W"), bias, a);
    const Shape& s = builder_.shape(id);
    set_output(0, node_value(id, {kBatch, s[0], s[1], s[2]}, 0));
  } else {
    const NodeId id = builder_.conv2d(name_for(), x.id, weight_tensor(w, "W"), bias, a);
    const Shape& s = builder_.shape(id);
    set_output(0, node_value(id, {kBatch, s[0], s[1], s[2]}, 0));
  }
  (void)op;
}

void Loader::pool(bool max) {
  const Value& x = get(0);
  if (x.is_const || x.full.size() != 4 || x.batch_axis != 0)
    fail("only 2-D pooling of NCHW inputs is supported");
  auto ks = attr_ints("kernel_shape"), strides = attr_ints("strides"), pads = attr_ints("pads"),
       dil = attr_ints("dilations");
  if (ks.size() != 2) fail("attribute 'kernel_shape' must have 2 values");
  if (ks[0] < 1 || ks[1] < 1 || ks[0] > x.full[2] + 65536 || ks[1] > x.full[3] + 65536)
    fail("attribute 'kernel_shape' {} must be >= 1 and fit the input", dims_str(ks));
  if (!strides.empty() && strides.size() != 2) fail("attribute 'strides' must have 2 values");
  if (std::any_of(strides.begin(), strides.end(), [](auto v) { return v < 1 || v > 65536; }))
    fail("attribute 'strides' {} must be in [1, 65536]", dims_str(strides));
  if (std::any_of(pads.begin(), pads.end(), [](auto v) { return v < 0 || v > 65536; }))
    fail("attribute 'pads' {} must be in [0, 65536]", dims_str(pads));
  if (!dil.empty() && (dil.size() != 2 || dil[0] != 1 || dil[1] != 1))
    fail("attribute 'dilations' [{}] is not supported (only 1)", fmt::join(dil, ", "));
  if (attr_int("storage_order", 0) != 0) fail("attribute storage_order=1 is not supported");
  if (max && cur_->output_size() > 1 && !cur_->output(1).empty())
    fail("output 'Indices' is not supported");
  Pool2DAttrs a;
  a.kernel_h = static_cast<int>(ks[0]);
  a.kernel_w = static_cast<int>(ks[1]);
  a.stride_h = strides.empty() ? 1 : static_cast<int>(strides[0]);
  a.stride_w = strides.empty() ? 1 : static_cast<int>(strides[1]);
  a.ceil_mode = attr_int("ceil_mode", 0) != 0;
  a.count_include_pad = !max && attr_int("count_include_pad", 0) != 0;
  const std::string auto_pad = attr_str("auto_pad", "NOTSET");
  const bool any_pad = std::any_of(pads.begin(), pads.end(), [](auto p) { return p != 0; });
  if (auto_pad != "NOTSET" && any_pad)
    fail("attribute auto_pad={} with explicit pads is invalid", auto_pad);
  a.padding = Padding::kExplicit;
  if (auto_pad == "NOTSET") {
    if (!pads.empty() && pads.size() != 4) fail("attribute 'pads' must have 4 values");
    if (!pads.empty()) {
      a.pads = {static_cast<int>(pads[0]), static_cast<int>(pads[2]), static_cast<int>(pads[1]),
                static_cast<int>(pads[3])};
    }
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    const bool lower = auto_pad == "SAME_LOWER";
    auto sp = [&](std::int64_t in, int k, int s, int& b, int& e) {
      const std::int64_t out = (in + s - 1) / s;
      const std::int64_t total = std::max<std::int64_t>((out - 1) * s + k - in, 0);
      b = static_cast<int>(lower ? total - total / 2 : total / 2);
      e = static_cast<int>(total - b);
    };
    sp(x.full[2], a.kernel_h, a.stride_h, a.pads.top, a.pads.bottom);
    sp(x.full[3], a.kernel_w, a.stride_w, a.pads.left, a.pads.right);
  } else if (auto_pad != "VALID") {
    fail("attribute auto_pad='{}' is not supported", auto_pad);
  }
  const NodeId id = max ? builder_.max_pool(name_for(), x.id, a) : builder_.avg_pool(name_for(), x.id, a);
  const Shape& s = builder_.shape(id);
  set_output(0, node_value(id, {kBatch, s[0], s[1], s[2]}, 0));
}

void Loader::binary(OpType op) {
  const Value& a = get(0);
  const Value& b = get(1);
  if (opset_ < 7 && attr("broadcast")) fail("legacy 'broadcast' attribute (opset < 7)");
  const Value& like = a.is_const ? b : a;
  if (!a.is_const && !b.is_const) {
    if (a.full.size() != b.full.size() || a.batch_axis != b.batch_axis) {
      fail("operands {} and {} have different ranks or batch axes (both come from the graph "
           "input; supported when their ranks match)", dims_str(a.full), dims_str(b.full));
    }
  }
  if (a.is_const && b.full.size() < a.dims.size()) fail("constant A has a higher rank than B");
  // A per-channel or scalar constant on an [N, C, ...] value becomes a ScaleOffset (one pass,
  // folded into a preceding Conv by GraphBuilder::build), as BatchNormalization.
  const Value& c = a.is_const ? a : b;
  const bool const_right = b.is_const;
  if (a.is_const != b.is_const && like.batch_axis == 0 && like.full.size() >= 2 &&
      (const_right || op == OpType::kAdd || op == OpType::kMul) && !c.is_int &&
      c.dims.size() <= like.full.size()) {
    const std::int64_t ch = like.full[1];
    std::vector<std::int64_t> d(like.full.size() - c.dims.size(), 1);
    d.insert(d.end(), c.dims.begin(), c.dims.end());
    bool ok = d[0] == 1 && (d[1] == 1 || d[1] == ch);
    for (std::size_t k = 2; k < d.size(); ++k) ok = ok && d[k] == 1;
    if (ok && !c.f.empty()) {
      std::vector<float> scale(static_cast<std::size_t>(ch), 1.0f), offset(static_cast<std::size_t>(ch), 0.0f);
      for (std::int64_t k = 0; k < ch; ++k) {
        const float v = c.f[d[1] == 1 ? 0 : static_cast<std::size_t>(k)];
        auto& sc = scale[static_cast<std::size_t>(k)];
        auto& of = offset[static_cast<std::size_t>(k)];
        switch (op) {
          case OpType::kAdd: of = v; break;
          case OpType::kSub: of = -v; break;
          case OpType::kMul: sc = v; break;
          default: sc = 1.0f / v; break;
        }
      }
      const NodeId id = builder_.scale_offset(name_for(), like.id, Tensor::from(Shape{ch}, scale),
                                              Tensor::from(Shape{ch}, offset));
      set_output(0, node_value(id, like.full, 0));
      return;
    }
  }
  const NodeId na = as_node(a, like, "A");
  const NodeId nb = as_node(b, like, "B");
  NodeId id;
  switch (op) {
    case OpType::kAdd: id = builder_.add(name_for(), na, nb); break;
    case OpType::kSub: id = builder_.sub(name_for(), na, nb); break;
    case OpType::kMul: id = builder_.mul(name_for(), na, nb); break;
    default: id = builder_.div(name_for(), na, nb); break;
  }
  std::vector<std::int64_t> full = builder_.shape(id).dims();
  full.insert(full.begin() + like.batch_axis, kBatch);
  set_output(0, node_value(id, std::move(full), like.batch_axis));
}

void Loader::unary_op(const std::string& op) {
  const Value& x = get(0);
  if (x.is_const) fail("constant input: not foldable by this loader");
  const std::string name = name_for();
  NodeId id = -1;
  if (op == "Identity" || op == "Dropout") {
    if (op == "Dropout" && cur_->output_size() > 1 && !cur_->output(1).empty())
      fail("output 'mask' is not supported (inference only)");
    if (op == "Dropout" && has_input(2)) {
      const Value& t = const_input(2, "training_mode");
      if (std::any_of(t.i.begin(), t.i.end(), [](auto v) { return v != 0; }))
        fail("training_mode=true is not supported (inference only)");
    }
    set_output(0, x);
    return;
  }
  if (op == "Cast") {
    const auto to = attr_int("to", 0);
    if (to != onnx::TensorProto::FLOAT)
      fail("cast of data to {} is not supported (float32 only)", onnx_type_name(static_cast<int>(to)));
    set_output(0, x);
    return;
  }
  if (op == "GlobalAveragePool") {
    if (x.full.size() != 4 || x.batch_axis != 0) fail("input must be NCHW, got {}", dims_str(x.full));
    id = builder_.global_avg_pool(name + ":gap", x.id);
    id = builder_.reshape(name, id, Shape{x.full[1], 1, 1});
    set_output(0, node_value(id, {kBatch, x.full[1], 1, 1}, 0));
    return;
  }
  if (op == "Relu") id = builder_.relu(name, x.id);
  else if (op == "Sigmoid") id = builder_.sigmoid(name, x.id);
  else if (op == "Tanh") id = builder_.tanh(name, x.id);
  else if (op == "Sqrt") id = builder_.sqrt(name, x.id);
  else if (op == "HardSwish") id = builder_.hard_swish(name, x.id);
  else if (op == "LeakyRelu") id = builder_.leaky_relu(name, x.id, attr_float("alpha", 0.01f));
  else if (op == "HardSigmoid")
    id = builder_.hard_sigmoid(name, x.id, attr_float("alpha", 0.2f), attr_float("beta", 0.5f));
  else if (op == "Pow") {
    const auto e = floats(const_input(1, "exponent Y"), "Y");
    if (e.size() != 1) fail("exponent Y must be a scalar, got {} values", e.size());
    id = builder_.pow(name, x.id, e[0]);
  } else if (op == "Clip") {
    float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
    if (opset_ < 11) {
      lo = attr_float("min", lo);
      hi = attr_float("max", hi);
    } else {
      if (has_input(1)) {
        const auto v = floats(const_input(1, "min"), "min");
        if (v.size() != 1) fail("min must be a scalar");
        lo = v[0];
      }
      if (has_input(2)) {
        const auto v = floats(const_input(2, "max"), "max");
        if (v.size() != 1) fail("max must be a scalar");
        hi = v[0];
      }
    }
    if (lo == 0.0f && hi == 6.0f) id = builder_.relu6(name, x.id);
    else if (lo == 0.0f && std::isinf(hi) && hi > 0) id = builder_.relu(name, x.id);
    else id = builder_.clip(name, x.id, lo, hi);
  }
  set_output(0, node_value(id, x.full, x.batch_axis));
}

void Loader::batch_norm() {
  const Value& x = get(0);
  if (x.is_const || x.batch_axis != 0 || x.full.size() < 2)
    fail("input X must be [N, C, ...] from the graph input");
  if (attr_int("training_mode", 0) != 0) fail("attribute training_mode=1 is not supported (inference only)");
  if (opset_ < 9 && attr_int("spatial", 1) != 1) fail("attribute spatial=0 is not supported");
  for (int k = 1; k < cur_->output_size(); ++k)
    if (!cur_->output(k).empty()) fail("outputs beyond Y (training statistics) are not supported");
  const NodeId id = builder_.batch_norm(
      name_for(), x.id, weight_tensor(const_input(3, "mean"), "mean"),
      weight_tensor(const_input(4, "var"), "var"), weight_tensor(const_input(1, "scale"), "scale"),
      weight_tensor(const_input(2, "B"), "B"), attr_float("epsilon", 1e-5f));
  set_output(0, node_value(id, x.full, 0));
}

void Loader::resize(bool upsample) {
  const Value& x = get(0);
  if (x.is_const || x.full.size() != 4 || x.batch_axis != 0)
    fail("only NCHW inputs are supported, got {}", x.is_const ? "a constant" : dims_str(x.full));
  std::vector<float> scales;
  std::vector<std::int64_t> sizes;
  if (upsample) {
    scales = opset_ >= 9 ? floats(const_input(1, "scales"), "scales") : attr_floats("scales");
  } else if (opset_ < 11) {
    scales = floats(const_input(1, "scales"), "scales");
  } else {
    if (has_input(3)) sizes = ints(const_input(3, "sizes"), "sizes");
    if (sizes.empty() && has_input(2)) scales = floats(const_input(2, "scales"), "scales");
    if (attr_int("antialias", 0)) fail("attribute antialias=1 is not supported");
    if (!attr_ints("axes").empty()) fail("attribute 'axes' is not supported");
    if (attr_str("keep_aspect_ratio_policy", "stretch") != "stretch")
      fail("attribute keep_aspect_ratio_policy is not supported (stretch only)");
  }
  const std::int64_t h = x.full[2], w = x.full[3];
  ResizeAttrs a;
  if (!sizes.empty()) {
    if (sizes.size() != 4 || (sizes[0] != kBatch && sizes[0] != declared_batch_ && sizes[0] != 1))
      fail("sizes must have 4 values [N, C, H, W], got {}", dims_str(sizes));
    if (sizes[1] != x.full[1]) fail("sizes may not change the channels");
    a.out_h = static_cast<int>(sizes[2]);
    a.out_w = static_cast<int>(sizes[3]);
  } else {
    if (scales.size() != 4) fail("scales must have 4 values, got {}", scales.size());
    if (scales[0] != 1.0f || scales[1] != 1.0f)
      fail("scales [{}] must be 1 on N and C", fmt::join(scales, ", "));
    if (!(scales[2] > 0 && scales[3] > 0)) fail("scales must be positive");
    a.out_h = static_cast<int>(std::floor(static_cast<double>(h) * scales[2]));
    a.out_w = static_cast<int>(std::floor(static_cast<double>(w) * scales[3]));
    a.scale_h = scales[2];
    a.scale_w = scales[3];
  }
  const std::string mode = attr_str("mode", "nearest");
  const std::string coord = upsample || opset_ < 11 ? "asymmetric"
                                                    : attr_str("coordinate_transformation_mode", "half_pixel");
  NodeId id;
  if (mode == "nearest") {
    if (coord == "asymmetric") a.coord = ResizeCoord::kAsymmetric;
    else if (coord == "half_pixel") a.coord = ResizeCoord::kHalfPixel;
    else if (coord == "pytorch_half_pixel") a.coord = ResizeCoord::kPytorchHalfPixel;
    else if (coord == "align_corners") a.coord = ResizeCoord::kAlignCorners;
    else if (coord == "tf_half_pixel_for_nn") a.coord = ResizeCoord::kTfHalfPixelForNN;
    else fail("coordinate_transformation_mode='{}' is not supported", coord);
    const std::string nm = upsample || opset_ < 11 ? "floor" : attr_str("nearest_mode", "round_prefer_floor");
    if (nm == "round_prefer_floor") a.nearest = NearestRound::kRoundPreferFloor;
    else if (nm == "round_prefer_ceil") a.nearest = NearestRound::kRoundPreferCeil;
    else if (nm == "floor") a.nearest = NearestRound::kFloor;
    else if (nm == "ceil") a.nearest = NearestRound::kCeil;
    else fail("nearest_mode='{}' is not supported", nm);
    id = builder_.resize_nearest(name_for(), x.id, a);
  } else if (mode == "linear" || mode == "bilinear") {
    if (coord == "align_corners") a.align_corners = true;
    else if (coord == "half_pixel") a.half_pixel_centers = true;
    else if (coord == "pytorch_half_pixel") {
      a.half_pixel_centers = true;
      a.coord = ResizeCoord::kPytorchHalfPixel;  // an axis of output size 1 samples 0
    }
    else if (coord != "asymmetric") fail("coordinate_transformation_mode='{}' is not supported for linear", coord);
    id = builder_.resize_bilinear(name_for(), x.id, a);
  } else {
    fail("mode='{}' is not supported (nearest, linear)", mode);
  }
  set_output(0, node_value(id, {kBatch, x.full[1], a.out_h, a.out_w}, 0));
}

void Loader::gemm() {
  const Value& a = get(0);
  if (a.is_const || a.full.size() != 2 || a.batch_axis != 0)
    fail("input A must be [N, K] from the graph input");
  if (attr_int("transA", 0)) fail("attribute transA=1 is not supported (A is [batch, K])");
  const Value& b = const_input(1, "B");
  if (b.dims.size() != 2) fail("B must be 2-D, got {}", dims_str(b.dims));
  const bool tb = attr_int("transB", 0) != 0;
  const float alpha = attr_float("alpha", 1.0f), beta = attr_float("beta", 1.0f);
  const std::int64_t k = tb ? b.dims[1] : b.dims[0], m = tb ? b.dims[0] : b.dims[1];
  if (k != a.full[1]) fail("B {} does not match A {} (transB={})", dims_str(b.dims), dims_str(a.full), tb);
  std::vector<float> bf = floats(b, "B");
  if (b.is_int) fail("weight B must be float32 or float16, got {}", b.type_name);
  Tensor wt(Shape{m, k});
  for (std::int64_t o = 0; o < m; ++o)
    for (std::int64_t i = 0; i < k; ++i)
      wt.data<float>()[o * k + i] = alpha * (tb ? bf[static_cast<std::size_t>(o * k + i)] : bf[static_cast<std::size_t>(i * m + o)]);
  std::optional<Tensor> bias;
  if (has_input(2)) {
    const Value& c = const_input(2, "C");
    if (c.is_int) fail("C must be float32 or float16, got {}", c.type_name);
    if (c.count() != m && c.count() != 1)
      fail("C {} must broadcast as a row vector of {} (a per-batch-row C is not supported)",
           dims_str(c.dims), m);
    Tensor bt(Shape{m});
    for (std::int64_t o = 0; o < m; ++o) bt.data<float>()[o] = beta * c.f[c.count() == 1 ? 0 : static_cast<std::size_t>(o)];
    bias = bt;
  }
  const NodeId id = builder_.fully_connected(name_for(), a.id, wt, bias);
  set_output(0, node_value(id, {kBatch, m}, 0));
}

void Loader::matmul() {
  const Value& a = get(0);
  const Value& b = get(1);
  if (a.is_const) fail("a constant left operand A is not supported");
  if (b.is_const) {
    if (b.dims.size() != 2) fail("constant B must be 2-D, got {}", dims_str(b.dims));
    if (b.is_int) fail("weight B must be float32 or float16, got {}", b.type_name);
    if (a.batch_axis != static_cast<int>(a.full.size()) - 2 && a.full.size() == 2) {
    }
    if (a.full.back() != b.dims[0])
      fail("A {} and B {}: inner dimensions differ", dims_str(a.full), dims_str(b.dims));
    if (a.batch_axis == static_cast<int>(a.full.size()) - 1) fail("the batch axis is A's last axis");
    if (a.full.size() == 2) {
      const std::int64_t k = b.dims[0], m = b.dims[1];
      Tensor wt(Shape{m, k});
      for (std::int64_t o = 0; o < m; ++o)
        for (std::int64_t i = 0; i < k; ++i)
          wt.data<float>()[o * k + i] = b.f[static_cast<std::size_t>(i * m + o)];
      const NodeId id = builder_.fully_connected(name_for(), a.id, wt, std::nullopt);
      set_output(0, node_value(id, {kBatch, m}, 0));
      return;
    }
    if (a.batch_axis == static_cast<int>(a.full.size()) - 2)
      fail("the batch axis is A's row axis (rows of different items in one matrix)");
    const NodeId nb = builder_.constant(name_for() + ":B", weight_tensor(b, "B"));
    const NodeId id = builder_.matmul(name_for(), a.id, nb);
    std::vector<std::int64_t> full = a.full;
    full.back() = b.dims[1];
    set_output(0, node_value(id, std::move(full), a.batch_axis));
    return;
  }
  if (a.full.size() != b.full.size() || a.batch_axis != b.batch_axis ||
      a.batch_axis >= static_cast<int>(a.full.size()) - 2)
    fail("operands {} and {} from the graph input must have the same rank and their batch on a "
         "leading axis", dims_str(a.full), dims_str(b.full));
  const NodeId id = builder_.matmul(name_for(), a.id, b.id);
  std::vector<std::int64_t> full = builder_.shape(id).dims();
  full.insert(full.begin() + a.batch_axis, kBatch);
  set_output(0, node_value(id, std::move(full), a.batch_axis));
}

void Loader::reshape_like(const std::string& op) {
  const Value& x = get(0);
  const auto r = static_cast<std::int64_t>(x.full.size());
  std::vector<std::int64_t> full;
  int batch = -1;
  if (op == "Flatten") {
    std::int64_t axis = attr_int("axis", 1);
    if (axis < 0) axis += r;
    if (axis != x.batch_axis + 1 || x.batch_axis != 0)
      fail("Flatten axis {} of {} merges the batch with other axes (only axis 1 with the batch "
           "first is supported)", axis, dims_str(x.full));
    full = {kBatch, numel(x.item())};
    batch = 0;
  } else if (op == "Reshape") {
    auto t = ints(const_input(1, "shape"), "shape");
    if (opset_ < 5) fail("Reshape with a 'shape' attribute (opset < 5) is not supported");
    const bool allowzero = attr_int("allowzero", 0) != 0;
    const std::int64_t items = numel(x.item());
    std::int64_t known = 1;
    int infer = -1;
    for (std::size_t k = 0; k < t.size(); ++k) {
      if (t[k] == 0 && !allowzero) {
        if (k >= x.full.size()) fail("shape {} copies a dimension {} the input {} lacks", dims_str(t), k, dims_str(x.full));
        t[k] = x.full[k];
      }
      if (t[k] == kBatch) {
        if (batch >= 0) fail("shape {} names the batch twice", dims_str(t));
        batch = static_cast<int>(k);
      } else if (t[k] == -1) {
        if (infer >= 0) fail("shape {} has two -1 entries", dims_str(t));
        infer = static_cast<int>(k);
      } else if (t[k] < 0 || t[k] % kBatch == 0) {
        fail("shape {} is invalid or computes with the batch size", dims_str(t));
      } else {
        known *= t[k];
      }
    }
    if (batch < 0 && declared_batch_ > 0 && !t.empty() && t[0] == declared_batch_) {
      batch = 0;  // a model exported with a fixed batch: its first dim stays the batch
      known /= declared_batch_;
    }
    if (batch < 0 && infer >= 0) {  // -1 absorbs the batch; must then be alone on its side
      if (known == 0 || items % known != 0)
        fail("cannot reshape {} to {}", dims_str(x.full), dims_str(t));
      const std::int64_t rest = items / known;
      if (rest != 1 || infer != 0)
        fail("shape {} merges the batch of {} with other dimensions (the batch must stay a "
             "dimension of its own)", dims_str(t), dims_str(x.full));
      batch = infer;
      infer = -1;
    }
    if (batch < 0) fail("shape {} of {} drops the batch dimension", dims_str(t), dims_str(x.full));
    if (infer >= 0) {
      if (known == 0 || items % known != 0) fail("cannot reshape {} to {}", dims_str(x.full), dims_str(t));
      t[static_cast<std::size_t>(infer)] = items / known;
    }
    t[static_cast<std::size_t>(batch)] = kBatch;
    std::vector<std::int64_t> item = t;
    item.erase(item.begin() + batch);
    if (numel(item) != items) fail("cannot reshape {} to {}", dims_str(x.full), dims_str(t));
    full = t;
  } else {
    std::vector<std::int64_t> axes = opset_ >= 13 ? (has_input(1) ? ints(const_input(1, "axes"), "axes")
                                                                   : std::vector<std::int64_t>{})
                                                  : attr_ints("axes");
    full = x.full;
    batch = x.batch_axis;
    if (op == "Unsqueeze") {
      const auto outr = r + static_cast<std::int64_t>(axes.size());
      for (auto& a : axes) a = a < 0 ? a + outr : a;
      std::sort(axes.begin(), axes.end());
      std::vector<char> is_batch(full.size(), 0);
      is_batch[static_cast<std::size_t>(batch)] = 1;
      for (auto a : axes) {
        if (a < 0 || a > static_cast<std::int64_t>(full.size())) fail("axis {} out of range", a);
        full.insert(full.begin() + a, 1);
        is_batch.insert(is_batch.begin() + a, 0);
      }
      batch = static_cast<int>(std::find(is_batch.begin(), is_batch.end(), 1) - is_batch.begin());
    } else {
      std::vector<std::int64_t> nf;
      int nb = -1;
      for (std::int64_t k = 0; k < r; ++k) {
        const bool listed = axes.empty() ? (full[static_cast<std::size_t>(k)] == 1)
                                         : std::find_if(axes.begin(), axes.end(), [&](auto a) {
                                             return (a < 0 ? a + r : a) == k;
                                           }) != axes.end();
        if (k == batch) {
          if (listed && !axes.empty()) fail("squeezes the batch axis");
          nb = static_cast<int>(nf.size());
          nf.push_back(kBatch);
          continue;
        }
        if (listed && full[static_cast<std::size_t>(k)] != 1)
          fail("axis {} of {} has size {}, not 1", k, dims_str(x.full), full[static_cast<std::size_t>(k)]);
        if (!listed) nf.push_back(full[static_cast<std::size_t>(k)]);
      }
      full = nf;
      batch = nb;
    }
  }
  set_output(0, reshaped(x, std::move(full), batch));
}

void Loader::softmax() {
  const Value& x = get(0);
  const auto r = static_cast<std::int64_t>(x.full.size());
  std::int64_t axis = attr_int("axis", opset_ >= 13 ? -1 : 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r) fail("axis {} out of range for rank {}", axis, r);
  if (opset_ < 13 && axis < r - 1) {
    // Old semantics: softmax over all axes from `axis` on, flattened.
    if (axis <= x.batch_axis) fail("axis {} covers the batch axis", axis);
    std::vector<std::int64_t> flat(x.full.begin(), x.full.begin() + axis);
    std::int64_t tail = 1;
    for (std::int64_t k = axis; k < r; ++k) tail *= x.full[static_cast<std::size_t>(k)];
    flat.push_back(tail);
    Value f = reshaped(x, flat, x.batch_axis);
    const NodeId s = builder_.softmax(name_for() + ":flat", f.id, -1);
    set_output(0, reshaped(node_value(s, flat, x.batch_axis), x.full, x.batch_axis));
    return;
  }
  const int a = item_axis(x, axis, "axis");
  set_output(0, node_value(builder_.softmax(name_for(), x.id, a), x.full, x.batch_axis));
}

void Loader::concat() {
  const Value& x0 = get(0);
  if (x0.is_const) fail("a constant first input is not supported");
  std::vector<NodeId> ids;
  for (int k = 0; k < cur_->input_size(); ++k) {
    const Value& v = get(k);
    if (v.is_const) fail("input {} is a constant; concatenating constants to data is not supported", k);
    if (v.full.size() != x0.full.size() || v.batch_axis != x0.batch_axis)
      fail("input {} {} does not match {} in rank or batch axis", k, dims_str(v.full), dims_str(x0.full));
    ids.push_back(v.id);
  }
  const int a = item_axis(x0, attr_int("axis", 0), "axis");
  const NodeId id = builder_.concat(name_for(), ids, a);
  std::vector<std::int64_t> full = builder_.shape(id).dims();
  full.insert(full.begin() + x0.batch_axis, kBatch);
  set_output(0, node_value(id, std::move(full), x0.batch_axis));
}

void Loader::transpose() {
  const Value& x = get(0);
  if (x.is_const) fail("constant input: not foldable by this loader");
  const auto r = static_cast<int>(x.full.size());
  std::vector<std::int64_t> perm = attr_ints("perm");
  if (perm.empty())
    for (int k = r - 1; k >= 0; --k) perm.push_back(k);
  if (static_cast<int>(perm.size()) != r) fail("perm has {} entries for rank {}", perm.size(), r);
  std::vector<int> item_perm;
  std::vector<std::int64_t> full;
  int nb = -1;
  for (int k = 0; k < r; ++k) {
    const std::int64_t p = perm[static_cast<std::size_t>(k)];
    if (p < 0 || p >= r) fail("perm entry {} out of range", p);
    full.push_back(x.full[static_cast<std::size_t>(p)]);
    if (p == x.batch_axis) {
      nb = k;
      continue;
    }
    item_perm.push_back(static_cast<int>(p > x.batch_axis ? p - 1 : p));
  }
  bool identity = true;
  for (std::size_t k = 0; k < item_perm.size(); ++k) identity = identity && item_perm[k] == static_cast<int>(k);
  const NodeId id = identity ? x.id : builder_.transpose(name_for(), x.id, item_perm);
  set_output(0, node_value(id, std::move(full), nb));
}

void Loader::pad() {
  const Value& x = get(0);
  if (x.is_const) fail("constant input: not foldable by this loader");
  const std::string mode = attr_str("mode", "constant");
  if (mode != "constant") fail("mode='{}' is not supported (constant only)", mode);
  std::vector<std::int64_t> pads;
  float value = 0.0f;
  if (opset_ < 11) {
    pads = attr_ints("pads");
    value = attr_float("value", 0.0f);
  } else {
    pads = ints(const_input(1, "pads"), "pads");
    if (has_input(2)) {
      const auto v = floats(const_input(2, "constant_value"), "constant_value");
      if (!v.empty()) value = v[0];
    }
    if (has_input(3)) fail("input 'axes' is not supported");
  }
  const auto r = x.full.size();
  if (pads.size() != 2 * r) fail("pads has {} values, expected {} for rank {}", pads.size(), 2 * r, r);
  if (pads[static_cast<std::size_t>(x.batch_axis)] != 0 || pads[static_cast<std::size_t>(x.batch_axis) + r] != 0)
    fail("pads the batch axis");
  std::vector<std::int64_t> b, e, full = x.full;
  for (std::size_t k = 0; k < r; ++k) {
    if (static_cast<int>(k) == x.batch_axis) continue;
    b.push_back(pads[k]);
    e.push_back(pads[k + r]);
    full[k] += pads[k] + pads[k + r];
  }
  set_output(0, node_value(builder_.pad(name_for(), x.id, b, e, value), std::move(full), x.batch_axis));
}

void Loader::slice() {
  const Value& x = get(0);
  if (x.is_const) fail("constant input of rank {}: not foldable by this loader", x.dims.size());
  std::vector<std::int64_t> starts, ends, axes, steps;
  if (opset_ < 10) {
    starts = attr_ints("starts");
    ends = attr_ints("ends");
    axes = attr_ints("axes");
  } else {
    starts = ints(const_input(1, "starts"), "starts");
    ends = ints(const_input(2, "ends"), "ends");
    if (has_input(3)) axes = ints(const_input(3, "axes"), "axes");
    if (has_input(4)) steps = ints(const_input(4, "steps"), "steps");
  }
  const auto r = static_cast<std::int64_t>(x.full.size());
  if (axes.empty())
    for (std::size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<std::int64_t>(k));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (starts.size() != ends.size() || axes.size() != starts.size() || steps.size() != starts.size())
    fail("starts, ends, axes and steps differ in length");
  std::vector<std::int64_t> item = x.item();
  std::vector<std::int64_t> b(item.size(), 0), e = item, st(item.size(), 1);
  std::vector<std::int64_t> full = x.full;
  for (std::size_t k = 0; k < axes.size(); ++k) {
    std::int64_t ax = axes[k] < 0 ? axes[k] + r : axes[k];
    if (ax < 0 || ax >= r) fail("axis {} out of range", axes[k]);
    if (ax == x.batch_axis) {
      if (starts[k] == 0 && ends[k] >= std::numeric_limits<std::int32_t>::max() && steps[k] == 1) continue;
      fail("slices the batch axis");
    }
    if (steps[k] <= 0) fail("step {} is not supported (positive steps only)", steps[k]);
    const int ia = static_cast<int>(ax > x.batch_axis ? ax - 1 : ax);
    const std::int64_t len = item[static_cast<std::size_t>(ia)];
    std::int64_t s0 = starts[k] < 0 ? starts[k] + len : starts[k];
    std::int64_t e0 = ends[k] < 0 ? ends[k] + len : ends[k];
    s0 = std::clamp<std::int64_t>(s0, 0, len);
    e0 = std::clamp<std::int64_t>(e0, 0, len);
    if (e0 <= s0) fail("axis {}: the slice [{}, {}) is empty (not supported)", ax, starts[k], ends[k]);
    b[static_cast<std::size_t>(ia)] = s0;
    e[static_cast<std::size_t>(ia)] = e0;
    st[static_cast<std::size_t>(ia)] = steps[k];
    full[static_cast<std::size_t>(ax)] = (e0 - s0 + steps[k] - 1) / steps[k];
  }
  set_output(0, node_value(builder_.slice(name_for(), x.id, b, e, st), std::move(full), x.batch_axis));
}

void Loader::reduce_mean() {
  const Value& x = get(0);
  if (x.is_const) fail("constant input: not foldable by this loader");
  std::vector<std::int64_t> axes = opset_ >= 18 ? (has_input(1) ? ints(const_input(1, "axes"), "axes")
                                                                : std::vector<std::int64_t>{})
                                                : attr_ints("axes");
  const auto r = static_cast<std::int64_t>(x.full.size());
  if (axes.empty())
    for (std::int64_t k = 0; k < r; ++k) axes.push_back(k);
  std::vector<int> ia;
  for (auto a : axes) ia.push_back(item_axis(x, a, "axis"));
  const NodeId id = builder_.reduce_mean(name_for() + (attr_int("keepdims", 1) ? "" : ":keep"), x.id, ia);
  std::vector<std::int64_t> full = builder_.shape(id).dims();
  full.insert(full.begin() + x.batch_axis, kBatch);
  Value v = node_value(id, full, x.batch_axis);
  if (!attr_int("keepdims", 1)) {
    std::vector<std::int64_t> nf;
    int nb = x.batch_axis;
    for (std::int64_t k = 0; k < r; ++k) {
      const bool reduced = std::find_if(axes.begin(), axes.end(), [&](auto a) { return (a < 0 ? a + r : a) == k; }) != axes.end();
      if (!reduced) nf.push_back(full[static_cast<std::size_t>(k)]);
      else if (k < x.batch_axis) --nb;
    }
    v = reshaped(v, nf, nb);
  }
  set_output(0, v);
}

std::string file_stem_or(const std::string& name, const std::string& fallback) {
  return name.empty() ? fallback : name;
}

Graph load_model_proto(const onnx::ModelProto& model, const OnnxOptions& options,
                       const std::string& name) {
  NEXUS_CHECK(model.has_graph(), "ONNX model '{}': has no graph", name);
  Loader loader(model, options, name);
  return loader.load();
}

}  // namespace

const std::vector<std::string>& onnx_supported_ops() {
  static const std::vector<std::string> ops = {
      "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
      "ConstantOfShape", "Conv", "ConvTranspose", "Div", "Dropout", "Flatten", "Gather",
      "Gemm", "GlobalAveragePool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu",
      "MatMul", "MaxPool", "Mul", "Pad", "Pow", "ReduceMean", "Relu", "Reshape", "Resize",
      "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose",
      "Unsqueeze", "Upsample"};
  return ops;
}

Graph load_onnx_bytes(std::string_view bytes, const OnnxOptions& options) {
  onnx::ModelProto model;
  NEXUS_CHECK(bytes.size() < static_cast<std::size_t>(std::numeric_limits<int>::max()),
              "ONNX model: {} bytes is too large (2 GiB limit of protobuf)", bytes.size());
  NEXUS_CHECK(model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())),
              "ONNX model ({} bytes): not a valid ONNX ModelProto (truncated or not an ONNX file)",
              bytes.size());
  NEXUS_CHECK(model.has_graph() && model.ir_version() >= 3,
              "ONNX model ({} bytes): not an ONNX model (no graph, or IR version {} < 3)",
              bytes.size(), model.ir_version());
  return load_model_proto(model, options,
                          file_stem_or(options.name, model.graph().name().empty()
                                                         ? std::string("onnx")
                                                         : model.graph().name()));
}

Graph load_onnx(const std::filesystem::path& path, const OnnxOptions& options) {
  std::ifstream in(path, std::ios::binary);
  NEXUS_CHECK(in.good(), "ONNX model '{}': cannot open the file", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  OnnxOptions opt = options;
  if (opt.external_data_dir.empty()) opt.external_data_dir = path.parent_path();
  if (opt.name.empty()) opt.name = path.stem().string();
  try {
    return load_onnx_bytes(bytes, opt);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.what()));
  }
}

}  // namespace nexus::model
