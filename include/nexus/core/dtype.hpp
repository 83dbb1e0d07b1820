#pragma once
// DType: the element types a Tensor can hold. float32 is the compute type of the CPU path;
// float16 is storage for the GPU path; int32/uint8 appear in weights files.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "nexus/core/error.hpp"

namespace nexus {

enum class DType : std::uint8_t { kFloat32, kFloat16, kInt32, kUInt8 };

/// Bytes per element.
constexpr std::size_t size_of(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 4;
    case DType::kFloat16: return 2;
    case DType::kInt32: return 4;
    case DType::kUInt8: return 1;
  }
  return 0;
}

/// The TensorFlow-style name: "float32", "float16", "int32", "uint8".
constexpr std::string_view name_of(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kInt32: return "int32";
    case DType::kUInt8: return "uint8";
  }
  return "?";
}

/// Parses a dtype name as written by name_of(). Throws nexus::Error on an unknown name.
inline DType parse_dtype(std::string_view name) {
  if (name == "float32") return DType::kFloat32;
  if (name == "float16") return DType::kFloat16;
  if (name == "int32") return DType::kInt32;
  if (name == "uint8") return DType::kUInt8;
  throw_error("unknown dtype '{}': expected one of float32, float16, int32, uint8", name);
}

}  // namespace nexus
