// MergedQueueView and the per-member split of a group's batch decision (see merged_queue.hpp).
#include "nexus/dispatch/merged_queue.hpp"

#include "nexus/core/error.hpp"

namespace nexus::dispatch {

MergedQueueView::MergedQueueView(std::span<const QueueView* const> members)
    : members_(members.begin(), members.end()) {
  std::size_t total = 0;
  for (const QueueView* m : members_) total += m->size();
  order_.reserve(total);
  std::vector<std::size_t> head(members_.size(), 0);
  // k-way merge; k is small (the members of one group).
  for (std::size_t n = 0; n < total; ++n) {
    int best = -1;
    for (std::size_t k = 0; k < members_.size(); ++k) {
      if (head[k] == members_[k]->size()) continue;
      if (best < 0 || members_[k]->deadline(head[k]) <
                          members_[static_cast<std::size_t>(best)]->deadline(
                              head[static_cast<std::size_t>(best)]))
        best = static_cast<int>(k);
    }
    order_.push_back({best, head[static_cast<std::size_t>(best)]++});
  }
}

TimePoint MergedQueueView::deadline(std::size_t i) const {
  const Entry& e = order_[i];
  return members_[static_cast<std::size_t>(e.member)]->deadline(e.index);
}

TimePoint MergedQueueView::arrival(std::size_t i) const {
  const Entry& e = order_[i];
  return members_[static_cast<std::size_t>(e.member)]->arrival(e.index);
}

std::size_t MemberDecision::total_take() const {
  std::size_t n = 0;
  for (std::size_t t : take) n += t;
  return n;
}

MemberDecision split_by_member(const MergedQueueView& merged, const BatchDecision& decision) {
  NEXUS_CHECK(decision.drop + decision.take <= merged.size(),
              "split_by_member: decision drops {} and takes {} of {} queued requests",
              decision.drop, decision.take, merged.size());
  const auto k = static_cast<std::size_t>(merged.members());
  MemberDecision d{std::vector<std::size_t>(k, 0), std::vector<std::size_t>(k, 0)};
  for (std::size_t i = 0; i < decision.drop; ++i) ++d.drop[static_cast<std::size_t>(merged.member(i))];
  for (std::size_t i = decision.drop; i < decision.drop + decision.take; ++i)
    ++d.take[static_cast<std::size_t>(merged.member(i))];
  return d;
}

}  // namespace nexus::dispatch
