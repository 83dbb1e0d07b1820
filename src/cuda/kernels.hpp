#pragma once
// The few kernels of the CudaBackend that no library provides, callable from host C++.
// Every kernel indexes a tensor as 4 logical dimensions [N, D1, D2, D3] (an item [C, H, W],
// [A, B] -> [A, B, 1], [C] -> [C, 1, 1]) with an element stride per dimension, so one kernel
// serves NCHW, NHWC, broadcast (stride 0), padded interiors and concat slices alike.
// Element type: FP32 or FP16 (math in FP32). Launches are asynchronous on `stream`;
// launch errors surface through the caller's NEXUS_CUDA_CHECK(cudaGetLastError()).

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ew_index.hpp"  // Dims4, the 32-bit index plans of the elementwise and copy kernels

namespace nexus::cuda {

enum class Elem { kF32, kF16 };

/// y = act(x) (kCopy), act(a + b), act(a * b), act(a * b + c), act(a + b + c) (kAdd2: a conv's
/// unfused epilogue with bias b and residual c), act(a - b), act(a / b); the unary ONNX ops
/// (act is kNone for them): kClip min(max(a, alpha), beta), kHardSigmoid
/// max(0, min(1, alpha * a + beta)), kHardSwish a * max(0, min(1, a / 6 + 1/2)), kSqrt, kPow
/// a ^ alpha.
enum class EwOp : int {
  kCopy = 0,
  kAdd = 1,
  kMul = 2,
  kAffine = 3,
  kAdd2 = 4,
  kSub = 5,
  kDiv = 6,
  kClip = 7,
  kHardSigmoid = 8,
  kHardSwish = 9,
  kSqrt = 10,
  kPow = 11
};
/// Whether op reads operand b / operand c.
NEXUS_HD bool ew_reads_b(EwOp op) {
  return op == EwOp::kAdd || op == EwOp::kMul || op == EwOp::kAffine || op == EwOp::kAdd2 ||
         op == EwOp::kSub || op == EwOp::kDiv;
}
NEXUS_HD bool ew_reads_c(EwOp op) { return op == EwOp::kAffine || op == EwOp::kAdd2; }
enum class Act : int { kNone = 0, kRelu = 1, kRelu6 = 2, kLeaky = 3, kSigmoid = 4, kTanh = 5 };

/// out[i] = act(op(a[i], b[i], c[i])) over `dims`; b/c may be null when op does not use them.
/// All operands have type t. out may alias a (each element is read before it is written).
/// Planned by make_ew_plan (ew_index.hpp): dense same-layout and per-channel operands run the
/// vectorized kernel (float4 / 8 halves per thread), anything else the general 32-bit kernel;
/// tensors beyond 2^31 elements the 64-bit one.
/// beta: the second parameter of kClip (max) and kHardSigmoid.
void launch_elementwise(Elem t, EwOp op, Act act, float alpha, Dims4 dims, const void* a, Dims4 sa,
                        const void* b, Dims4 sb, const void* c, Dims4 sc, void* out, Dims4 so,
                        cudaStream_t stream, float beta = 0.f);

/// Copies (and casts) the elements of src to dst in row-major order of their logical dims:
/// the i-th element of src (row-major over src_dims) goes to the i-th of dst (over dst_dims).
/// With equal dims this is a layout/type conversion; with different dims (same numel) a reshape.
/// Same layout on both sides (or row-major on both) is a vectorized flat copy/cast.
void launch_convert(Elem src_t, const void* src, Dims4 src_dims, Dims4 src_strides, Elem dst_t,
                    void* dst, Dims4 dst_dims, Dims4 dst_strides, cudaStream_t stream);

/// Input normalization on the device: dst[n, c, h, w] = (src - mean[c]) * inv_std[c] for a
/// uint8 HWC item batch src [N, H, W, C] (video frames, 1 byte per value over PCIe), written
/// into dst with dst_strides (NCHW or NHWC, type dst_t). mean / inv_std: C floats on the
/// device. C <= 4.
void launch_normalize_u8(const std::uint8_t* src, Dims4 dims_nchw, Elem dst_t, void* dst,
                         Dims4 dst_strides, const float* mean, const float* inv_std,
                         cudaStream_t stream);

/// Softmax along logical dimension `axis` (1..3), numerically stable (max subtracted).
void launch_softmax(Elem t, const void* x, Dims4 xs, void* y, Dims4 ys, Dims4 dims, int axis,
                    cudaStream_t stream);

/// Max or average pooling on [N, C, H, W] with explicit (possibly asymmetric) padding; average
/// divides by the number of in-bounds pixels (TensorFlow). y dims give the output size.
void launch_pool(Elem t, bool is_max, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                 Dims4 ys, int kh, int kw, int sh, int sw, int pad_top, int pad_left,
                 cudaStream_t stream);

/// Average pooling where the explicit pads count in the divisor (ONNX count_include_pad=1):
/// divisor = (min(h0 + kh, H + pad_bottom) - h0) * (min(w0 + kw, W + pad_right) - w0) with
/// h0 = oh * sh - pad_top (as the CpuBackend).
void launch_avg_pool_include_pad(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y,
                                 Dims4 ydims, Dims4 ys, int kh, int kw, int sh, int sw,
                                 int pad_top, int pad_left, int pad_bottom, int pad_right,
                                 cudaStream_t stream);

/// Strided gather with constant padding (Transpose, Slice, Pad): for each index i of y (dims
/// ydims, strides ys), src = i - pad_begin per dimension; y[i] = value if any src[k] lies outside
/// [0, src_dims[k]), else x[x_offset + sum_k src[k] * x_strides[k]]. x_strides are per y
/// dimension (a Transpose permutes them, a Slice multiplies them by its steps).
void launch_strided_copy(Elem t, const void* x, Dims4 src_dims, Dims4 x_strides,
                         std::int64_t x_offset, Dims4 pad_begin, float value, void* y, Dims4 ydims,
                         Dims4 ys, cudaStream_t stream);

/// ONNX Resize, nearest, on [N, C, H, W] -> [N, C, OH, OW]: coord = model::ResizeCoord and
/// nearest = model::NearestRound as ints; scale_h/scale_w the given out/in scales (0: OH/H).
void launch_resize_nearest(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                           Dims4 ys, int coord, int nearest, float scale_h, float scale_w,
                           cudaStream_t stream);

/// Mean over the dimensions where ydims is 1 and xdims is not (ONNX ReduceMean, keepdims).
void launch_reduce_mean(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                        Dims4 ys, cudaStream_t stream);

/// TensorFlow ResizeBilinear on [N, C, H, W] -> [N, C, OH, OW]; with an ONNX model's given
/// out/in scales (0: from the sizes) and pytorch_half_pixel (a size-1 output samples 0), the
/// source coordinates are the CpuBackend's (model/graph.hpp ResizeAttrs).
void launch_resize_bilinear(Elem t, const void* x, Dims4 xdims, Dims4 xs, void* y, Dims4 ydims,
                            Dims4 ys, bool align_corners, bool half_pixel_centers,
                            cudaStream_t stream, float given_scale_h = 0.f,
                            float given_scale_w = 0.f, bool pytorch_half_pixel = false);

}  // namespace nexus::cuda
