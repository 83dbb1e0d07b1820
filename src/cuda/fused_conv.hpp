#pragma once
// Fused convolution epilogues through cuDNN 9's graph (backend) API: one operation graph
//   y = act(conv(x, w) + bias [+ z])
// (conv -> pointwise add of the per-channel bias -> optional pointwise add of a residual z ->
// optional activation: ReLU, ReLU6 (ReLU with upper clip 6), LeakyReLU (lower-clip slope),
// Sigmoid, Tanh), intermediates virtual in FP32, x / w / z / y in the model's storage type.
// cuDNN's heuristics propose engine configurations; each one that finalizes within the
// workspace becomes a GraphPlan, which the CudaBackend times against the legacy calls per
// layer and batch size, keeping the fastest (docs/cuda.md "Choosing each convolution").
// Asymmetric (TF SAME) padding is given as pre/post paddings, so no padded copy is needed.
//
// Errors: build_fused_conv_plans() never throws for an unsupported graph: it returns no plans
// and says why in *why (a cuDNN status per step); execute() returns the cuDNN status.

#include <cudnn.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels.hpp"

namespace nexus::cuda {

/// One convolution layer at one batch size, logical NCHW dims (strides from `nhwc`).
struct ConvGeometry {
  std::int64_t n = 1, c = 1, h = 1, w = 1;   ///< input
  std::int64_t k = 1, cg = 1, r = 1, s = 1;  ///< filter [k, c / groups, r, s]
  std::int64_t oh = 1, ow = 1;               ///< output [n, k, oh, ow]
  std::int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  bool nhwc = true;                          ///< activations NHWC, filter KRSC
  cudnnDataType_t io = CUDNN_DATA_HALF;      ///< storage type of x, w, bias, z, y
  bool residual = false;                     ///< + z (same shape and layout as y)
  Act act = Act::kNone;
  float alpha = 0.f;                         ///< LeakyReLU slope

  /// A string naming the geometry, to share plans between identical layers.
  std::string key() const;
};

/// A finalized execution plan of one fused graph (shared between layers of equal geometry).
struct GraphPlan {
  std::shared_ptr<void> plan;  ///< cudnnBackendDescriptor_t of an EXECUTION_PLAN
  std::int64_t workspace = 0;  ///< bytes
  std::int64_t engine = -1;    ///< cuDNN's global engine index
  std::string label;           ///< "graph engine 12 (heuristic rank 0, runtime-compiled)"
  bool runtime_compiled = false;  ///< cuDNN compiles its kernel (NVRTC) at plan finalization
};

/// Builds up to `max_plans` plans for g (heuristics mode A, in cuDNN's order) that need at most
/// `workspace_limit` bytes; engines that compile at runtime only when allow_runtime_compiled
/// (each costs an NVRTC compilation at finalization). Returns none when cuDNN supports no
/// engine; *why then says why.
std::vector<GraphPlan> build_fused_conv_plans(cudnnHandle_t handle, const ConvGeometry& g,
                                              std::size_t workspace_limit, int max_plans,
                                              bool allow_runtime_compiled, std::string* why);

/// The variant pack binding a plan's tensors to device pointers (z may be null without a
/// residual); built once per layer and batch size, since the arena's pointers never change.
/// Null when cuDNN refuses it.
std::shared_ptr<void> make_fused_conv_pack(const void* x, const void* w, const void* bias,
                                           const void* z, void* y, void* workspace);

/// Runs one plan with its pack on the handle's stream (capturable into a CUDA Graph).
cudnnStatus_t execute_fused_conv(cudnnHandle_t handle, const GraphPlan& plan,
                                 const std::shared_ptr<void>& pack);

}  // namespace nexus::cuda
