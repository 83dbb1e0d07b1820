#pragma once
// Index math of the CudaBackend's elementwise and copy kernels, host + device, with no CUDA
// header, so the CPU tests (tests/cuda/test_ew_index_nodevice.cpp) check every fast path's
// mapping against the general one on any machine.
//
// Every kernel sees a tensor as 4 logical dimensions [N, D1, D2, D3] with one element stride
// per dimension (Dims4). An elementwise launch out = act(op(a, b, c)) is planned on the host
// (make_ew_plan) into one of:
//  - kDense: out and a are the same dense tensor (NCHW or NHWC, or any dense permutation).
//    The kernel walks memory offsets j = 0..n-1 of out; a is a[j]; b and c are either the same
//    dense layout (b[j]: residual add) or per-channel vectors, optionally per item
//    (b[item * batch_stride + channel]: bias, BatchNorm, squeeze-excite gates), where
//    channel = (j / inner) % C and item = j / item_elems; inner = H*W in NCHW, 1 in NHWC.
//    With 16-byte aligned pointers and n, inner (or C when inner == 1) multiples of the vector
//    width, each thread moves one float4 / 8 halves; else 2 halves; else one element.
//  - kGeneral: anything else (broadcasts over H or W, strided slices): logical index i is
//    unravelled with 32-bit FastDivmod (multiply-high + shift, no division) and each operand's
//    offset is the dot product with its strides.
// All offsets are 32-bit: make_ew_plan returns ok = false when an offset could reach 2^31
// (the caller then uses the 64-bit kernel).

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#if defined(__CUDACC__)
#define NEXUS_HD __host__ __device__ __forceinline__
#else
#define NEXUS_HD inline
#endif

namespace nexus::cuda {

struct Dims4 {
  std::int64_t v[4] = {1, 1, 1, 1};
  NEXUS_HD std::int64_t numel() const { return v[0] * v[1] * v[2] * v[3]; }
};

NEXUS_HD std::uint32_t umulhi32(std::uint32_t a, std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(a) * b) >> 32);
#endif
}

/// n / d and n % d for 0 <= n < 2^31 by a multiply-high and a shift (Granlund-Montgomery, as
/// CUTLASS's FastDivmod).
struct FastDivmod {
  std::uint32_t d = 1, m = 0, s = 0;
  FastDivmod() = default;
  explicit FastDivmod(std::uint32_t divisor) : d(divisor == 0 ? 1 : divisor) {
    if (d != 1) {
      std::uint32_t l = 0;  // ceil(log2 d)
      while ((std::uint64_t{1} << l) < d) ++l;
      const std::uint32_t p = 31 + l;
      m = static_cast<std::uint32_t>(((std::uint64_t{1} << p) + d - 1) / d);
      s = p - 32;
    }
  }
  NEXUS_HD std::uint32_t div(std::uint32_t n) const { return d == 1 ? n : umulhi32(n, m) >> s; }
  NEXUS_HD void divmod(std::uint32_t n, std::uint32_t& q, std::uint32_t& r) const {
    q = div(n);
    r = n - q * d;
  }
};

enum class EwPath : int { kDense = 0, kGeneral = 1 };
/// How a kDense launch reads operand b or c.
enum class EwMode : int { kNone = 0, kSame = 1, kChannel = 2 };

struct EwPlan {
  EwPath path = EwPath::kGeneral;
  std::uint32_t n = 0;  ///< logical elements
  int vec = 1;          ///< elements per thread step in kDense: 1, 2, 4 (fp32) or 8 (fp16)
  // kDense
  EwMode mode_b = EwMode::kNone, mode_c = EwMode::kNone;
  FastDivmod inner, channels, item;         ///< j / inner % C = channel, j / item = item index
  std::uint32_t bstride_b = 0, bstride_c = 0;  ///< per-item stride of a kChannel operand (0: shared)
  // kGeneral
  FastDivmod d1, d2, d3;
  std::uint32_t so[4] = {}, sa[4] = {}, sb[4] = {}, sc[4] = {};  ///< element strides (>= 0)
};

/// Channel index of memory offset j of a kDense tensor.
NEXUS_HD std::uint32_t ew_channel(const EwPlan& p, std::uint32_t j) {
  std::uint32_t q, c;
  p.channels.divmod(p.inner.div(j), q, c);
  return c;
}

/// Offset into a kDense operand with `mode` for memory offset j of out.
NEXUS_HD std::uint32_t ew_dense_offset(const EwPlan& p, EwMode mode, std::uint32_t bstride,
                                       std::uint32_t j) {
  if (mode == EwMode::kSame) return j;
  if (mode == EwMode::kChannel) {
    const std::uint32_t c = ew_channel(p, j);
    return bstride == 0 ? c : p.item.div(j) * bstride + c;
  }
  return 0;
}

/// kGeneral: offsets of out, a, b, c for logical row-major index i over dims.
NEXUS_HD void ew_general_offsets(const EwPlan& p, std::uint32_t i, std::uint32_t& o,
                                 std::uint32_t& a, std::uint32_t& b, std::uint32_t& c) {
  std::uint32_t i3, i2, i1, i0, q;
  p.d3.divmod(i, q, i3);
  p.d2.divmod(q, q, i2);
  p.d1.divmod(q, i0, i1);
  o = i0 * p.so[0] + i1 * p.so[1] + i2 * p.so[2] + i3 * p.so[3];
  a = i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2] + i3 * p.sa[3];
  b = i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2] + i3 * p.sb[3];
  c = i0 * p.sc[0] + i1 * p.sc[1] + i2 * p.sc[2] + i3 * p.sc[3];
}

/// kDense: the offset into an operand read with `mode` for lane l of the vector of out's
/// memory offsets j0 .. j0 + vec - 1 (j0 a multiple of vec). A per-channel operand's lanes share
/// one channel (NCHW, inner % vec == 0) or cover consecutive channels (NHWC, inner == 1).
NEXUS_HD std::uint32_t ew_lane_offset(const EwPlan& p, EwMode mode, std::uint32_t bstride,
                                      std::uint32_t j0, std::uint32_t l) {
  if (mode == EwMode::kSame) return j0 + l;
  if (mode == EwMode::kChannel) {
    const std::uint32_t base = ew_dense_offset(p, mode, bstride, j0);
    return p.inner.d == 1 ? base + l : base;
  }
  return 0;
}

namespace detail {

/// The dense inner size of `s` over `d` when s is a dense NCHW-like (inner = D2*D3) or
/// NHWC-like (inner = 1, channel stride 1) layout; -1 otherwise. Size-1 dims are ignored.
inline std::int64_t dense_inner(const Dims4& d, const Dims4& s) {
  auto same = [&](const Dims4& want) {
    for (int k = 0; k < 4; ++k)
      if (d.v[k] > 1 && s.v[k] != want.v[k]) return false;
    return true;
  };
  const Dims4 nchw{{d.v[1] * d.v[2] * d.v[3], d.v[2] * d.v[3], d.v[3], 1}};
  if (same(nchw)) return d.v[2] * d.v[3];
  const Dims4 nhwc{{d.v[1] * d.v[2] * d.v[3], 1, d.v[3] * d.v[1], d.v[1]}};
  if (same(nhwc)) return 1;
  return -1;
}

/// A per-channel operand: stride 1 along D1, 0 along D2 and D3 (and along N unless its batch
/// stride is D1: one vector per item). Sets *bstride.
inline bool per_channel(const Dims4& d, const Dims4& s, std::uint32_t* bstride) {
  if (d.v[2] > 1 && s.v[2] != 0) return false;
  if (d.v[3] > 1 && s.v[3] != 0) return false;
  if (d.v[1] > 1 && s.v[1] != 1) return false;
  if (d.v[0] > 1 && s.v[0] != 0 && s.v[0] != d.v[1]) return false;
  *bstride = d.v[0] > 1 ? static_cast<std::uint32_t>(s.v[0]) : 0;
  return true;
}

inline std::int64_t max_offset(const Dims4& d, const Dims4& s) {
  std::int64_t m = 0;
  for (int k = 0; k < 4; ++k) m += (d.v[k] - 1) * (s.v[k] < 0 ? -s.v[k] : s.v[k]);
  return m;
}

}  // namespace detail

/// Plans an elementwise launch over `dims` (see the top of this file). has_b / has_c say which
/// operands exist; `align` is the largest power of two (bytes, <= 16) dividing every pointer;
/// elem_size is 4 (fp32) or 2 (fp16). Returns false when 32-bit offsets do not suffice.
inline bool make_ew_plan(const Dims4& dims, const Dims4& sa, bool has_b, const Dims4& sb,
                         bool has_c, const Dims4& sc, const Dims4& so, std::size_t elem_size,
                         std::size_t align, EwPlan* out) {
  EwPlan p;
  const std::int64_t n = dims.numel();
  constexpr std::int64_t kLimit = std::int64_t{1} << 31;
  if (n >= kLimit) return false;
  for (const Dims4* s : {&sa, &sb, &sc, &so})
    if (detail::max_offset(dims, *s) >= kLimit) return false;
  for (int k = 0; k < 4; ++k)
    if (dims.v[k] < 1 || sa.v[k] < 0 || sb.v[k] < 0 || sc.v[k] < 0 || so.v[k] < 0) return false;
  p.n = static_cast<std::uint32_t>(n);

  // kDense: out and a share one dense layout; b and c are that layout or per channel.
  const std::int64_t inner = detail::dense_inner(dims, so);
  bool dense = inner >= 0 && detail::dense_inner(dims, sa) == inner;
  if (dense) {
    for (int k = 0; k < 4; ++k)  // a's strides equal out's on every non-trivial dim
      if (dims.v[k] > 1 && sa.v[k] != so.v[k]) dense = false;
  }
  auto mode_of = [&](bool has, const Dims4& s, std::uint32_t* bstride) {
    *bstride = 0;
    if (!has) return EwMode::kNone;
    bool same = true;
    for (int k = 0; k < 4; ++k)
      if (dims.v[k] > 1 && s.v[k] != so.v[k]) same = false;
    if (same) return EwMode::kSame;
    if (detail::per_channel(dims, s, bstride)) return EwMode::kChannel;
    return static_cast<EwMode>(-1);
  };
  if (dense) {
    p.mode_b = mode_of(has_b, sb, &p.bstride_b);
    p.mode_c = mode_of(has_c, sc, &p.bstride_c);
    dense = static_cast<int>(p.mode_b) >= 0 && static_cast<int>(p.mode_c) >= 0;
  }
  if (dense) {
    p.path = EwPath::kDense;
    p.inner = FastDivmod(static_cast<std::uint32_t>(inner == 0 ? 1 : inner));
    p.channels = FastDivmod(static_cast<std::uint32_t>(dims.v[1]));
    p.item = FastDivmod(static_cast<std::uint32_t>(dims.v[1] * dims.v[2] * dims.v[3]));
    const bool channel_op = p.mode_b == EwMode::kChannel || p.mode_c == EwMode::kChannel;
    // Widest vector whose lanes stay aligned and, for per-channel operands, either share one
    // channel (NCHW: inner % vec == 0) or cover consecutive channels (NHWC: C % vec == 0).
    for (int vec : {16 / static_cast<int>(elem_size), 2}) {
      if (vec < 2 || static_cast<std::size_t>(vec) * elem_size > align) continue;
      if (n % vec != 0) continue;
      if (channel_op) {
        const bool shared = inner % vec == 0;
        const bool consecutive = inner == 1 && dims.v[1] % vec == 0;
        if (!shared && !consecutive) continue;
      }
      p.vec = vec;
      break;
    }
    *out = p;
    return true;
  }

  p.path = EwPath::kGeneral;
  p.d1 = FastDivmod(static_cast<std::uint32_t>(dims.v[1]));
  p.d2 = FastDivmod(static_cast<std::uint32_t>(dims.v[2]));
  p.d3 = FastDivmod(static_cast<std::uint32_t>(dims.v[3]));
  for (int k = 0; k < 4; ++k) {
    p.so[k] = static_cast<std::uint32_t>(so.v[k]);
    p.sa[k] = static_cast<std::uint32_t>(sa.v[k]);
    p.sb[k] = has_b ? static_cast<std::uint32_t>(sb.v[k]) : 0;
    p.sc[k] = has_c ? static_cast<std::uint32_t>(sc.v[k]) : 0;
  }
  *out = p;
  return true;
}

/// Copy/cast plan (launch_convert): the i-th row-major element of src (over sdims) goes to the
/// i-th of dst (over ddims). kDense when both sides are dense in the same layout over equal
/// dims (a plain vectorizable copy); else two 32-bit unravels.
struct CopyPlan {
  bool dense = false;
  std::uint32_t n = 0;
  int vec = 1;
  FastDivmod s1, s2, s3, t1, t2, t3;
  std::uint32_t ss[4] = {}, ds[4] = {};
};

NEXUS_HD void copy_offsets(const CopyPlan& p, std::uint32_t i, std::uint32_t& src,
                           std::uint32_t& dst) {
  if (p.dense) {
    src = dst = i;
    return;
  }
  std::uint32_t a3, a2, a1, a0, q;
  p.s3.divmod(i, q, a3);
  p.s2.divmod(q, q, a2);
  p.s1.divmod(q, a0, a1);
  src = a0 * p.ss[0] + a1 * p.ss[1] + a2 * p.ss[2] + a3 * p.ss[3];
  p.t3.divmod(i, q, a3);
  p.t2.divmod(q, q, a2);
  p.t1.divmod(q, a0, a1);
  dst = a0 * p.ds[0] + a1 * p.ds[1] + a2 * p.ds[2] + a3 * p.ds[3];
}

/// `align`: as make_ew_plan, over both pointers; elem_size: the larger of the two types.
inline bool make_copy_plan(const Dims4& sdims, const Dims4& ss, const Dims4& ddims,
                           const Dims4& ds, std::size_t elem_size, std::size_t align,
                           CopyPlan* out) {
  CopyPlan p;
  const std::int64_t n = ddims.numel();
  constexpr std::int64_t kLimit = std::int64_t{1} << 31;
  if (n >= kLimit || sdims.numel() != n) return false;
  if (detail::max_offset(sdims, ss) >= kLimit || detail::max_offset(ddims, ds) >= kLimit)
    return false;
  for (int k = 0; k < 4; ++k)
    if (sdims.v[k] < 1 || ddims.v[k] < 1 || ss.v[k] < 0 || ds.v[k] < 0) return false;
  p.n = static_cast<std::uint32_t>(n);
  bool same_dims = true;
  for (int k = 0; k < 4; ++k) same_dims = same_dims && sdims.v[k] == ddims.v[k];
  const std::int64_t inner = detail::dense_inner(ddims, ds);
  bool dense = same_dims && inner >= 0 && detail::dense_inner(sdims, ss) == inner;
  if (dense)
    for (int k = 0; k < 4; ++k)
      if (ddims.v[k] > 1 && ss.v[k] != ds.v[k]) dense = false;
  // Row-major over both sides with contiguous strides is also a flat copy (reshape).
  if (!dense) {
    auto row_major = [](const Dims4& d, const Dims4& s) {
      const Dims4 want{{d.v[1] * d.v[2] * d.v[3], d.v[2] * d.v[3], d.v[3], 1}};
      for (int k = 0; k < 4; ++k)
        if (d.v[k] > 1 && s.v[k] != want.v[k]) return false;
      return true;
    };
    dense = row_major(sdims, ss) && row_major(ddims, ds);
  }
  p.dense = dense;
  if (dense) {
    const int vec = 16 / static_cast<int>(elem_size);
    if (static_cast<std::size_t>(vec) * elem_size <= align && n % vec == 0) p.vec = vec;
  } else {
    p.s1 = FastDivmod(static_cast<std::uint32_t>(sdims.v[1]));
    p.s2 = FastDivmod(static_cast<std::uint32_t>(sdims.v[2]));
    p.s3 = FastDivmod(static_cast<std::uint32_t>(sdims.v[3]));
    p.t1 = FastDivmod(static_cast<std::uint32_t>(ddims.v[1]));
    p.t2 = FastDivmod(static_cast<std::uint32_t>(ddims.v[2]));
    p.t3 = FastDivmod(static_cast<std::uint32_t>(ddims.v[3]));
    for (int k = 0; k < 4; ++k) {
      p.ss[k] = static_cast<std::uint32_t>(ss.v[k]);
      p.ds[k] = static_cast<std::uint32_t>(ds.v[k]);
    }
  }
  *out = p;
  return true;
}

/// The largest power of two <= 16 dividing every address (0 = null pointers ignored).
inline std::size_t common_alignment(std::initializer_list<const void*> ptrs) {
  std::size_t a = 16;
  for (const void* p : ptrs) {
    if (!p) continue;
    const auto v = reinterpret_cast<std::uintptr_t>(p);
    while (a > 1 && v % a != 0) a /= 2;
  }
  return a;
}

}  // namespace nexus::cuda
