// Small kernels of the CudaBackend (see kernels.hpp). Each is a grid-stride loop over logical
// elements with explicit strides; correctness over speed, since they carry a small share of the
// work next to cuDNN convolutions and cuBLAS GEMMs.
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

template <typename T>
__global__ void elementwise_kernel(EwOp op, Act act, float alpha, Dims4 dims, std::int64_t n,
                                   const T* a, Dims4 sa, const T* b, Dims4 sb, const T* c, Dims4 sc,
                                   T* out, Dims4 so) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, dims, idx);
    float v = ld(a, offset(idx, sa));
    switch (op) {
      case EwOp::kCopy:
        break;
      case EwOp::kAdd:
        v = v + ld(b, offset(idx, sb));
        break;
      case EwOp::kMul:
        v = v * ld(b, offset(idx, sb));
        break;
      case EwOp::kAffine:
        v = v * ld(b, offset(idx, sb)) + ld(c, offset(idx, sc));
        break;
    }
    st(out, offset(idx, so), activate(act, v, alpha));
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

template <typename T>
__global__ void pool_kernel(bool is_max, const T* x, Dims4 xdims, Dims4 xs, T* y, Dims4 ydims,
                            Dims4 ys, int kh, int kw, int sh, int sw, int pad_top, int pad_left,
                            std::int64_t n) {
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
    float out = 0.f;
    if (count > 0) out = is_max ? acc : acc / static_cast<float>(count);
    st(y, offset(idx, ys), out);
  }
}

/// TensorFlow's compute_interpolation_weights for one output coordinate.
__device__ __forceinline__ void interp(std::int64_t out_i, std::int64_t in_size, float scale,
                                       bool half_pixel, std::int64_t& lower, std::int64_t& upper,
                                       float& lerp) {
  const float in = half_pixel ? (static_cast<float>(out_i) + 0.5f) * scale - 0.5f
                              : static_cast<float>(out_i) * scale;
  const float in_f = floorf(in);
  lower = max(static_cast<std::int64_t>(in_f), std::int64_t{0});
  upper = min(static_cast<std::int64_t>(ceilf(in)), in_size - 1);
  lerp = in - in_f;
}

template <typename T>
__global__ void resize_kernel(const T* x, Dims4 xdims, Dims4 xs, T* y, Dims4 ydims, Dims4 ys,
                              float scale_h, float scale_w, bool half_pixel, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, ydims, idx);
    std::int64_t top, bottom, left, right;
    float ly, lx;
    interp(idx[2], xdims.v[2], scale_h, half_pixel, top, bottom, ly);
    interp(idx[3], xdims.v[3], scale_w, half_pixel, left, right, lx);
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

float resize_scale(std::int64_t in, std::int64_t out, bool align_corners) {
  return (align_corners && out > 1) ? static_cast<float>(in - 1) / static_cast<float>(out - 1)
                                    : static_cast<float>(in) / static_cast<float>(out);
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
                        cudaStream_t stream) {
  const std::int64_t n = dims.numel();
  if (n == 0) return;
  if (t == Elem::kF32)
    elementwise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        op, act, alpha, dims, n, static_cast<const float*>(a), sa, static_cast<const float*>(b), sb,
        static_cast<const float*>(c), sc, static_cast<float*>(out), so);
  else
    elementwise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
        op, act, alpha, dims, n, static_cast<const __half*>(a), sa, static_cast<const __half*>(b),
        sb, static_cast<const __half*>(c), sc, static_cast<__half*>(out), so);
}

void launch_convert(Elem src_t, const void* src, Dims4 src_dims, Dims4 src_strides, Elem dst_t,
                    void* dst, Dims4 dst_dims, Dims4 dst_strides, cudaStream_t stream) {
  const std::int64_t n = dst_dims.numel();
  if (n == 0) return;
  if (src_t == Elem::kF32)
    convert_to(dst_t, static_cast<const float*>(src), src_dims, src_strides, dst, dst_dims,
               dst_strides, n, stream);
  else
    convert_to(dst_t, static_cast<const __half*>(src), src_dims, src_strides, dst, dst_dims,
               dst_strides, n, stream);
}

void launch_softmax(Elem t, const void* x, Dims4 xs, void* y, Dims4 ys, Dims4 dims, int axis,
                    cudaStream_t stream) {
  const std::int64_t rows = dims.v[axis] == 0 ? 0 : dims.numel() / dims.v[axis];
  if (rows == 0) return;
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
  if (t == Elem::kF32)
    pool_kernel<<<blocks_for(n), kThreads, 0, stream>>>(is_max, static_cast<const float*>(x), xdims,
                                                        xs, static_cast<float*>(y), ydims, ys, kh,
                                                        kw, sh, sw, pad_top, pad_left, n);
  else
    pool_kernel<<<blocks_for(n), kThreads, 0, stream>>>(is_max, static_cast<const __half*>(x),
                                                        xdims, xs, static_cast<__half*>(y), ydims,
                                                        ys, kh, kw, sh, sw, pad_top, pad_left, n);
}

void launch_resize_bilinear(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                            Dims4 ys, bool align_corners, bool half_pixel_centers,
                            cudaStream_t stream) {
  const std::int64_t n = ydims.numel();
  if (n == 0) return;
  const float scale_h = resize_scale(xdims.v[2], ydims.v[2], align_corners);
  const float scale_w = resize_scale(xdims.v[3], ydims.v[3], align_corners);
  if (t == Elem::kF32)
    resize_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(x), xdims, xs,
                                                          static_cast<float*>(y), ydims, ys,
                                                          scale_h, scale_w, half_pixel_centers, n);
  else
    resize_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const __half*>(x), xdims, xs,
                                                          static_cast<__half*>(y), ydims, ys,
                                                          scale_h, scale_w, half_pixel_centers, n);
}

}  // namespace nexus::cuda
