#pragma once
// Tensor: a dense, row-major array of one DType with a Shape. Image batches are NCHW
// [N, C, H, W] float32. A Tensor either owns its storage (shared, reference-counted: copying a
// Tensor shares the buffer; clone() copies it) or is a view over memory someone else owns
// (Tensor::view, slice, reshape). Views do not extend the owner's lifetime unless they were
// made from an owning Tensor, in which case they hold a reference to its storage.
//
// Thread-safety: distinct Tensors may be used from different threads; concurrent writes to
// one buffer need external synchronisation.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "nexus/core/dtype.hpp"
#include "nexus/core/error.hpp"
#include "nexus/core/shape.hpp"

namespace nexus {

class Tensor {
 public:
  /// An empty tensor (rank 0, no storage).
  Tensor() = default;

  /// An owning, zero-filled tensor of the given shape and dtype.
  explicit Tensor(Shape shape, DType dtype = DType::kFloat32)
      : shape_(std::move(shape)), dtype_(dtype) {
    const std::size_t bytes = nbytes();
    storage_ = std::shared_ptr<std::byte[]>(new std::byte[bytes == 0 ? 1 : bytes]());
    data_ = storage_.get();
  }

  /// An owning float32 tensor holding a copy of values. Throws if values.size() != numel.
  static Tensor from(Shape shape, std::span<const float> values) {
    NEXUS_CHECK(static_cast<std::int64_t>(values.size()) == shape.numel(),
                "Tensor::from: {} values for shape {} (expected {})", values.size(), shape,
                shape.numel());
    Tensor t(std::move(shape));
    if (!values.empty()) std::memcpy(t.data_, values.data(), values.size_bytes());
    return t;
  }

  /// A non-owning view over caller memory; the caller keeps it alive.
  static Tensor view(void* data, Shape shape, DType dtype = DType::kFloat32) {
    Tensor t;
    t.shape_ = std::move(shape);
    t.dtype_ = dtype;
    t.data_ = static_cast<std::byte*>(data);
    return t;
  }

  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * size_of(dtype_); }
  bool empty() const { return data_ == nullptr; }
  /// True when this tensor does not own (a share of) its storage.
  bool is_view() const { return storage_ == nullptr || storage_.get() != data_; }

  /// Typed element pointer. Throws if T does not match dtype() (float for float32, etc.).
  template <typename T = float>
  T* data() {
    check_type<T>();
    return reinterpret_cast<T*>(data_);
  }
  template <typename T = float>
  const T* data() const {
    check_type<T>();
    return reinterpret_cast<const T*>(data_);
  }
  void* raw_data() { return data_; }
  const void* raw_data() const { return data_; }

  /// float32 elements as a span.
  std::span<float> values() { return {data<float>(), static_cast<std::size_t>(numel())}; }
  std::span<const float> values() const {
    return {data<float>(), static_cast<std::size_t>(numel())};
  }

  /// Items [begin, end) along dimension 0, as a view sharing this tensor's storage.
  Tensor slice(std::int64_t begin, std::int64_t end) const {
    NEXUS_CHECK(shape_.rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
                "Tensor::slice [{}, {}) out of range for shape {}", begin, end, shape_);
    Tensor t = *this;
    const std::int64_t item = shape_[0] == 0 ? 0 : numel() / shape_[0];
    t.data_ = data_ + static_cast<std::size_t>(begin * item) * size_of(dtype_);
    t.shape_ = shape_.with_dim(0, end - begin);
    return t;
  }

  /// Item i along dimension 0, without that dimension: [N, d1, ...] -> [d1, ...] (a view that
  /// shares the storage). The same as slice(i, i + 1).reshape(shape().drop_front()) with one
  /// Shape made instead of four. Throws if the rank is 0 or i is outside [0, N).
  Tensor row(std::int64_t i) const {
    NEXUS_CHECK(shape_.rank() >= 1 && 0 <= i && i < shape_[0],
                "Tensor::row {} out of range for shape {}", i, shape_);
    Tensor t;
    t.shape_ = shape_.drop_front();
    t.dtype_ = dtype_;
    t.storage_ = storage_;
    t.data_ = data_ + static_cast<std::size_t>(i * t.shape_.numel()) * size_of(dtype_);
    return t;
  }

  /// The same elements under a new shape (a view). Throws if the element counts differ.
  Tensor reshape(Shape shape) const {
    NEXUS_CHECK(shape.numel() == numel(), "Tensor::reshape: cannot view {} ({} elements) as {}",
                shape_, numel(), shape);
    Tensor t = *this;
    t.shape_ = std::move(shape);
    return t;
  }

  /// A deep, owning copy.
  Tensor clone() const {
    Tensor t(shape_, dtype_);
    if (nbytes() != 0) std::memcpy(t.data_, data_, nbytes());
    return t;
  }

 private:
  template <typename T>
  void check_type() const {
    constexpr DType expected = std::is_same_v<T, float>          ? DType::kFloat32
                               : std::is_same_v<T, std::int32_t> ? DType::kInt32
                               : std::is_same_v<T, std::uint8_t> ? DType::kUInt8
                                                                 : DType::kFloat16;
    NEXUS_CHECK(expected == dtype_, "tensor of dtype {} accessed as {}", name_of(dtype_),
                name_of(expected));
  }

  Shape shape_;
  DType dtype_ = DType::kFloat32;
  std::shared_ptr<std::byte[]> storage_;
  std::byte* data_ = nullptr;
};

}  // namespace nexus
