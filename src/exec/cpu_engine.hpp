#pragma once
// The CpuBackend's engine interface (private to src/exec): the kernels are compiled once per
// instruction set (cpu_kernels.inc, included by cpu_kernels_avx2.cpp and cpu_kernels_avx512.cpp,
// each in its own namespace, Eigen renamed in the AVX-512 unit so that no inline Eigen template
// is shared between the units), and CpuBackend picks one at construction by what the CPU
// supports (CpuBackendOptions::isa). Semantics of each call: as CpuBackend's (cpu_backend.hpp).

#include <cstddef>
#include <memory>
#include <vector>

#include "nexus/core/shape.hpp"
#include "nexus/core/tensor.hpp"
#include "nexus/model/graph.hpp"

namespace nexus::detail {

class CpuEngine {
 public:
  virtual ~CpuEngine() = default;
  virtual void load(const model::Graph& graph, int max_batch) = 0;
  virtual std::vector<Tensor> run(const std::vector<Tensor>& inputs) = 0;
  virtual int loaded_max_batch() const = 0;
  virtual Shape input_shape(int i) const = 0;
  virtual std::size_t weights_bytes() const = 0;
  virtual std::size_t activation_bytes(int batch) const = 0;
  virtual int threads() const = 0;
};

}  // namespace nexus::detail

namespace nexus::cpu_avx2 {
/// The kernels compiled for AVX2+FMA (or the compiler's baseline, see eigen_isa_begin.inc).
std::unique_ptr<detail::CpuEngine> make_engine(int threads);
}  // namespace nexus::cpu_avx2

namespace nexus::cpu_avx512 {
/// The kernels compiled for AVX-512 (F, DQ, VL, BW) + FMA; nullptr where this build has none
/// (not x86-64 GCC, or -DNEXUS_CPU_GENERIC).
std::unique_ptr<detail::CpuEngine> make_engine(int threads);
/// True when make_engine returns an engine in this build.
bool compiled();
}  // namespace nexus::cpu_avx512
