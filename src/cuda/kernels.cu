// Small kernels of the CudaBackend (see kernels.hpp). Elementwise and copy kernels are planned
// on the host (ew_index.hpp): dense tensors run vectorized (16 bytes per thread step) with
// 32-bit index math, per-channel operands by a multiply-high channel index, anything else by a
// 32-bit FastDivmod unravel; only tensors beyond 2^31 elements take the 64-bit kernels. The
// H200 run of 2026-11-30 showed the old int64 kernel at ~317 us per ResNet-50 epilogue, ~13x
// the memory time of the tensor.
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>

#include "kernels.hpp"

namespace nexus::cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(std::int64_t n) {
  const std::int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<std::int64_t>(b, 65535));
}

__device__ __forceinline__ float ld(const float* p, std::int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __half* p, std::int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void st(float* p, std::int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__half* p, std::int64_t i, float v) { p[i] = __float2half(v); }

/// Row-major indices of linear element i over dims.
__device__ __forceinline__ void unravel(std::int64_t i, const Dims4& d, std::int64_t idx[4]) {
  idx[3] = i % d.v[3];
  i /= d.v[3];
  idx[2] = i % d.v[2];
  i /= d.v[2];
  idx[1] = i % d.v[1];
  idx[0] = i / d.v[1];
}

__device__ __forceinline__ std::int64_t offset(const std::int64_t idx[4], const Dims4& s) {
  return idx[0] * s.v[0] + idx[1] * s.v[1] + idx[2] * s.v[2] + idx[3] * s.v[3];
}

__device__ __forceinline__ float activate(Act act, float v, float alpha) {
  switch (act) {
    case Act::kNone:
      return v;
    case Act::kRelu:
      return v > 0.f ? v : 0.f;
    case Act::kRelu6:
      return fminf(fmaxf(v, 0.f), 6.f);
    case Act::kLeaky:
      return v > 0.f ? v : v * alpha;
    case Act::kSigmoid:
      return 1.f / (1.f + expf(-v));
    case Act::kTanh:
      return tanhf(v);
  }
  return v;
}

/// op(a, b, c) of the elementwise kernels (EwOp); y, z: operands b, c (unused ones are 0).
__device__ __forceinline__ float ew_apply(EwOp op, float v, float y, float z, float alpha,
                                          float beta) {
  switch (op) {
    case EwOp::kCopy: return v;
    case EwOp::kAdd: return v + y;
    case EwOp::kMul: return v * y;
    case EwOp::kAffine: return fmaf(v, y, z);
    case EwOp::kAdd2: return v + y + z;
    case EwOp::kSub: return v - y;
    case EwOp::kDiv: return v / y;
    case EwOp::kClip: return fminf(fmaxf(v, alpha), beta);
    case EwOp::kHardSigmoid: return fmaxf(0.f, fminf(1.f, alpha * v + beta));
    case EwOp::kHardSwish: return v * fmaxf(0.f, fminf(1.f, v * (1.f / 6.f) + 0.5f));
    case EwOp::kSqrt: return sqrtf(v);
    case EwOp::kPow: return alpha == 2.f ? v * v : powf(v, alpha);
  }
  return v;
}

template <typename T>
__global__ void elementwise_kernel(EwOp op, Act act, float alpha, float beta, Dims4 dims, std::int64_t n,
                                   const T* a, Dims4 sa, const T* b, Dims4 sb, const T* c, Dims4 sc,
                                   T* out, Dims4 so) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, dims, idx);
    const float v = ld(a, offset(idx, sa));
    const float y = ew_reads_b(op) ? ld(b, offset(idx, sb)) : 0.f;
    const float z = ew_reads_c(op) ? ld(c, offset(idx, sc)) : 0.f;
    st(out, offset(idx, so), activate(act, ew_apply(op, v, y, z, alpha, beta), alpha));
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, Dims4 sdims, Dims4 ss, D* dst, Dims4 ddims, Dims4 ds,
                               std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t si[4], di[4];
    unravel(i, sdims, si);
    unravel(i, ddims, di);
    st(dst, offset(di, ds), ld(src, offset(si, ss)));
  }
}

template <typename T>
__global__ void softmax_kernel(const T* x, Dims4 xs, T* y, Dims4 ys, Dims4 dims, int axis,
                               std::int64_t rows) {
  const std::int64_t len = dims.v[axis];
  for (std::int64_t r = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; r < rows;
       r += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    std::int64_t rest = r;
    for (int d = 3; d >= 0; --d) {
      if (d == axis) {
        idx[d] = 0;
        continue;
      }
      idx[d] = rest % dims.v[d];
      rest /= dims.v[d];
    }
    const std::int64_t bx = offset(idx, xs), by = offset(idx, ys);
    const std::int64_t sx = xs.v[axis], sy = ys.v[axis];
    float m = -FLT_MAX;
    for (std::int64_t k = 0; k < len; ++k) m = fmaxf(m, ld(x, bx + k * sx));
    float sum = 0.f;
    for (std::int64_t k = 0; k < len; ++k) sum += expf(ld(x, bx + k * sx) - m);
    const float inv = 1.f / sum;
    for (std::int64_t k = 0; k < len; ++k) st(y, by + k * sy, expf(ld(x, bx + k * sx) - m) * inv);
  }
}

/// Max or average pooling; `include_pad` (ONNX count_include_pad) divides by the window clipped
/// to the padded input instead of by the input elements it covers.
template <typename T>
__global__ void pool_kernel(bool is_max, const T* x, Dims4 xdims, Dims4 xs, T* y, Dims4 ydims,
                            Dims4 ys, int kh, int kw, int sh, int sw, int pad_top, int pad_left,
                            bool include_pad, int pad_bottom, int pad_right, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, ydims, idx);
    const std::int64_t h0 = idx[2] * sh - pad_top, w0 = idx[3] * sw - pad_left;
    float acc = is_max ? -FLT_MAX : 0.f;
    int count = 0;
    for (int dh = 0; dh < kh; ++dh) {
      const std::int64_t h = h0 + dh;
      if (h < 0 || h >= xdims.v[2]) continue;
      for (int dw = 0; dw < kw; ++dw) {
        const std::int64_t w = w0 + dw;
        if (w < 0 || w >= xdims.v[3]) continue;
        const float v = ld(x, idx[0] * xs.v[0] + idx[1] * xs.v[1] + h * xs.v[2] + w * xs.v[3]);
        acc = is_max ? fmaxf(acc, v) : acc + v;
        ++count;
      }
    }
    const std::int64_t divisor =
        include_pad ? (min(h0 + kh, xdims.v[2] + pad_bottom) - h0) *
                          (min(w0 + kw, xdims.v[3] + pad_right) - w0)
                    : count;
    float out = 0.f;
    if (is_max ? count > 0 : divisor > 0) out = is_max ? acc : acc / static_cast<float>(divisor);
    st(y, offset(idx, ys), out);
  }
}

/// TensorFlow's compute_interpolation_weights for one output coordinate.
__device__ __forceinline__ void interp(std::int64_t out_i, std::int64_t in_size, float scale,
                                       bool half_pixel, std::int64_t& lower, std::int64_t& upper,
                                       float& lerp, bool zero_source = false) {
  const float in = zero_source ? 0.f
                   : half_pixel ? (static_cast<float>(out_i) + 0.5f) * scale - 0.5f
                                : static_cast<float>(out_i) * scale;
  const float in_f = floorf(in);
  lower = max(static_cast<std::int64_t>(in_f), std::int64_t{0});
  upper = min(static_cast<std::int64_t>(ceilf(in)), in_size - 1);
  lerp = in - in_f;
}

template <typename T>
__global__ void resize_kernel(const T* x, Dims4 xdims, Dims4 xs, T* y, Dims4 ydims, Dims4 ys,
                              float scale_h, float scale_w, bool half_pixel, bool pytorch,
                              std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, ydims, idx);
    std::int64_t top, bottom, left, right;
    float ly, lx;
    interp(idx[2], xdims.v[2], scale_h, half_pixel, top, bottom, ly, pytorch && ydims.v[2] == 1);
    interp(idx[3], xdims.v[3], scale_w, half_pixel, left, right, lx, pytorch && ydims.v[3] == 1);
    const std::int64_t base = idx[0] * xs.v[0] + idx[1] * xs.v[1];
    const float tl = ld(x, base + top * xs.v[2] + left * xs.v[3]);
    const float tr = ld(x, base + top * xs.v[2] + right * xs.v[3]);
    const float bl = ld(x, base + bottom * xs.v[2] + left * xs.v[3]);
    const float br = ld(x, base + bottom * xs.v[2] + right * xs.v[3]);
    const float t = tl + (tr - tl) * lx;
    const float b = bl + (br - bl) * lx;
    st(y, offset(idx, ys), t + (b - t) * ly);
  }
}

template <typename T>
__global__ void strided_copy_kernel(const T* x, Dims4 src_dims, Dims4 xs, std::int64_t x_offset,
                                    Dims4 pad_begin, float value, T* y, Dims4 ydims, Dims4 ys,
                                    std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, ydims, idx);
    bool inside = true;
    std::int64_t off = x_offset;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const std::int64_t src = idx[k] - pad_begin.v[k];
      inside = inside && src >= 0 && src < src_dims.v[k];
      off += src * xs.v[k];
    }
    st(y, offset(idx, ys), inside ? ld(x, off) : value);
  }
}

/// ONNX Resize nearest: the source index of output index i along one axis (as the CpuBackend's
/// nearest_index: coord = model::ResizeCoord, nearest = model::NearestRound).
__device__ __forceinline__ std::int64_t nearest_src(std::int64_t i, std::int64_t in,
                                                    std::int64_t out, double scale, int coord,
                                                    int nearest) {
  const double x = static_cast<double>(i);
  double src = 0.0;
  switch (coord) {
    case 0: src = x / scale; break;                                          // asymmetric
    case 1: src = (x + 0.5) / scale - 0.5; break;                            // half_pixel
    case 2: src = out > 1 ? (x + 0.5) / scale - 0.5 : 0.0; break;            // pytorch_half_pixel
    case 3: src = out > 1 ? x * double(in - 1) / double(out - 1) : 0.0; break;  // align_corners
    default: src = (x + 0.5) / scale; break;                                 // tf_half_pixel_for_nn
  }
  double r = 0.0;
  switch (nearest) {
    case 0: r = src == floor(src) + 0.5 ? floor(src) : round(src); break;  // round_prefer_floor
    case 1: r = round(src); break;                                         // round_prefer_ceil
    case 2: r = floor(src); break;
    default: r = ceil(src); break;
  }
  const std::int64_t k = static_cast<std::int64_t>(r);
  return k < 0 ? 0 : (k > in - 1 ? in - 1 : k);
}

template <typename T>
__global__ void resize_nearest_kernel(const T* x, Dims4 xdims, Dims4 xs, T* y, Dims4 ydims,
                                      Dims4 ys, int coord, int nearest, double scale_h,
                                      double scale_w, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, ydims, idx);
    const std::int64_t sy = nearest_src(idx[2], xdims.v[2], ydims.v[2], scale_h, coord, nearest);
    const std::int64_t sx = nearest_src(idx[3], xdims.v[3], ydims.v[3], scale_w, coord, nearest);
    st(y, offset(idx, ys), ld(x, idx[0] * xs.v[0] + idx[1] * xs.v[1] + sy * xs.v[2] + sx * xs.v[3]));
  }
}

template <typename T>
__global__ void reduce_mean_kernel(const T* x, Dims4 xdims, Dims4 xs, T* y, Dims4 ydims, Dims4 ys,
                                   std::int64_t n) {
  // Reduced extents per dimension (1 where kept).
  std::int64_t r[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) r[k] = ydims.v[k] == 1 ? xdims.v[k] : 1;
  const std::int64_t len = r[0] * r[1] * r[2] * r[3];
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, ydims, idx);
    const std::int64_t base = offset(idx, xs);
    float acc = 0.f;
    for (std::int64_t j = 0; j < len; ++j) {
      std::int64_t rest = j, off = base;
      for (int k = 3; k >= 0; --k) {
        off += (rest % r[k]) * xs.v[k];
        rest /= r[k];
      }
      acc += ld(x, off);
    }
    st(y, offset(idx, ys), acc / static_cast<float>(len));
  }
}

struct PoolStrides {
  std::uint32_t n, c, h, w;
};

/// 16-byte (or narrower) aligned vector of V elements: one ld/st.global.v4 for float4 / 8 halves.
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

template <typename T, int V>
__device__ __forceinline__ void load_operand(const EwPlan& p, EwMode mode, std::uint32_t bstride,
                                             const T* x, std::uint32_t j0, float out[V]) {
  if (mode == EwMode::kSame) {
    const Vec<T, V> w = *reinterpret_cast<const Vec<T, V>*>(x + j0);
#pragma unroll
    for (int l = 0; l < V; ++l) out[l] = to_f(w.v[l]);
  } else if (mode == EwMode::kChannel) {
    const std::uint32_t base = ew_dense_offset(p, mode, bstride, j0);
    if (p.inner.d == 1) {  // NHWC: consecutive channels
#pragma unroll
      for (int l = 0; l < V; ++l) out[l] = to_f(__ldg(x + base + l));
    } else {  // NCHW: one channel for all lanes
      const float v = to_f(__ldg(x + base));
#pragma unroll
      for (int l = 0; l < V; ++l) out[l] = v;
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(256) ew_dense_kernel(EwPlan p, EwOp op, Act act, float alpha,
                                                       float beta, const T* a, const T* b,
                                                       const T* c, T* out) {
  const std::uint32_t steps = p.n / V;
  for (std::uint32_t s = blockIdx.x * blockDim.x + threadIdx.x; s < steps;
       s += gridDim.x * blockDim.x) {
    const std::uint32_t j0 = s * V;
    const Vec<T, V> va = *reinterpret_cast<const Vec<T, V>*>(a + j0);
    float x[V], y[V], z[V];
#pragma unroll
    for (int l = 0; l < V; ++l) x[l] = to_f(va.v[l]);
#pragma unroll
    for (int l = 0; l < V; ++l) y[l] = z[l] = 0.f;
    if (ew_reads_b(op)) load_operand<T, V>(p, p.mode_b, p.bstride_b, b, j0, y);
    if (ew_reads_c(op)) load_operand<T, V>(p, p.mode_c, p.bstride_c, c, j0, z);
    Vec<T, V> vo;
#pragma unroll
    for (int l = 0; l < V; ++l)
      vo.v[l] = from_f<T>(activate(act, ew_apply(op, x[l], y[l], z[l], alpha, beta), alpha));
    *reinterpret_cast<Vec<T, V>*>(out + j0) = vo;
  }
}

template <typename T>
__global__ void __launch_bounds__(256) ew_general_kernel(EwPlan p, EwOp op, Act act, float alpha,
                                                         float beta, const T* a, const T* b,
                                                         const T* c, T* out) {
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n;
       i += gridDim.x * blockDim.x) {
    std::uint32_t o, ia, ib, ic;
    ew_general_offsets(p, i, o, ia, ib, ic);
    const float v = to_f(a[ia]);
    const float y = ew_reads_b(op) ? to_f(b[ib]) : 0.f;
    const float z = ew_reads_c(op) ? to_f(c[ic]) : 0.f;
    out[o] = from_f<T>(activate(act, ew_apply(op, v, y, z, alpha, beta), alpha));
  }
}

template <typename S, typename D, int V>
__global__ void __launch_bounds__(256) copy_dense_kernel(std::uint32_t n, const S* src, D* dst) {
  const std::uint32_t steps = n / V;
  for (std::uint32_t s = blockIdx.x * blockDim.x + threadIdx.x; s < steps;
       s += gridDim.x * blockDim.x) {
    const Vec<S, V> x = *reinterpret_cast<const Vec<S, V>*>(src + s * V);
    Vec<D, V> y;
#pragma unroll
    for (int l = 0; l < V; ++l) y.v[l] = from_f<D>(to_f(x.v[l]));
    *reinterpret_cast<Vec<D, V>*>(dst + s * V) = y;
  }
}

template <typename S, typename D>
__global__ void __launch_bounds__(256) copy_general_kernel(CopyPlan p, const S* src, D* dst) {
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n;
       i += gridDim.x * blockDim.x) {
    std::uint32_t si, di;
    copy_offsets(p, i, si, di);
    dst[di] = from_f<D>(to_f(src[si]));
  }
}

__global__ void normalize_u8_kernel(const std::uint8_t* src, std::uint32_t n, FastDivmod c_div,
                                    FastDivmod w_div, FastDivmod h_div, Dims4 ds32, Elem dst_t,
                                    void* dst, const float* mean, const float* inv_std) {
  // src is [N, H, W, C] contiguous; i walks it in memory order (coalesced reads).
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += gridDim.x * blockDim.x) {
    std::uint32_t q, c, w, h, item;
    c_div.divmod(i, q, c);
    w_div.divmod(q, q, w);
    h_div.divmod(q, item, h);
    const float v = (static_cast<float>(src[i]) - mean[c]) * inv_std[c];
    const std::uint32_t o = item * static_cast<std::uint32_t>(ds32.v[0]) +
                            c * static_cast<std::uint32_t>(ds32.v[1]) +
                            h * static_cast<std::uint32_t>(ds32.v[2]) +
                            w * static_cast<std::uint32_t>(ds32.v[3]);
    if (dst_t == Elem::kF32)
      static_cast<float*>(dst)[o] = v;
    else
      static_cast<__half*>(dst)[o] = __float2half_rn(v);
  }
}


/// Pooling with 32-bit index math, walking the output in memory order: (n, h, w, c) when the
/// output is NHWC (channel stride 1), else (n, c, h, w), so reads and writes coalesce.
template <typename T, bool kNhwc>
__global__ void __launch_bounds__(256) pool32_kernel(bool is_max, const T* x, int xh, int xw,
                                                     PoolStrides xs, T* y, FastDivmod d_in,
                                                     FastDivmod d_mid, FastDivmod d_out,
                                                     PoolStrides ys, int kh, int kw, int sh,
                                                     int sw, int pad_top, int pad_left,
                                                     std::uint32_t n) {
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += gridDim.x * blockDim.x) {
    std::uint32_t q, a, b, c, item;  // innermost a, then b, then c
    d_in.divmod(i, q, a);
    d_mid.divmod(q, q, b);
    d_out.divmod(q, item, c);
    // NHWC: a = channel, b = w, c = h. NCHW: a = w, b = h, c = channel.
    const std::uint32_t ch = kNhwc ? a : c, oh = kNhwc ? c : b, ow = kNhwc ? b : a;
    const int h0 = static_cast<int>(oh) * sh - pad_top, w0 = static_cast<int>(ow) * sw - pad_left;
    const T* base = x + item * xs.n + ch * xs.c;
    float acc = is_max ? -FLT_MAX : 0.f;
    int count = 0;
    for (int dh = 0; dh < kh; ++dh) {
      const int h = h0 + dh;
      if (h < 0 || h >= xh) continue;
      for (int dw = 0; dw < kw; ++dw) {
        const int w = w0 + dw;
        if (w < 0 || w >= xw) continue;
        const float v = to_f(base[static_cast<std::uint32_t>(h) * xs.h + static_cast<std::uint32_t>(w) * xs.w]);
        acc = is_max ? fmaxf(acc, v) : acc + v;
        ++count;
      }
    }
    float out = 0.f;
    if (count > 0) out = is_max ? acc : acc / static_cast<float>(count);
    y[item * ys.n + ch * ys.c + oh * ys.h + ow * ys.w] = from_f<T>(out);
  }
}

/// Softmax with one warp per row: lanes stride the row, max and sum by shuffle reductions (a
/// classifier's 1000-wide rows were one thread each before: 0.19 ms of ResNet-50's b32 batch).
template <typename T>
__global__ void __launch_bounds__(256) softmax_warp_kernel(const T* x, Dims4 xs, T* y, Dims4 ys,
                                                           Dims4 dims, int axis, std::int64_t rows) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t r = blockIdx.x * std::int64_t{blockDim.x / 32} + threadIdx.x / 32; r < rows;
       r += warps) {
    std::int64_t idx[4];
    std::int64_t rest = r;
    for (int d = 3; d >= 0; --d) {
      if (d == axis) {
        idx[d] = 0;
        continue;
      }
      idx[d] = rest % dims.v[d];
      rest /= dims.v[d];
    }
    const T* bx = x + (idx[0] * xs.v[0] + idx[1] * xs.v[1] + idx[2] * xs.v[2] + idx[3] * xs.v[3]);
    T* by = y + (idx[0] * ys.v[0] + idx[1] * ys.v[1] + idx[2] * ys.v[2] + idx[3] * ys.v[3]);
    const std::int64_t len = dims.v[axis], sx = xs.v[axis], sy = ys.v[axis];
    float m = -FLT_MAX;
    for (std::int64_t k = lane; k < len; k += 32) m = fmaxf(m, to_f(bx[k * sx]));
    for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.f;
    for (std::int64_t k = lane; k < len; k += 32) sum += expf(to_f(bx[k * sx]) - m);
    for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = 1.f / sum;
    for (std::int64_t k = lane; k < len; k += 32) by[k * sy] = from_f<T>(expf(to_f(bx[k * sx]) - m) * inv);
  }
}

/// Enough blocks to fill the GPU several times over; the kernels loop (grid stride).
int grid_for(std::uint32_t work) {
  const std::uint32_t b = (work + kThreads - 1) / kThreads;
  return static_cast<int>(b < 1 ? 1 : (b > 65535u ? 65535u : b));
}

template <typename T>
void launch_ew_planned(const EwPlan& p, EwOp op, Act act, float alpha, float beta,
                       const void* a, const void* b, const void* c, void* out,
                       cudaStream_t stream) {
  const T* ta = static_cast<const T*>(a);
  const T* tb = static_cast<const T*>(b);
  const T* tc = static_cast<const T*>(c);
  T* to = static_cast<T*>(out);
  if (p.path == EwPath::kGeneral) {
    ew_general_kernel<T><<<grid_for(p.n), kThreads, 0, stream>>>(p, op, act, alpha, beta, ta, tb, tc, to);
    return;
  }
  switch (p.vec) {
    case 8:
      if constexpr (sizeof(T) == 2) {
        ew_dense_kernel<T, 8><<<grid_for(p.n / 8), kThreads, 0, stream>>>(p, op, act, alpha, beta, ta, tb,
                                                                          tc, to);
        return;
      }
      break;
    case 4:
      ew_dense_kernel<T, 4><<<grid_for(p.n / 4), kThreads, 0, stream>>>(p, op, act, alpha, beta, ta, tb,
                                                                        tc, to);
      return;
    case 2:
      ew_dense_kernel<T, 2><<<grid_for(p.n / 2), kThreads, 0, stream>>>(p, op, act, alpha, beta, ta, tb,
                                                                        tc, to);
      return;
    default:
      break;
  }
  ew_dense_kernel<T, 1><<<grid_for(p.n), kThreads, 0, stream>>>(p, op, act, alpha, beta, ta, tb, tc, to);
}

template <typename S, typename D>
void launch_copy_planned(const CopyPlan& p, const void* src, void* dst, cudaStream_t stream) {
  const S* s = static_cast<const S*>(src);
  D* d = static_cast<D*>(dst);
  if (!p.dense) {
    copy_general_kernel<S, D><<<grid_for(p.n), kThreads, 0, stream>>>(p, s, d);
  } else if (p.vec == 8) {
    copy_dense_kernel<S, D, 8><<<grid_for(p.n / 8), kThreads, 0, stream>>>(p.n, s, d);
  } else if (p.vec == 4) {
    copy_dense_kernel<S, D, 4><<<grid_for(p.n / 4), kThreads, 0, stream>>>(p.n, s, d);
  } else {
    copy_dense_kernel<S, D, 1><<<grid_for(p.n), kThreads, 0, stream>>>(p.n, s, d);
  }
}

// As the CpuBackend's interpolation(): `given` is an ONNX model's out/in scale (0: the sizes').
float resize_scale(std::int64_t in, std::int64_t out, bool align_corners, float given = 0.f) {
  if (align_corners && given > 0.f && static_cast<float>(in) * given > 1.f)
    return static_cast<float>(in - 1) / (static_cast<float>(in) * given - 1.f);
  if (align_corners && out > 1) return static_cast<float>(in - 1) / static_cast<float>(out - 1);
  if (given > 0.f) return 1.f / given;
  return static_cast<float>(in) / static_cast<float>(out);
}

template <typename S>
void convert_to(Elem dst_t, const S* src, Dims4 sd, Dims4 ss, void* dst, Dims4 dd, Dims4 ds,
                std::int64_t n, cudaStream_t stream) {
  if (dst_t == Elem::kF32)
    convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, sd, ss, static_cast<float*>(dst),
                                                           dd, ds, n);
  else
    convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, sd, ss, static_cast<__half*>(dst),
                                                           dd, ds, n);
}

}  // namespace

void launch_elementwise(Elem t, EwOp op, Act act, float alpha, Dims4 dims, const void* a, Dims4 sa,
                        const void* b, Dims4 sb, const void* c, Dims4 sc, void* out, Dims4 so,
                        cudaStream_t stream, float beta) {
  const std::int64_t n = dims.numel();
  if (n == 0) return;
  const bool has_b = ew_reads_b(op), has_c = ew_reads_c(op);
  EwPlan plan;
  if (make_ew_plan(dims, sa, has_b, sb, has_c, sc, so, t == Elem::kF32 ? 4 : 2,
                   common_alignment({a, has_b ? b : nullptr, has_c ? c : nullptr, out}), &plan)) {
    if (t == Elem::kF32)
      launch_ew_planned<float>(plan, op, act, alpha, beta, a, b, c, out, stream);
    else
      launch_ew_planned<__half>(plan, op, act, alpha, beta, a, b, c, out, stream);
    return;
  }
  // Beyond 32-bit offsets: the 64-bit kernel.
  if (t == Elem::kF32)
    elementwise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        op, act, alpha, beta, dims, n, static_cast<const float*>(a), sa, static_cast<const float*>(b), sb,
        static_cast<const float*>(c), sc, static_cast<float*>(out), so);
  else
    elementwise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        op, act, alpha, beta, dims, n, static_cast<const __half*>(a), sa, static_cast<const __half*>(b),
        sb, static_cast<const __half*>(c), sc, static_cast<__half*>(out), so);
}

void launch_convert(Elem src_t, const void* src, Dims4 src_dims, Dims4 src_strides, Elem dst_t,
                    void* dst, Dims4 dst_dims, Dims4 dst_strides, cudaStream_t stream) {
  const std::int64_t n = dst_dims.numel();
  if (n == 0) return;
  CopyPlan plan;
  const std::size_t wide = (src_t == Elem::kF32 || dst_t == Elem::kF32) ? 4 : 2;
  if (make_copy_plan(src_dims, src_strides, dst_dims, dst_strides, wide,
                     common_alignment({src, dst}), &plan)) {
    if (src_t == Elem::kF32 && dst_t == Elem::kF32)
      launch_copy_planned<float, float>(plan, src, dst, stream);
    else if (src_t == Elem::kF32)
      launch_copy_planned<float, __half>(plan, src, dst, stream);
    else if (dst_t == Elem::kF32)
      launch_copy_planned<__half, float>(plan, src, dst, stream);
    else
      launch_copy_planned<__half, __half>(plan, src, dst, stream);
    return;
  }
  if (src_t == Elem::kF32)
    convert_to(dst_t, static_cast<const float*>(src), src_dims, src_strides, dst, dst_dims,
               dst_strides, n, stream);
  else
    convert_to(dst_t, static_cast<const __half*>(src), src_dims, src_strides, dst, dst_dims,
               dst_strides, n, stream);
}

void launch_normalize_u8(const std::uint8_t* src, Dims4 d, Elem dst_t, void* dst,
                         Dims4 dst_strides, const float* mean, const float* inv_std,
                         cudaStream_t stream) {
  const std::int64_t n = d.numel();
  if (n == 0) return;
  normalize_u8_kernel<<<grid_for(static_cast<std::uint32_t>(n)), kThreads, 0, stream>>>(
      src, static_cast<std::uint32_t>(n), FastDivmod(static_cast<std::uint32_t>(d.v[1])),
      FastDivmod(static_cast<std::uint32_t>(d.v[3])), FastDivmod(static_cast<std::uint32_t>(d.v[2])),
      dst_strides, dst_t, dst, mean, inv_std);
}

void launch_softmax(Elem t, const void* x, Dims4 xs, void* y, Dims4 ys, Dims4 dims, int axis,
                    cudaStream_t stream) {
  const std::int64_t rows = dims.v[axis] == 0 ? 0 : dims.numel() / dims.v[axis];
  if (rows == 0) return;
  if (dims.v[axis] >= 64) {  // long rows: a warp each (8 rows per 256-thread block)
    const int blocks = static_cast<int>(std::min<std::int64_t>((rows + 7) / 8, 65535));
    if (t == Elem::kF32)
      softmax_warp_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(x), xs,
                                                           static_cast<float*>(y), ys, dims, axis, rows);
    else
      softmax_warp_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(x), xs,
                                                           static_cast<__half*>(y), ys, dims, axis, rows);
    return;
  }
  if (t == Elem::kF32)
    softmax_kernel<<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const float*>(x), xs, static_cast<float*>(y), ys, dims, axis, rows);
  else
    softmax_kernel<<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const __half*>(x), xs, static_cast<__half*>(y), ys, dims, axis, rows);
}

void launch_pool(Elem t, bool is_max, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                 Dims4 ys, int kh, int kw, int sh, int sw, int pad_top, int pad_left,
                 cudaStream_t stream) {
  const std::int64_t n = ydims.numel();
  if (n == 0) return;
  const bool fits = n < (std::int64_t{1} << 31) && detail::max_offset(xdims, xs) < (std::int64_t{1} << 31) &&
                    detail::max_offset(ydims, ys) < (std::int64_t{1} << 31);
  if (fits) {
    auto u = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
    const PoolStrides pxs{u(xs.v[0]), u(xs.v[1]), u(xs.v[2]), u(xs.v[3])};
    const PoolStrides pys{u(ys.v[0]), u(ys.v[1]), u(ys.v[2]), u(ys.v[3])};
    const bool nhwc = ys.v[1] == 1 && ydims.v[1] > 1;
    const FastDivmod d_in(u(nhwc ? ydims.v[1] : ydims.v[3]));
    const FastDivmod d_mid(u(nhwc ? ydims.v[3] : ydims.v[2]));
    const FastDivmod d_out(u(nhwc ? ydims.v[2] : ydims.v[1]));
    const int xh = static_cast<int>(xdims.v[2]), xw = static_cast<int>(xdims.v[3]);
    const int g = grid_for(u(n));
#define NEXUS_POOL32(T, NHWC)                                                                  \
  pool32_kernel<T, NHWC><<<g, kThreads, 0, stream>>>(                                          \
      is_max, static_cast<const T*>(x), xh, xw, pxs, static_cast<T*>(y), d_in, d_mid, d_out, pys, \
      kh, kw, sh, sw, pad_top, pad_left, u(n))
    if (t == Elem::kF32) {
      if (nhwc) NEXUS_POOL32(float, true); else NEXUS_POOL32(float, false);
    } else {
      if (nhwc) NEXUS_POOL32(__half, true); else NEXUS_POOL32(__half, false);
    }
#undef NEXUS_POOL32
    return;
  }
  if (t == Elem::kF32)
    pool_kernel<<<blocks_for(n), kThreads, 0, stream>>>(is_max, static_cast<const float*>(x), xdims,
                                                        xs, static_cast<float*>(y), ydims, ys, kh,
                                                        kw, sh, sw, pad_top, pad_left, false, 0, 0,
                                                        n);
  else
    pool_kernel<<<blocks_for(n), kThreads, 0, stream>>>(is_max, static_cast<const __half*>(x),
                                                        xdims, xs, static_cast<__half*>(y), ydims,
                                                        ys, kh, kw, sh, sw, pad_top, pad_left,
                                                        false, 0, 0, n);
}

void launch_resize_bilinear(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                            Dims4 ys, bool align_corners, bool half_pixel_centers,
                            cudaStream_t stream, float given_scale_h, float given_scale_w,
                            bool pytorch_half_pixel) {
  const std::int64_t n = ydims.numel();
  if (n == 0) return;
  const float scale_h = resize_scale(xdims.v[2], ydims.v[2], align_corners, given_scale_h);
  const float scale_w = resize_scale(xdims.v[3], ydims.v[3], align_corners, given_scale_w);
  if (t == Elem::kF32)
    resize_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(x), xdims, xs,
                                                          static_cast<float*>(y), ydims, ys,
                                                          scale_h, scale_w, half_pixel_centers,
                                                          pytorch_half_pixel, n);
  else
    resize_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const __half*>(x), xdims, xs,
                                                          static_cast<__half*>(y), ydims, ys,
                                                          scale_h, scale_w, half_pixel_centers,
                                                          pytorch_half_pixel, n);
}

void launch_avg_pool_include_pad(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y,
                                 Dims4 ydims, Dims4 ys, int kh, int kw, int sh, int sw,
                                 int pad_top, int pad_left, int pad_bottom, int pad_right,
                                 cudaStream_t stream) {
  const std::int64_t n = ydims.numel();
  if (n == 0) return;
  if (t == Elem::kF32)
    pool_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        false, static_cast<const float*>(x), xdims, xs, static_cast<float*>(y), ydims, ys, kh, kw,
        sh, sw, pad_top, pad_left, true, pad_bottom, pad_right, n);
  else
    pool_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        false, static_cast<const __half*>(x), xdims, xs, static_cast<__half*>(y), ydims, ys, kh,
        kw, sh, sw, pad_top, pad_left, true, pad_bottom, pad_right, n);
}

void launch_strided_copy(Elem t, const void* x, Dims4 src_dims, Dims4 x_strides,
                         std::int64_t x_offset, Dims4 pad_begin, float value, void* y, Dims4 ydims,
                         Dims4 ys, cudaStream_t stream) {
  const std::int64_t n = ydims.numel();
  if (n == 0) return;
  if (t == Elem::kF32)
    strided_copy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const float*>(x), src_dims, x_strides, x_offset, pad_begin, value,
        static_cast<float*>(y), ydims, ys, n);
  else
    strided_copy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const __half*>(x), src_dims, x_strides, x_offset, pad_begin, value,
        static_cast<__half*>(y), ydims, ys, n);
}

void launch_resize_nearest(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                           Dims4 ys, int coord, int nearest, float scale_h, float scale_w,
                           cudaStream_t stream) {
  const std::int64_t n = ydims.numel();
  if (n == 0) return;
  const double sh = scale_h > 0.f ? scale_h : double(ydims.v[2]) / double(xdims.v[2]);
  const double sw = scale_w > 0.f ? scale_w : double(ydims.v[3]) / double(xdims.v[3]);
  if (t == Elem::kF32)
    resize_nearest_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const float*>(x), xdims, xs, static_cast<float*>(y), ydims, ys, coord, nearest,
        sh, sw, n);
  else
    resize_nearest_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const __half*>(x), xdims, xs, static_cast<__half*>(y), ydims, ys, coord,
        nearest, sh, sw, n);
}

void launch_reduce_mean(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                        Dims4 ys, cudaStream_t stream) {
  const std::int64_t n = ydims.numel();
  if (n == 0) return;
  if (t == Elem::kF32)
    reduce_mean_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const float*>(x), xdims, xs, static_cast<float*>(y), ydims, ys, n);
  else
    reduce_mean_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const __half*>(x), xdims, xs, static_cast<__half*>(y), ydims, ys, n);
}

}  // namespace nexus::cuda
