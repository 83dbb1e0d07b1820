#pragma once
// RingQueue<T>: a growable ring buffer with deque-like access (push_back, pop_front, index,
// ordered insert). Unlike std::deque it allocates only when it grows, so a steady-state session
// queue does no per-item heap work.
//
// Thread-safety: none (one owner thread).

#include <cstddef>
#include <utility>
#include <vector>

namespace nexus {

template <typename T>
class RingQueue {
 public:
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) { return buf_[(head_ + i) & mask_]; }
  const T& operator[](std::size_t i) const { return buf_[(head_ + i) & mask_]; }
  T& front() { return (*this)[0]; }
  T& back() { return (*this)[size_ - 1]; }
  const T& back() const { return (*this)[size_ - 1]; }

  void push_back(T x) {
    if (size_ == buf_.size()) grow();
    buf_[(head_ + size_) & mask_] = std::move(x);
    ++size_;
  }
  void pop_front() {
    buf_[head_] = T{};  // release what the item holds now
    head_ = (head_ + 1) & mask_;
    --size_;
  }
  /// Inserts x before position pos (0..size), shifting later items back by one.
  void insert(std::size_t pos, T x) {
    push_back(std::move(x));
    for (std::size_t i = size_ - 1; i > pos; --i) std::swap((*this)[i], (*this)[i - 1]);
  }

 private:
  void grow() {
    const std::size_t cap = buf_.empty() ? 64 : buf_.size() * 2;
    std::vector<T> nb(cap);
    for (std::size_t i = 0; i < size_; ++i) nb[i] = std::move((*this)[i]);
    buf_.swap(nb);
    head_ = 0;
    mask_ = cap - 1;
  }
  std::vector<T> buf_;
  std::size_t head_ = 0, size_ = 0, mask_ = 0;
};

}  // namespace nexus
