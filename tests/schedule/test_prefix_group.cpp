// A prefix group planned as one session (paper §6.3): shares, group profile, tightest SLO.
// Expected values by hand.
#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/schedule/prefix_group.hpp"

using namespace nexus;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {
// ℓ(b) = base + per·b ms at b = 1..max, memory = mem_base + 100·b bytes.
BatchProfile linear(const std::string& name, double base_ms, double per_ms, int max,
                    std::size_t mem_base) {
  std::vector<int> b;
  std::vector<double> l;
  std::vector<std::size_t> m;
  for (int i = 1; i <= max; ++i) {
    b.push_back(i);
    l.push_back((base_ms + per_ms * i) * 1000);
    m.push_back(mem_base + 100 * static_cast<std::size_t>(i));
  }
  return BatchProfile(name, "cpu", b, l, {}, m);
}
}  // namespace

TEST_CASE("member shares follow the rates by largest remainder", "[schedule][prefix]") {
  const std::vector<double> r{30, 10};
  CHECK(member_shares(4, r) == std::vector<int>{3, 1});
  CHECK(member_shares(1, r) == std::vector<int>{1, 0});   // quotas .75 / .25
  CHECK(member_shares(2, r) == std::vector<int>{2, 0});   // 1.5 / .5: the tie goes to member 0
  CHECK(member_shares(0, r) == std::vector<int>{0, 0});
  const std::vector<double> even{0, 0, 0};
  CHECK(member_shares(4, even) == std::vector<int>{2, 1, 1});
  CHECK_THROWS_WITH(member_shares(3, std::vector<double>{1, -1}), Contains("rate -1"));
}

TEST_CASE("the group profile runs the prefix once and each suffix on its share",
          "[schedule][prefix]") {
  const BatchProfile prefix = linear("p", 10, 2, 4, 1000);
  const std::vector<PrefixGroupMember> members{
      {{"q/a", "a", 100ms, 30}, linear("a/suffix", 1, 0.5, 4, 10)},
      {{"q/b", "b", 80ms, 10}, linear("b/suffix", 2, 1, 4, 20)}};
  const BatchProfile g = group_profile("grp", prefix, members);
  CHECK(g.model() == "grp");
  CHECK(g.max_batch() == 4);
  // b = 4: shares 3 / 1: (10 + 8) + (1 + 1.5) + (2 + 1) = 23.5 ms.
  CHECK(g.mean_latency(4) == 23500us);
  // b = 1: shares 1 / 0: 12 + 1.5 = 13.5 ms; member b runs no suffix.
  CHECK(g.mean_latency(1) == 13500us);
  // Memory at 4: prefix 1400 + a(3) 310 + b(1) 120.
  CHECK(g.memory(4) == 1830);

  const Session s = group_session("grp-session", "grp", members);
  CHECK(s.rate_rps == 40);
  CHECK(s.slo == 80ms);  // the tightest member SLO
  CHECK(s.model == "grp");
  CHECK_THROWS_WITH(group_session("x", "grp", std::span(members).first(1)),
                    Contains("1 member"));
}
