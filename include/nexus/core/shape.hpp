#pragma once
// Shape: the dimensions of a tensor, outermost first. Image tensors are NCHW: [N, C, H, W].

#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "nexus/core/error.hpp"

namespace nexus {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) : dims_(dims) { validate(); }
  explicit Shape(std::vector<std::int64_t> dims) : dims_(std::move(dims)) { validate(); }

  int rank() const { return static_cast<int>(dims_.size()); }
  /// Dimension i; negative i counts from the end (-1 is the last). Throws on out of range.
  std::int64_t operator[](int i) const {
    const int r = rank();
    const int j = i < 0 ? i + r : i;
    NEXUS_CHECK(j >= 0 && j < r, "shape {}: dimension index {} out of range", to_string(), i);
    return dims_[static_cast<std::size_t>(j)];
  }
  /// Product of all dimensions (1 for a scalar shape).
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : dims_) n *= d;
    return n;
  }
  const std::vector<std::int64_t>& dims() const { return dims_; }
  /// The same shape with dimension 0 replaced (e.g. a new batch size).
  Shape with_dim(int i, std::int64_t value) const {
    auto d = dims_;
    d.at(static_cast<std::size_t>(i < 0 ? i + rank() : i)) = value;
    return Shape(std::move(d));
  }
  /// The shape without its first dimension: the per-item shape of a batch.
  Shape drop_front() const {
    return Shape(std::vector<std::int64_t>(dims_.begin() + (dims_.empty() ? 0 : 1), dims_.end()));
  }
  /// "[1, 3, 224, 224]".
  std::string to_string() const { return fmt::format("[{}]", fmt::join(dims_, ", ")); }

  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  void validate() const {
    for (auto d : dims_)
      NEXUS_CHECK(d >= 0, "shape [{}]: negative dimension", fmt::join(dims_, ", "));
  }
  std::vector<std::int64_t> dims_;
};

}  // namespace nexus

template <>
struct fmt::formatter<nexus::Shape> : fmt::formatter<std::string> {
  auto format(const nexus::Shape& s, format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.to_string(), ctx);
  }
};
