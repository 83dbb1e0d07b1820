// A prefix group's members' queues as one deadline-ordered queue; the group's early-drop decision
// split back per member (paper §6.3 with §4.3's early drop). Expected values by hand.
#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/dispatch/merged_queue.hpp"

using namespace nexus;
using namespace nexus::dispatch;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {
TimePoint at_ms(int ms) { return TimePoint{} + std::chrono::milliseconds(ms); }
}  // namespace

TEST_CASE("members' queues merge in deadline order, ties to the lower member", "[dispatch][prefix]") {
  const std::vector<TimePoint> a{at_ms(10), at_ms(30), at_ms(50)};
  const std::vector<TimePoint> b{at_ms(20), at_ms(30)};
  const std::vector<TimePoint> c{};
  const VectorQueueView va(a), vb(b), vc(c);
  const std::vector<const QueueView*> views{&va, &vb, &vc};
  const MergedQueueView m(views);
  REQUIRE(m.size() == 5);
  const std::vector<int> members{0, 1, 0, 1, 0};
  const std::vector<std::size_t> index{0, 0, 1, 1, 2};
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK(m.member(i) == members[i]);
    CHECK(m.index(i) == index[i]);
  }
  CHECK(m.deadline(1) == at_ms(20));
  CHECK(m.deadline(4) == at_ms(50));
}

TEST_CASE("early drop on the merged queue drops per member", "[dispatch][prefix]") {
  // ℓ(b) = 10 ms + 5 ms per item. Now = 0, target batch 3, no growth.
  const LatencyTable lat = LatencyTable::linear(5ms, 10ms, 8);
  // Merged: a0 (12 ms), b0 (18 ms), a1 (30), b1 (31), a2 (40).
  // Window at a0: ℓ(3) = 25 > 12 -> no. At b0: 25 > 18 -> no. At a1: 25 <= 30 -> run a1, b1, a2.
  const std::vector<TimePoint> a{at_ms(12), at_ms(30), at_ms(40)};
  const std::vector<TimePoint> b{at_ms(18), at_ms(31)};
  const VectorQueueView va(a), vb(b);
  const std::vector<const QueueView*> views{&va, &vb};
  const MergedQueueView m(views);
  const BatchDecision d = early_drop_decision(m, TimePoint{}, lat, 3);
  CHECK(d.drop == 2);
  CHECK(d.take == 3);
  const MemberDecision per = split_by_member(m, d);
  CHECK(per.drop == std::vector<std::size_t>{1, 1});  // a0 and b0
  CHECK(per.take == std::vector<std::size_t>{2, 1});  // a1, a2 and b1
  CHECK(per.total_take() == 3);

  CHECK_THROWS_WITH(split_by_member(m, BatchDecision{4, 3, std::nullopt}), Contains("of 5"));
}
