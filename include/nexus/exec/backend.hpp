#pragma once
// Backend: the one device interface of Nexus. A Backend loads one model Graph once (weights
// resident, activation memory planned for max_batch) and then runs batches of any size from 1
// to max_batch. Implementations: CpuBackend (Eigen; the embedded default), CudaBackend
// (cuDNN + cuBLAS, src/cuda), SimBackend (latency from a BatchProfile, for virtual time).
//
// Thread-safety: one thread at a time may call run() on a Backend (the GpuExecutor owns it);
// const accessors may be called from any thread after load().

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "nexus/core/shape.hpp"
#include "nexus/core/tensor.hpp"

namespace nexus {

namespace model {
class Graph;
}

class Backend {
 public:
  virtual ~Backend() = default;

  /// A short device name used in profiles and logs: "cpu", "cuda:0", "sim".
  virtual std::string device_name() const = 0;

  /// Prepares `graph` to run batches of 1..max_batch: places weights, plans activation memory.
  /// Throws nexus::Error when a layer cannot run here or memory does not suffice.
  virtual void load(const model::Graph& graph, int max_batch) = 0;

  /// Runs one batch. inputs[i] has shape [n, ...input_shape(i)] with 1 <= n <= max_batch();
  /// returns the graph's outputs in order, each with leading dimension n.
  /// Throws nexus::Error on a wrong input count, shape or dtype (naming which input and the
  /// expected shape).
  virtual std::vector<Tensor> run(const std::vector<Tensor>& inputs) = 0;

  /// Convenience for single-input graphs.
  Tensor run_one(const Tensor& input) { return run(std::vector<Tensor>{input}).at(0); }

  virtual int max_batch() const = 0;
  /// Per-item shape of input i (without the batch dimension), e.g. [3, 224, 224].
  virtual Shape input_shape(int i = 0) const = 0;
  /// Bytes held by weights for as long as the model is loaded.
  virtual std::size_t weights_bytes() const = 0;
  /// Bytes of activation memory needed to run a batch of `batch` items.
  virtual std::size_t activation_bytes(int batch) const = 0;

  /// Makes every batch size in `batch_sizes` (each 1..max_batch()) ready to run, so that the
  /// first run() at that size does no one-time work (the CudaBackend measures its convolution
  /// algorithms and captures a CUDA Graph here). The Engine calls it from load_model() with
  /// every size its executor may form, before the model serves (Nexus §6: the executor's
  /// ℓ(b) must hold from the first request). Throws nexus::Error on a size out of range or a
  /// device failure. Default: nothing to prepare (CPU, sim).
  virtual void prepare(const std::vector<int>& batch_sizes) { (void)batch_sizes; }

  /// Device bytes this backend holds once loaded and prepared (weights, activations at
  /// max_batch, workspaces, captured graphs where counted). Default: weights + activations.
  virtual std::size_t device_bytes() const {
    return weights_bytes() + (max_batch() > 0 ? activation_bytes(max_batch()) : 0);
  }

  /// Bytes still free on the device after this backend's load, for the planner: the Engine
  /// plans each device's memory as free_memory() + the device_bytes() of the models loaded on
  /// it (PackerOptions::gpu_memory_bytes, the smallest over the devices). 0 = unknown (no
  /// limit), the default. CpuBackend: a configured share of the available RAM.
  virtual std::size_t free_memory() const { return 0; }
};

}  // namespace nexus
