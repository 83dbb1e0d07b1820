// TensorFlow.js weights manifest loader and TF -> OIHW layout helpers.
#include "nexus/model/weights.hpp"

#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "nexus/core/error.hpp"

namespace nexus::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Sizes that come from a file are bounded before anything is allocated or read: a manifest
// claiming 100 GB, a shard path naming /dev/zero or a directory are errors, not allocations.
constexpr std::uint64_t kMaxWeightBytes = std::uint64_t{4} << 30;   // one tensor
constexpr std::uint64_t kMaxGroupBytes = std::uint64_t{16} << 30;   // the shards of one group

std::vector<std::uint8_t> read_file(const fs::path& path, const fs::path& manifest,
                                    std::uint64_t already) {
  std::error_code ec;
  NEXUS_CHECK(fs::is_regular_file(path, ec),
              "weights manifest {}: shard file {} is missing or not a regular file",
              manifest.string(), path.string());
  const std::uint64_t size = fs::file_size(path, ec);
  NEXUS_CHECK(!ec && already + size <= kMaxGroupBytes,
              "weights manifest {}: shard file {} is unreadable or makes its group larger than "
              "{} bytes",
              manifest.string(), path.string(), kMaxGroupBytes);
  std::ifstream in(path, std::ios::binary);
  NEXUS_CHECK(in.good(), "weights manifest {}: shard file {} is missing or unreadable",
              manifest.string(), path.string());
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  NEXUS_CHECK(static_cast<std::uint64_t>(in.gcount()) == size,
              "weights manifest {}: shard file {} could not be read in full", manifest.string(),
              path.string());
  return bytes;
}

// IEEE half -> float, including subnormals, inf and NaN.
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

template <typename T>
T load_le(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // x86/ARM hosts are little-endian, as tfjs writes
  return v;
}

struct Spec {
  std::string name;
  Shape shape;
  DType dtype = DType::kFloat32;  // result dtype
  std::string stored;             // "float32", "int32", "uint8", "uint16", "float16"
  double scale = 1.0, min = 0.0;
  std::size_t bytes_per_element = 4;
  std::uint64_t bytes = 0;        // numel × bytes_per_element, <= kMaxWeightBytes
};

// obj[key] as a string, "" when absent; a present non-string is an error naming the weight.
std::string string_field(const json& obj, const char* key, const fs::path& manifest,
                         const std::string& weight) {
  if (!obj.contains(key)) return {};
  NEXUS_CHECK(obj[key].is_string(), "weights manifest {}: weight '{}' has a non-string '{}' ({})",
              manifest.string(), weight, key, obj[key].dump());
  return obj[key].get<std::string>();
}

Spec parse_spec(const json& w, const fs::path& manifest) {
  NEXUS_CHECK(w.is_object() && w.contains("name") && w["name"].is_string(),
              "weights manifest {}: a weight entry has no string 'name'", manifest.string());
  Spec s;
  s.name = w["name"].get<std::string>();
  NEXUS_CHECK(w.contains("shape") && w["shape"].is_array(),
              "weights manifest {}: weight '{}' has no 'shape' array", manifest.string(), s.name);
  std::vector<std::int64_t> dims;
  for (const auto& d : w["shape"]) {
    NEXUS_CHECK(d.is_number_integer() && d.get<std::int64_t>() >= 0,
                "weights manifest {}: weight '{}' has a bad dimension {} (expected an integer "
                ">= 0)",
                manifest.string(), s.name, d.dump());
    dims.push_back(d.get<std::int64_t>());
  }
  s.shape = Shape(std::move(dims));
  const std::string dtype = string_field(w, "dtype", manifest, s.name);
  if (dtype == "float32") {
    s.dtype = DType::kFloat32;
  } else if (dtype == "int32") {
    s.dtype = DType::kInt32;
  } else {
    throw_error("weights manifest {}: weight '{}' has unknown dtype '{}' (expected float32 or "
                "int32)",
                manifest.string(), s.name, dtype);
  }
  s.stored = dtype;
  if (w.contains("quantization") && !w["quantization"].is_null()) {
    const json& q = w["quantization"];
    NEXUS_CHECK(q.is_object(), "weights manifest {}: weight '{}' has a non-object quantization",
                manifest.string(), s.name);
    const std::string qd = string_field(q, "dtype", manifest, s.name);
    if (qd == "uint8" || qd == "uint16") {
      NEXUS_CHECK(q.contains("scale") && q["scale"].is_number() && q.contains("min") &&
                      q["min"].is_number(),
                  "weights manifest {}: weight '{}' is {}-quantized without numeric scale/min",
                  manifest.string(), s.name, qd);
      s.scale = q["scale"].get<double>();
      s.min = q["min"].get<double>();
      s.bytes_per_element = qd == "uint8" ? 1 : 2;
    } else if (qd == "float16") {
      s.bytes_per_element = 2;
    } else {
      throw_error("weights manifest {}: weight '{}' has unknown quantization dtype '{}' "
                  "(expected uint8, uint16 or float16)",
                  manifest.string(), s.name, qd);
    }
    s.stored = qd;
  }
  // Overflow-safe: each factor is checked against the bound before it multiplies.
  std::uint64_t bytes = s.bytes_per_element;
  for (std::int64_t d : s.shape.dims()) {
    const auto u = static_cast<std::uint64_t>(d);
    NEXUS_CHECK(u == 0 || bytes <= kMaxWeightBytes / u,
                "weights manifest {}: weight '{}' of shape {} ({}) claims more than {} bytes "
                "(the limit for one tensor)",
                manifest.string(), s.name, s.shape, s.stored, kMaxWeightBytes);
    bytes *= u;
  }
  s.bytes = bytes;
  return s;
}

Tensor decode(const Spec& s, const std::uint8_t* p) {
  Tensor t(s.shape, s.dtype);
  const auto n = static_cast<std::size_t>(s.shape.numel());
  auto put = [&](std::size_t i, double v) {
    if (s.dtype == DType::kFloat32)
      t.data<float>()[i] = static_cast<float>(v);
    else
      t.data<std::int32_t>()[i] = static_cast<std::int32_t>(std::lround(v));
  };
  if (s.stored == "float32") {
    std::memcpy(t.raw_data(), p, n * 4);
  } else if (s.stored == "int32") {
    std::memcpy(t.raw_data(), p, n * 4);
  } else if (s.stored == "uint8") {
    // tfjs computes q * scale + min in double (JS numbers), then stores float32: same here.
    for (std::size_t i = 0; i < n; ++i) put(i, p[i] * s.scale + s.min);
  } else if (s.stored == "uint16") {
    for (std::size_t i = 0; i < n; ++i)
      put(i, load_le<std::uint16_t>(p + 2 * i) * s.scale + s.min);
  } else {  // float16
    for (std::size_t i = 0; i < n; ++i) put(i, half_to_float(load_le<std::uint16_t>(p + 2 * i)));
  }
  return t;
}

Tensor check_rank4(const Tensor& t, const char* what) {
  NEXUS_CHECK(t.shape().rank() == 4 && t.dtype() == DType::kFloat32,
              "{}: expected a rank-4 float32 kernel, got shape {} dtype {}", what, t.shape(),
              name_of(t.dtype()));
  return t;
}

}  // namespace

WeightMap load_tfjs_weights(const std::filesystem::path& manifest_json) {
  std::ifstream in(manifest_json);
  NEXUS_CHECK(in.good(), "weights manifest {} is missing or unreadable", manifest_json.string());
  json manifest;
  try {
    manifest = json::parse(in);
  } catch (const json::exception& e) {
    throw_error("weights manifest {} is not valid JSON: {}", manifest_json.string(), e.what());
  }
  NEXUS_CHECK(manifest.is_array(),
              "weights manifest {}: expected a JSON array of groups {{paths, weights}}",
              manifest_json.string());
  const fs::path dir = manifest_json.parent_path();

  WeightMap out;
  for (const json& group : manifest) {
    NEXUS_CHECK(group.is_object() && group.contains("paths") && group["paths"].is_array() &&
                    group.contains("weights") && group["weights"].is_array(),
                "weights manifest {}: each group needs arrays 'paths' and 'weights'",
                manifest_json.string());
    std::vector<std::uint8_t> bytes;
    std::string shard_names;
    for (const json& p : group["paths"]) {
      NEXUS_CHECK(p.is_string(), "weights manifest {}: a shard path is not a string",
                  manifest_json.string());
      auto shard = read_file(dir / p.get<std::string>(), manifest_json, bytes.size());
      bytes.insert(bytes.end(), shard.begin(), shard.end());
      shard_names += (shard_names.empty() ? "" : ", ") + (dir / p.get<std::string>()).string();
    }
    std::size_t offset = 0;
    for (const json& w : group["weights"]) {
      const Spec s = parse_spec(w, manifest_json);
      const auto need = static_cast<std::size_t>(s.bytes);
      NEXUS_CHECK(need <= bytes.size() - offset,
                  "weights file {} is truncated: weight '{}' (shape {}, {}) needs bytes [{}, {}) "
                  "but the shards hold {} bytes",
                  shard_names, s.name, s.shape, s.stored, offset, offset + need, bytes.size());
      NEXUS_CHECK(!out.contains(s.name), "weights manifest {}: weight '{}' appears twice",
                  manifest_json.string(), s.name);
      out.emplace(s.name, decode(s, bytes.data() + offset));
      offset += need;
    }
    NEXUS_CHECK(offset == bytes.size(),
                "weights file {} holds {} bytes but the manifest's shapes and dtypes account for "
                "{} bytes: byte size does not match the shapes",
                shard_names, bytes.size(), offset);
  }
  return out;
}

const Tensor& get(const WeightMap& weights, const std::string& name, const Shape& expected) {
  auto it = weights.find(name);
  NEXUS_CHECK(it != weights.end(), "weight '{}' not found (expected shape {})", name, expected);
  NEXUS_CHECK(it->second.shape() == expected, "weight '{}' has shape {}, expected {}", name,
              it->second.shape(), expected);
  return it->second;
}

Tensor hwio_to_oihw(const Tensor& hwio) {
  check_rank4(hwio, "hwio_to_oihw");
  const auto kh = hwio.shape()[0], kw = hwio.shape()[1], ci = hwio.shape()[2],
             co = hwio.shape()[3];
  Tensor out(Shape{co, ci, kh, kw});
  const float* s = hwio.data<float>();
  float* d = out.data<float>();
  for (std::int64_t y = 0; y < kh; ++y)
    for (std::int64_t x = 0; x < kw; ++x)
      for (std::int64_t i = 0; i < ci; ++i)
        for (std::int64_t o = 0; o < co; ++o)
          d[((o * ci + i) * kh + y) * kw + x] = s[((y * kw + x) * ci + i) * co + o];
  return out;
}

Tensor depthwise_to_oihw(const Tensor& kernel) {
  check_rank4(kernel, "depthwise_to_oihw");
  const auto kh = kernel.shape()[0], kw = kernel.shape()[1], ci = kernel.shape()[2],
             mult = kernel.shape()[3];
  Tensor out(Shape{ci * mult, 1, kh, kw});
  const float* s = kernel.data<float>();
  float* d = out.data<float>();
  for (std::int64_t y = 0; y < kh; ++y)
    for (std::int64_t x = 0; x < kw; ++x)
      for (std::int64_t i = 0; i < ci; ++i)
        for (std::int64_t m = 0; m < mult; ++m)
          d[((i * mult + m) * kh + y) * kw + x] = s[((y * kw + x) * ci + i) * mult + m];
  return out;
}

Tensor dense_to_out_in(const Tensor& kernel) {
  NEXUS_CHECK(kernel.shape().rank() == 2 && kernel.dtype() == DType::kFloat32,
              "dense_to_out_in: expected a rank-2 float32 kernel [in, out], got shape {} dtype {}",
              kernel.shape(), name_of(kernel.dtype()));
  const auto ni = kernel.shape()[0], no = kernel.shape()[1];
  Tensor out(Shape{no, ni});
  const float* s = kernel.data<float>();
  float* d = out.data<float>();
  for (std::int64_t i = 0; i < ni; ++i)
    for (std::int64_t o = 0; o < no; ++o) d[o * ni + i] = s[i * no + o];
  return out;
}

}  // namespace nexus::model
