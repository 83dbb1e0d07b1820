#pragma once
// CpuBackend: runs a model Graph on the CPU with Eigen; the embedded default Backend where no GPU
// is present (DESIGN.md, "Data" plane). Activations are NCHW float32.
//
// How it runs (planned at load, as CUTLASS plans before it launches):
//  - Conv2D: stride-1 KxK convs (groups 1) per tile of output rows: a zero-padded copy of the
//    input rows, then one Eigen GEMM per tap on shifted views of it, accumulated (no im2col);
//    1x1 stride-1 convs are one GEMM on the input; other convs im2col + GEMM in column tiles
//    that keep the im2col tile in cache; depthwise convs run as direct loops over a zero-padded
//    copy of each plane, all taps summed in registers. A BatchNorm/ScaleOffset after the conv's
//    fused activation is applied in the same epilogue. Bias and a following Relu/Relu6/LeakyRelu (when it is
//    the conv's only consumer and the conv is no graph output) are fused into the epilogue;
//    likewise FullyConnected, and a ReLU after an Add (residual blocks).
//  - Every op of the IR (model/graph.hpp) is supported; Flatten/Reshape are zero-copy views.
//  - Activation memory: one arena planned at load for max_batch; buffers are reused by lifetime
//    (a value's slot is freed after its last consumer, best-fit placement), and elementwise ops
//    (activations, BatchNorm/ScaleOffset, Add/Mul) write in place into an input that dies there.
//    Plus one im2col scratch per thread. run() allocates no intermediates (Eigen's GEMM may
//    allocate its own packing buffers); it allocates only the returned outputs.
//  - Threads: `threads` workers (the caller's thread is one of them) split each layer by items
//    when the batch is at least the thread count, otherwise by GEMM rows/columns or tiles;
//    layers under ~0.5 M multiply-adds run on one thread. Between layers the workers spin
//    for up to 300 µs before they sleep (a wake-up per layer would cost as much as the layer).
//
// On x86-64 with GCC the kernels are compiled twice, for AVX2+FMA (Haswell, 2013, and later) and
// for AVX-512 (F, DQ, VL, BW), and each CpuBackend runs the AVX-512 ones where the CPU has them
// (CpuBackendOptions::kernels or NEXUS_CPU_KERNELS=avx2|avx512 choose). Built with
// -DNEXUS_CPU_GENERIC (e.g. cmake -DCMAKE_CXX_FLAGS=-DNEXUS_CPU_GENERIC) there is one baseline
// copy; constructing a CpuBackend on a CPU without the ISA of its kernels throws nexus::Error.
//
// Thread-safety: as Backend: one thread at a time calls run(); accessors are safe after load().

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nexus/exec/backend.hpp"

namespace nexus {

struct CpuBackendOptions {
  /// Worker threads including the caller's; 0 means std::thread::hardware_concurrency().
  int threads = 0;
  /// Share of the available RAM (sysconf _SC_AVPHYS_PAGES) that free_memory() reports.
  double memory_share = 0.5;
  /// Kernels: "" = the environment's NEXUS_CPU_KERNELS if set, else the best this CPU has;
  /// "avx2" (AVX2+FMA, or the baseline build); "avx512". Throws nexus::Error on another value
  /// or on "avx512" where the CPU or the build lacks it.
  std::string kernels;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(CpuBackendOptions options = {});
  ~CpuBackend() override;
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

  /// "cpu".
  std::string device_name() const override;
  /// Plans `graph` for batches of 1..max_batch. Throws nexus::Error if max_batch < 1.
  void load(const model::Graph& graph, int max_batch) override;
  /// inputs[i]: float32 [n, ...input_shape(i)], the same n for all, 1 <= n <= max_batch.
  /// Returns owning float32 tensors [n, ...output item shape]. Throws nexus::Error naming the
  /// input and the expected shape on a wrong count, shape, dtype or batch size, or if not loaded.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override;
  int max_batch() const override;
  Shape input_shape(int i = 0) const override;
  /// Bytes of the graph's weight tensors (after BatchNorm folding).
  std::size_t weights_bytes() const override;
  /// Arena bytes for `batch` items plus the im2col scratch of all threads.
  std::size_t activation_bytes(int batch) const override;
  /// CpuBackendOptions::memory_share × the available RAM, 0 if unknown.
  std::size_t free_memory() const override;

  /// The number of worker threads (including the caller's).
  int threads() const;
  /// The instruction set of the kernels this backend runs: "avx512+fma", "avx2+fma" or
  /// "baseline".
  const std::string& kernel_isa() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  double memory_share_ = 0.5;
};

namespace exec {
using nexus::CpuBackend;
using nexus::CpuBackendOptions;

/// GFLOP/s of a float32 GEMM C[n,n] = A[n,n] * B[n,n] (2 n^3 FLOPs each), median of `repeats`
/// runs after a warm-up, computed by Eigen's own multi-threaded tensor contraction on an
/// Eigen::ThreadPoolDevice of `threads` threads (0 = hardware_concurrency). The reference the
/// CpuBackend is measured against in benchmarks/cpu_backend.cpp. With cpu_time, the FLOPs are
/// divided by the process's CPU time instead of wall time (robust on a shared machine; meant
/// for threads = 1).
double eigen_gemm_gflops(int n, int threads, int repeats = 5, bool cpu_time = false);

/// The instruction set of the kernels a default CpuBackend runs on this CPU: "avx512+fma",
/// "avx2+fma", or "baseline" (the compiler's default flags, e.g. with -DNEXUS_CPU_GENERIC or on
/// non-x86 machines).
const char* cpu_kernel_isa();
}  // namespace exec

}  // namespace nexus
