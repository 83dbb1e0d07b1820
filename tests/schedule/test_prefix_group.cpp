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

TEST_CASE("declared prefixes: one group per key with two or more members", "[schedule][prefix]") {
  const std::vector<DeclaredPrefix> d{{"rn", 0.9}, {"", 0.5}, {"mb", 0.5}, {"rn", 0.8}, {"mb", 0.0},
                                      {"vgg", 0.7}, {"rn", 0.9}};
  const auto g = declared_prefix_groups(d);
  // "mb": one member with a fraction > 0; "vgg": one member; "rn": entries 0, 3, 6.
  REQUIRE(g.size() == 1);
  CHECK(g[0].first == "rn");
  CHECK(g[0].second == std::vector<std::size_t>{0, 3, 6});
}

TEST_CASE("split_prefix_group scales each member's profile by its prefix share", "[schedule][prefix]") {
  // Members: ℓ(b) = 10 + 2b ms (max 4, 1000 + 100b bytes) and ℓ(b) = 4 + b ms (max 3).
  const std::vector<PrefixSplit> members{{"a", linear("a", 10, 2, 4, 1000), 0.75, 0.5, 0},
                                         {"b", linear("b", 4, 1, 8, 2000), 0.5, 0.5, 3}};
  const PrefixGroupProfiles g = split_prefix_group("prefix:k", members);
  CHECK(g.session_id == "prefix:k");
  CHECK(g.member_models == std::vector<std::string>{"a", "b"});
  CHECK(g.max_batch == 3);  // min(4, b's own 3)
  REQUIRE(g.prefix.max_batch() == 3);
  CHECK(g.prefix.model() == "prefix:k");
  CHECK(g.prefix.mean_latency(2) == 10500us);  // 0.75 · 14 ms
  CHECK(g.prefix.memory(2) == 600);            // 0.5 · 1200
  REQUIRE(g.suffixes.size() == 2);
  CHECK(g.suffixes[0].model() == "a/suffix");
  CHECK(g.suffixes[0].mean_latency(2) == 3500us);  // 0.25 · 14 ms
  CHECK(g.suffixes[1].mean_latency(3) == 3500us);  // 0.5 · 7 ms
  CHECK(g.suffixes[1].max_batch() == 3);
  CHECK_THROWS_WITH(split_prefix_group("x", std::span(members).first(1)), Contains("1 member"));
  std::vector<PrefixSplit> bad = members;
  bad[1].latency_share = 1.5;
  CHECK_THROWS_WITH(split_prefix_group("x", bad), Contains("member 'b'") && Contains("1.5") && Contains("0..1"));
}

TEST_CASE("merge_prefix_groups: one session per group, its profile added", "[schedule][prefix]") {
  const std::vector<PrefixSplit> split{{"a", linear("a", 4, 1, 8, 0), 0.5, 0.5, 0},
                                       {"b", linear("b", 4, 1, 8, 0), 0.5, 0.5, 0}};
  const PrefixGroupProfiles g = split_prefix_group("prefix:k", split);
  const std::vector<const PrefixGroupProfiles*> groups{&g};
  const std::vector<Session> sessions{{"q1/a", "a", 100ms, 30, 1, "q1"},
                                      {"q2/c", "c", 50ms, 5, 0, "q2"},
                                      {"q3/b", "b", 60ms, 10, 2, "q3"}};
  std::map<std::string, BatchProfile> profiles;
  const PrefixGroupedSessions m = merge_prefix_groups(sessions, groups, profiles);
  REQUIRE(m.sessions.size() == 2);
  CHECK(m.sessions[0].id == "prefix:k");  // at the place of its first member
  CHECK(m.sessions[0].model == "prefix:k");
  CHECK(m.sessions[0].rate_rps == 40);
  CHECK(m.sessions[0].slo == 60ms);   // the tightest member SLO
  CHECK(m.sessions[0].priority == 2); // the highest
  // Members of two queries: the group joins their admission groups (admitted together).
  CHECK(m.sessions[0].group == "q1+q3");
  CHECK(m.sessions[1].id == "q2/c");
  CHECK(m.sessions[1].group == "q2");  // in no group: its own query
  REQUIRE(m.members.count("prefix:k"));
  CHECK(m.members.at("prefix:k").size() == 2);
  for (const Session& x : m.members.at("prefix:k")) CHECK(x.group == "q1+q3");
  // ℓ_group(4), shares 3 / 1: prefix 0.5·8 + suffixes 0.5·7 + 0.5·5 = 10 ms.
  REQUIRE(profiles.count("prefix:k"));
  CHECK(profiles.at("prefix:k").mean_latency(4) == 10000us);
  // One member session present: left alone, no profile added.
  std::map<std::string, BatchProfile> none;
  const auto alone = merge_prefix_groups(std::span(sessions).first(2), groups, none);
  CHECK(alone.sessions.size() == 2);
  CHECK(alone.sessions[0].id == "q1/a");
  CHECK(alone.members.empty());
  CHECK(none.empty());
}

TEST_CASE("merge_prefix_groups: queries joined through groups are one admission unit", "[schedule][prefix]") {
  // Group k over models a, b; group j over d, e. q1 runs det -> a, q2 runs b and d, q3 runs e,
  // q4 runs c alone: k joins q1 and q2, j joins q2 and q3, so q1, q2, q3 (and both group
  // sessions, and q1's det stage) share one admission group; q4 keeps its own. A query is
  // admitted whole (admit_and_pack): none may run while a group serving one of its stages is
  // rejected, which separate units allowed.
  const auto lin = [](const std::string& m) { return linear(m, 4, 1, 8, 0); };
  const std::vector<PrefixSplit> sk{{"a", lin("a"), 0.5, 0.5, 0}, {"b", lin("b"), 0.5, 0.5, 0}};
  const std::vector<PrefixSplit> sj{{"d", lin("d"), 0.5, 0.5, 0}, {"e", lin("e"), 0.5, 0.5, 0}};
  const PrefixGroupProfiles k = split_prefix_group("prefix:k", sk);
  const PrefixGroupProfiles j = split_prefix_group("prefix:j", sj);
  const std::vector<const PrefixGroupProfiles*> groups{&k, &j};
  const std::vector<Session> sessions{{"q1/det", "det", 100ms, 30, 0, "q1"},
                                      {"q1/a", "a", 100ms, 30, 0, "q1"},
                                      {"q2/b", "b", 100ms, 10, 0, "q2"},
                                      {"q2/d", "d", 100ms, 10, 0, "q2"},
                                      {"q3/e", "e", 100ms, 10, 0, "q3"},
                                      {"q4/c", "c", 100ms, 10, 0, "q4"},
                                      {"lone", "c", 100ms, 10, 0, ""}};
  std::map<std::string, BatchProfile> profiles;
  const PrefixGroupedSessions m = merge_prefix_groups(sessions, groups, profiles);
  std::map<std::string, std::string> group;
  for (const Session& s : m.sessions) group[s.id] = s.group;
  CHECK(group == std::map<std::string, std::string>{{"q1/det", "q1+q2+q3"},
                                                    {"prefix:k", "q1+q2+q3"},
                                                    {"prefix:j", "q1+q2+q3"},
                                                    {"q4/c", "q4"},
                                                    {"lone", ""}});
  for (const auto& [id, ms] : m.members)
    for (const Session& x : ms) CHECK(x.group == "q1+q2+q3");
}
