#pragma once
// CudaBackend: runs a model::Graph on one NVIDIA GPU with cuDNN (convolutions, pooling) and
// cuBLAS (fully connected), FP32 or FP16 (tensor cores, NHWC), replaying one CUDA Graph per
// batch size. It is the GPU Backend of the paper's GpuExecutor (Nexus §6: one backend per GPU).
//
// Lifecycle (plan at load, bind and launch at run, as CUTLASS operators do):
//  - load(graph, max_batch): checks every layer can run here, uploads weights (resident until
//    the backend is destroyed or load() is called again), plans activation memory once for
//    max_batch from tensor lifetimes, allocates it with the cuDNN/cuBLAS workspaces and the
//    pinned host staging, and prepares batch 1 (below) so a convolution cuDNN cannot run fails
//    at load. Nothing is allocated on the run path after this.
//  - prepare(n) (the Engine calls it for every batch size at load_model): for each convolution
//    it times the alternatives (legacy conv by cudnnFindConvolutionForwardAlgorithmEx + own
//    epilogue kernel; cudnnConvolutionBiasActivationForward; FP16: fused cuDNN graph-API
//    engines) and keeps the fastest, then captures a CUDA Graph for n. A run() at a size not
//    yet prepared prepares it first (slow: do it before serving).
//
// Errors (nexus::Error, thrown by load() or the constructor, never a crash at run time):
//  - no CUDA device, or options.device_index out of range;
//  - a layer the backend cannot run (the message names the layer and why);
//  - too little device memory at load (the message gives bytes asked and bytes free);
//  - a failing CUDA/cuDNN/cuBLAS call: the call, its status name and the layer.
//
// Thread-safety: as Backend: one thread calls run() at a time; const accessors after load().
// Several instances may share a device; use one instance per device for multi-GPU.
//
// This header needs no CUDA headers. Without a CUDA build (NEXUS_WITH_CUDA off) only
// cuda_device_count() (returns 0) and make_cuda_backend() (throws) are defined.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "nexus/exec/backend.hpp"

namespace nexus {

enum class CudaPrecision {
  kFloat32,  ///< FP32 storage and math (no TF32): matches CpuBackend to ~1e-5 relative
  kFloat16,  ///< FP16 storage, FP32 accumulation, tensor cores, NHWC activations
};

/// "fp32" / "fp16".
const char* precision_name(CudaPrecision precision);

/// Which convolution alternatives prepare() may keep (tests pin one to check its numerics).
enum class CudaConvPath {
  kFastest,  ///< time every alternative per layer and batch, keep the fastest (default)
  kLegacy,   ///< cudnnConvolutionForward + own epilogue kernel only
  kGraph,    ///< a cuDNN graph-API fused plan wherever one runs (FP16), else the fastest other
};

struct CudaBackendOptions {
  int device_index = 0;                               ///< CUDA device ordinal
  CudaPrecision precision = CudaPrecision::kFloat32;  ///< chosen per model at load
  bool use_cuda_graphs = true;                        ///< capture one CUDA Graph per batch size
  /// Upper bound of the cuDNN convolution workspace (bytes); algorithms needing more are not
  /// considered when measuring.
  std::size_t conv_workspace_limit_bytes = std::size_t{256} << 20;
  /// FP16: also try each convolution as one cuDNN graph-API operation graph with its epilogue
  /// fused (conv -> + bias -> + residual -> activation) and keep, per layer and batch size,
  /// whichever alternative is measured fastest (legacy conv + own epilogue kernel, legacy
  /// cudnnConvolutionBiasActivationForward, or one of the graph engines).
  bool fuse_epilogues = true;
  /// Graph-API engine configurations timed per layer and batch (cuDNN heuristics order).
  int fused_plans_per_layer = 3;
  /// Allow graph-API engines that cuDNN compiles at runtime (NVRTC, at plan finalization: the
  /// runtime-fusion engines; each distinct layer geometry and batch size compiles once).
  bool fused_runtime_compiled = true;
  /// Wall time (s) one load may spend building graph-API plans, over all layers and batch
  /// sizes; when spent, later layers and sizes try only the legacy alternatives (said once on
  /// stderr). Bounds load time when runtime compilation is slow.
  double fused_build_budget_s = 120;
  CudaConvPath conv_path = CudaConvPath::kFastest;
  /// Batch sizes to prepare (algorithms + CUDA Graph). Empty (default): every size
  /// 1..max_batch, so every batch runs at its own size. Otherwise those sizes and max_batch;
  /// a batch of n runs at the smallest prepared size >= n, padded (less load time and memory,
  /// some wasted work). prepare(n) of a size not in the list prepares its padded size.
  std::vector<int> graph_batch_sizes;
  /// Print each convolution's alternatives, their measured times and the one kept, per batch
  /// size, to stderr at prepare (also with the environment variable NEXUS_CUDA_PRINT_ENGINES=1).
  bool print_engines = false;
  /// run() also takes, for an input of item shape [C, H, W] with C <= 4, uint8 frames
  /// [n, H, W, C] (a quarter of float32's PCIe bytes), normalized on the GPU per channel as
  /// (x - input_mean[c]) * input_scale[c]; and float16 tensors of the IR's shape (half the
  /// bytes). Missing channels: mean 0, scale 1.
  std::vector<float> input_mean;
  std::vector<float> input_scale;
  /// FP16 models: convolution layers (IR node names) to run in FP32 (input converted to FP32,
  /// FP32 conv on an FP32 copy of the weights, output converted back, then the epilogue), e.g.
  /// for accuracy. A conv cuDNN cannot run in FP16 at all falls back this way by itself; either
  /// way one line on stderr says so, once per layer.
  std::vector<std::string> fp32_layers;
};

class CudaBackend final : public Backend {
 public:
  /// Selects the device. Throws nexus::Error when there is no device or the index is out of
  /// range ("device_index 3 out of range: 2 CUDA devices").
  explicit CudaBackend(CudaBackendOptions options = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  /// "cuda:<index>".
  std::string device_name() const override;
  void load(const model::Graph& graph, int max_batch) override;
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override;
  int max_batch() const override;
  Shape input_shape(int i = 0) const override;
  /// Device bytes of the resident weights (FP16 halves them).
  std::size_t weights_bytes() const override;
  /// Device bytes of activations for a batch of `batch` (the planned arena at that batch).
  std::size_t activation_bytes(int batch) const override;

  /// Measures convolution algorithms and captures the CUDA Graph for batch n (1..max_batch) now
  /// rather than on the first run at n.
  void prepare(int batch);
  /// prepare(b) for each b (Backend::prepare; the Engine passes 1..max_batch at load_model).
  void prepare(const std::vector<int>& batch_sizes) override;
  /// Device bytes this backend holds: weights + activation arena (max_batch) + workspaces.
  std::size_t device_bytes() const override;
  /// Free bytes on its device (cudaMemGetInfo), 0 if the query fails (Backend::free_memory).
  std::size_t free_memory() const override;
  /// How each convolution runs at `batch` (after prepare): "layer: chosen alternative, its
  /// measured ms", one line per conv, in model order.
  std::vector<std::string> conv_choices(int batch) const;
  /// The GPU's marketing name, e.g. "NVIDIA H100 80GB HBM3".
  std::string device_label() const;
  const CudaBackendOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Number of CUDA devices; 0 without a CUDA build, without a driver or without a device.
int cuda_device_count();

/// cudaProfilerStart() (true) / cudaProfilerStop() (false) on the current device, for
/// `ncu --profile-from-start off`; does nothing without a CUDA build.
void cuda_profiler(bool start);

/// A CudaBackend as a Backend. Throws nexus::Error without a CUDA build or device.
std::unique_ptr<Backend> make_cuda_backend(CudaBackendOptions options = {});

}  // namespace nexus
