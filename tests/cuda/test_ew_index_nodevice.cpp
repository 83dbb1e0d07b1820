// [cuda][nodevice] The index math of the CudaBackend's elementwise and copy kernels
// (src/cuda/ew_index.hpp, compiled here for the host), checked on every machine against an
// independent 64-bit reference: logical index -> (n, c, h, w) by plain division, offsets by
// dot products with the strides. Every fast path (dense same-shape, per-channel broadcast in
// NCHW and NHWC, per-item channel vectors, vector lanes of 2/4/8) must map each memory offset
// of the output to exactly the operand offsets the reference gives.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "../../src/cuda/batch_sizes.hpp"
#include "../../src/cuda/ew_index.hpp"

using namespace nexus::cuda;

namespace {

Dims4 nchw(const Dims4& d) { return Dims4{{d.v[1] * d.v[2] * d.v[3], d.v[2] * d.v[3], d.v[3], 1}}; }
Dims4 nhwc(const Dims4& d) { return Dims4{{d.v[1] * d.v[2] * d.v[3], 1, d.v[3] * d.v[1], d.v[1]}}; }
Dims4 channel(const Dims4&) { return Dims4{{0, 1, 0, 0}}; }
Dims4 item_channel(const Dims4& d) { return Dims4{{d.v[1], 1, 0, 0}}; }

std::int64_t dot(const std::int64_t idx[4], const Dims4& s) {
  return idx[0] * s.v[0] + idx[1] * s.v[1] + idx[2] * s.v[2] + idx[3] * s.v[3];
}

using Offsets = std::tuple<std::int64_t, std::int64_t, std::int64_t>;  // a, b, c

/// out offset -> (a, b, c) offsets, by the 64-bit reference.
std::map<std::int64_t, Offsets> reference(const Dims4& d, const Dims4& sa, const Dims4& sb,
                                          const Dims4& sc, const Dims4& so) {
  std::map<std::int64_t, Offsets> m;
  for (std::int64_t i = 0; i < d.numel(); ++i) {
    std::int64_t idx[4];
    std::int64_t r = i;
    idx[3] = r % d.v[3];
    r /= d.v[3];
    idx[2] = r % d.v[2];
    r /= d.v[2];
    idx[1] = r % d.v[1];
    idx[0] = r / d.v[1];
    m[dot(idx, so)] = {dot(idx, sa), dot(idx, sb), dot(idx, sc)};
  }
  return m;
}

/// Plans the launch and checks every element it would touch against the reference.
EwPlan check_plan(const Dims4& d, const Dims4& sa, bool has_b, const Dims4& sb, bool has_c,
                  const Dims4& sc, const Dims4& so, std::size_t elem, std::size_t align = 16) {
  EwPlan p;
  REQUIRE(make_ew_plan(d, sa, has_b, sb, has_c, sc, so, elem, align, &p));
  const auto want = reference(d, sa, has_b ? sb : Dims4{{0, 0, 0, 0}}, has_c ? sc : Dims4{{0, 0, 0, 0}}, so);
  REQUIRE(p.n == static_cast<std::uint32_t>(d.numel()));
  std::size_t seen = 0;
  if (p.path == EwPath::kDense) {
    REQUIRE(p.n % static_cast<std::uint32_t>(p.vec) == 0);
    for (std::uint32_t j0 = 0; j0 < p.n; j0 += static_cast<std::uint32_t>(p.vec))
      for (std::uint32_t l = 0; l < static_cast<std::uint32_t>(p.vec); ++l) {
        const std::uint32_t o = j0 + l;
        const auto it = want.find(o);
        REQUIRE(it != want.end());
        const auto [a, b, c] = it->second;
        INFO("dense vec " << p.vec << " j0 " << j0 << " lane " << l);
        CHECK(o == a);  // a shares out's layout
        if (has_b) CHECK(ew_lane_offset(p, p.mode_b, p.bstride_b, j0, l) == b);
        if (has_c) CHECK(ew_lane_offset(p, p.mode_c, p.bstride_c, j0, l) == c);
        ++seen;
      }
  } else {
    for (std::uint32_t i = 0; i < p.n; ++i) {
      std::uint32_t o, a, b, c;
      ew_general_offsets(p, i, o, a, b, c);
      const auto it = want.find(o);
      REQUIRE(it != want.end());
      INFO("general i " << i);
      CHECK(a == std::get<0>(it->second));
      if (has_b) CHECK(b == std::get<1>(it->second));
      if (has_c) CHECK(c == std::get<2>(it->second));
      ++seen;
    }
  }
  CHECK(seen == want.size());
  return p;
}

}  // namespace

TEST_CASE("FastDivmod equals / and % for 31-bit dividends", "[cuda][nodevice]") {
  std::mt19937 rng(99);
  std::uniform_int_distribution<std::uint32_t> any(0, 0x7fffffffu);
  std::vector<std::uint32_t> divisors;
  for (std::uint32_t d = 1; d <= 1100; ++d) divisors.push_back(d);
  for (std::uint32_t d : {3136u, 12544u, 50176u, 65535u, 65536u, 65537u, 802816u, 0x40000000u,
                          0x40000001u, 0x7fffffffu})
    divisors.push_back(d);
  for (int k = 0; k < 200; ++k) divisors.push_back(any(rng) | 1u);
  for (std::uint32_t d : divisors) {
    const FastDivmod f(d);
    std::vector<std::uint32_t> ns{0, 1, d - 1, d, d + 1, 2 * d - 1, 0x7fffffffu, 0x7ffffffeu};
    for (int k = 0; k < 300; ++k) ns.push_back(any(rng));
    for (std::uint32_t n : ns) {
      if (n > 0x7fffffffu) continue;
      std::uint32_t q, r;
      f.divmod(n, q, r);
      if (q != n / d || r != n % d) {
        INFO("n " << n << " d " << d);
        CHECK(q == n / d);
        CHECK(r == n % d);
      }
    }
  }
}

TEST_CASE("elementwise fast paths map like the general path", "[cuda][nodevice]") {
  for (std::size_t elem : {std::size_t{4}, std::size_t{2}}) {
    for (Dims4 d : {Dims4{{2, 16, 7, 7}}, Dims4{{3, 64, 4, 8}}, Dims4{{2, 5, 3, 3}},
                    Dims4{{1, 24, 1, 1}}, Dims4{{4, 10, 1, 1}}, Dims4{{2, 8, 2, 4}}}) {
      INFO("dims " << d.v[0] << "x" << d.v[1] << "x" << d.v[2] << "x" << d.v[3] << " elem " << elem);
      for (auto layout : {nchw, nhwc}) {
        const Dims4 s = layout(d);
        // residual add: same shape, same layout
        auto p = check_plan(d, s, true, s, false, {}, s, elem);
        CHECK(p.path == EwPath::kDense);
        CHECK(p.mode_b == EwMode::kSame);
        // conv / FC bias + activation, in place
        p = check_plan(d, s, true, channel(d), false, {}, s, elem);
        CHECK(p.path == EwPath::kDense);
        if (d.v[0] > 1) CHECK(p.mode_b == EwMode::kChannel);  // one item of [C,1,1]: kSame too
        // BatchNorm / ScaleOffset: two per-channel vectors
        p = check_plan(d, s, true, channel(d), true, channel(d), s, elem);
        CHECK(p.path == EwPath::kDense);
        // squeeze-excite gate: one channel vector per item
        p = check_plan(d, s, true, item_channel(d), false, {}, s, elem);
        CHECK(p.path == EwPath::kDense);
        // plain activation
        p = check_plan(d, s, false, {}, false, {}, s, elem);
        CHECK(p.path == EwPath::kDense);
        // misaligned pointers: scalar or half2 only, same mapping
        p = check_plan(d, s, true, channel(d), false, {}, s, elem, elem);
        CHECK(p.vec == 1);
      }
      // general: broadcast along W (b is [N, C, H, 1]), out NHWC, a NCHW
      const Dims4 bw{{d.v[1] * d.v[2], d.v[2], 1, 0}};
      auto p = check_plan(d, nchw(d), true, bw, false, {}, nchw(d), elem);
      if (d.v[3] > 1) CHECK(p.path == EwPath::kGeneral);
      p = check_plan(d, nchw(d), true, channel(d), false, {}, nhwc(d), elem);
      if (d.v[1] > 1 && d.v[2] * d.v[3] > 1) CHECK(p.path == EwPath::kGeneral);
    }
  }
}

TEST_CASE("the widest vector is chosen where the lanes allow it", "[cuda][nodevice]") {
  // NHWC fp16 with C % 8 == 0: 8 halves per thread, lanes over consecutive channels.
  const Dims4 d{{2, 64, 7, 7}};
  auto p = check_plan(d, nhwc(d), true, channel(d), false, {}, nhwc(d), 2);
  CHECK(p.vec == 8);
  // NCHW fp32 with H*W = 49: a vector would straddle two channels -> scalar.
  p = check_plan(d, nchw(d), true, channel(d), false, {}, nchw(d), 4);
  CHECK(p.vec == 1);
  // NCHW fp32 with H*W = 56*56: float4, lanes in one channel.
  const Dims4 e{{2, 4, 56, 56}};
  p = check_plan(e, nchw(e), true, channel(e), false, {}, nchw(e), 4);
  CHECK(p.vec == 4);
  // same-shape add needs no lane condition: n % 8 == 0 -> 8 halves even with C = 5
  const Dims4 f{{2, 5, 4, 4}};
  p = check_plan(f, nhwc(f), true, nhwc(f), false, {}, nhwc(f), 2);
  CHECK(p.vec == 8);
  // NHWC fp16 with C = 6: half2 lanes (C % 2 == 0), not 8
  const Dims4 g{{2, 6, 4, 4}};
  p = check_plan(g, nhwc(g), true, channel(g), false, {}, nhwc(g), 2);
  CHECK(p.vec == 2);
}

TEST_CASE("offsets beyond 31 bits are refused (the caller uses the 64-bit kernel)", "[cuda][nodevice]") {
  const Dims4 d{{64, 256, 512, 512}};  // 2^32 elements
  EwPlan p;
  CHECK_FALSE(make_ew_plan(d, nchw(d), false, {}, false, {}, nchw(d), 2, 16, &p));
  CopyPlan c;
  CHECK_FALSE(make_copy_plan(d, nchw(d), d, nhwc(d), 2, 16, &c));
}

TEST_CASE("copy plans map like the reference: layout change, concat slice, reshape", "[cuda][nodevice]") {
  auto check = [](const Dims4& sd, const Dims4& ss, const Dims4& dd, const Dims4& ds, bool dense) {
    CopyPlan p;
    REQUIRE(make_copy_plan(sd, ss, dd, ds, 4, 16, &p));
    CHECK(p.dense == dense);
    // The copy is a set of (src, dst) pairs: the i-th row-major element of src goes to the
    // i-th of dst. A dense plan may visit them in memory order; the set must be the same.
    auto unravel = [](std::int64_t r, const Dims4& d, std::int64_t idx[4]) {
      idx[3] = r % d.v[3];
      r /= d.v[3];
      idx[2] = r % d.v[2];
      r /= d.v[2];
      idx[1] = r % d.v[1];
      idx[0] = r / d.v[1];
    };
    std::map<std::int64_t, std::int64_t> want, got;
    for (std::uint32_t i = 0; i < p.n; ++i) {
      std::int64_t a[4], b[4];
      unravel(i, sd, a);
      unravel(i, dd, b);
      want[dot(b, ds)] = dot(a, ss);
      std::uint32_t src, dst;
      copy_offsets(p, i, src, dst);
      got[dst] = src;
    }
    CHECK(got == want);
  };
  const Dims4 d{{2, 6, 5, 3}};
  check(d, nchw(d), d, nhwc(d), false);                 // NCHW -> NHWC
  check(d, nhwc(d), d, nhwc(d), true);                  // same layout: flat copy
  const Dims4 cat{{2, 10, 5, 3}};                       // into channels 4..9 of a concat
  check(d, nhwc(d), d, nhwc(cat), false);
  check(d, nchw(d), Dims4{{2, 90, 1, 1}}, nchw(Dims4{{2, 90, 1, 1}}), true);  // flatten
  check(Dims4{{2, 90, 1, 1}}, nchw(Dims4{{2, 90, 1, 1}}), d, nhwc(d), false);  // back to NHWC
}

TEST_CASE("prepared batch sizes and padding to the next captured size", "[cuda][nodevice]") {
  CHECK(prepared_batch_sizes(4, {}) == std::vector<int>{1, 2, 3, 4});
  CHECK(prepared_batch_sizes(0, {}).empty());
  // captured sizes: clipped to 1..max_batch, max_batch always included, sorted, unique
  const auto p = prepared_batch_sizes(48, {32, 1, 8, 64, 0, 8, 16, 2, 4});
  CHECK(p == std::vector<int>{1, 2, 4, 8, 16, 32, 48});
  CHECK(padded_batch(1, p) == 1);
  CHECK(padded_batch(3, p) == 4);
  CHECK(padded_batch(17, p) == 32);
  CHECK(padded_batch(33, p) == 48);
  CHECK(padded_batch(48, p) == 48);
  CHECK(padded_batch(49, p) == -1);
  for (int n = 1; n <= 48; ++n) {  // every size the executor may form runs at a prepared one
    const int b = padded_batch(n, p);
    CHECK(b >= n);
    CHECK(std::count(p.begin(), p.end(), b) == 1);
  }
}
