// CpuBackend kernels for AVX2+FMA (or the compiler's baseline with -DNEXUS_CPU_GENERIC / on
// non-x86 machines): see cpu_engine.hpp.
#include "cpu_kernels_std.inc"

#include "eigen_isa_begin.inc"
#include <Eigen/Core>

#define NEXUS_CPU_NS cpu_avx2
#include "cpu_kernels.inc"
#undef NEXUS_CPU_NS

#include "eigen_isa_end.inc"
