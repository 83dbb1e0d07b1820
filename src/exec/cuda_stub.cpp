// Fallbacks of the CudaBackend factory for builds without CUDA (NEXUS_WITH_CUDA off): apps and
// examples include nexus/exec/cuda_backend.hpp and link either way.
#include "nexus/exec/cuda_backend.hpp"

#if !defined(NEXUS_WITH_CUDA) || !NEXUS_WITH_CUDA

#include "nexus/core/error.hpp"

namespace nexus {

const char* precision_name(CudaPrecision precision) {
  return precision == CudaPrecision::kFloat16 ? "fp16" : "fp32";
}

int cuda_device_count() { return 0; }

void cuda_profiler(bool) {}

std::unique_ptr<Backend> make_cuda_backend(CudaBackendOptions) {
  throw_error(
      "make_cuda_backend: Nexus was built without CUDA (configure with "
      "-DNEXUS_WITH_CUDA=ON on a machine with the CUDA toolkit)");
}

}  // namespace nexus

#endif
