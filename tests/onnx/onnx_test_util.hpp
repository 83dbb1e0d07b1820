#pragma once
// Helpers of the ONNX tests: TensorProto files (ONNX test data) as float32 Tensors, comparison.
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "nexus/core/error.hpp"
#include "nexus/core/tensor.hpp"

namespace nexus::onnx_test {

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  NEXUS_CHECK(in.good(), "cannot read {}", p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline onnx::TensorProto read_tensor_proto(const std::filesystem::path& p) {
  onnx::TensorProto t;
  const std::string b = read_bytes(p);
  NEXUS_CHECK(t.ParseFromString(b), "{} is not a TensorProto", p.string());
  return t;
}

/// A float32 TensorProto as a Tensor; throws for other types.
inline Tensor to_tensor(const onnx::TensorProto& t) {
  NEXUS_CHECK(t.data_type() == onnx::TensorProto::FLOAT, "tensor '{}' is not float32", t.name());
  std::vector<std::int64_t> dims(t.dims().begin(), t.dims().end());
  Tensor out{Shape(dims)};
  const std::int64_t n = out.numel();
  if (!t.raw_data().empty()) {
    NEXUS_CHECK(static_cast<std::int64_t>(t.raw_data().size()) == n * 4, "bad raw data");
    std::memcpy(out.data<float>(), t.raw_data().data(), static_cast<std::size_t>(n) * 4);
  } else {
    NEXUS_CHECK(t.float_data_size() == n, "bad float data");
    for (std::int64_t i = 0; i < n; ++i) out.data<float>()[i] = t.float_data(static_cast<int>(i));
  }
  return out;
}

/// Largest |a - b| - rtol * |b| over elements (<= atol passes); NaNs count as failures.
struct Diff {
  double max_abs = 0, max_rel = 0;
  bool ok = true;
};
inline Diff compare(const Tensor& got, const Tensor& want, double atol, double rtol) {
  Diff d;
  const float* a = got.data<float>();
  const float* b = want.data<float>();
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    const double e = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(a[i]) != std::isnan(b[i]) || (!std::isnan(b[i]) && e > atol + rtol * std::fabs(b[i])))
      d.ok = false;
    d.max_abs = std::max(d.max_abs, e);
    if (b[i] != 0) d.max_rel = std::max(d.max_rel, e / std::fabs(b[i]));
  }
  return d;
}

}  // namespace nexus::onnx_test
