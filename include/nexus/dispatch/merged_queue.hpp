#pragma once
// MergedQueueView: the queues of a prefix group's members seen as one queue in deadline order
// (paper §6.3, prefix batching). The group's BatchPolicy decides on the merged view as for any
// session (early drop's sliding window over all members' requests, with the group's ℓ(b)); the
// decision is then split back per member (split_by_member): every member drops a prefix of its
// own queue and gives the next requests to the merged batch, so early drop works per member and
// each drop is counted against its member's session.
//
// Ties in deadline keep member order (member 0 first). Each member view must be in deadline
// order, as the session queues are.
//
// Thread-safety: a view over other views; used by one executor thread.

#include <cstddef>
#include <span>
#include <vector>

#include "nexus/dispatch/batch_policy.hpp"

namespace nexus::dispatch {

class MergedQueueView final : public QueueView {
 public:
  /// Merges `members` (each in deadline order); the views must outlive this one.
  explicit MergedQueueView(std::span<const QueueView* const> members);
  std::size_t size() const override { return order_.size(); }
  TimePoint deadline(std::size_t i) const override;
  TimePoint arrival(std::size_t i) const override;
  /// Which member merged entry i is, and its index in that member's queue.
  int member(std::size_t i) const { return order_[i].member; }
  std::size_t index(std::size_t i) const { return order_[i].index; }
  int members() const { return static_cast<int>(members_.size()); }

 private:
  struct Entry {
    int member;
    std::size_t index;
  };
  std::vector<const QueueView*> members_;
  std::vector<Entry> order_;
};

/// A merged decision per member: member k drops its first drop[k] requests, then puts its next
/// take[k] into the merged batch (in the merged batch, members' items come in member order).
struct MemberDecision {
  std::vector<std::size_t> drop, take;
  std::size_t total_take() const;
};

/// Splits `decision` (made on `merged`) per member. Throws nexus::Error if the decision covers
/// more entries than the view has.
MemberDecision split_by_member(const MergedQueueView& merged, const BatchDecision& decision);

}  // namespace nexus::dispatch
