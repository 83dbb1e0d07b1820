// CpuBackend kernels for AVX-512 (F, DQ, VL, BW) + FMA, chosen at run time on CPUs that have it
// (cpu_engine.hpp). Eigen is included under another namespace name (NexusEigenAvx512): its
// inline templates would otherwise have the same symbols as the AVX2 unit's, and the linker
// could pick this unit's AVX-512 code for the AVX2 path.
#include "cpu_kernels_std.inc"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(NEXUS_CPU_GENERIC)
#define NEXUS_CPU_AVX512_BUILT 1
#if !defined(__AVX512F__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
// GCC does not update the ISA macros after a target pragma in C++; Eigen reads them.
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __AVX512F__ 1
#define __AVX512DQ__ 1
#define __AVX512VL__ 1
#define __AVX512BW__ 1
#define NEXUS_AVX512_PRAGMA 1
#endif
// Eigen's AVX-512 code trips GCC 12's -Wmaybe-uninitialized inside the intrinsics headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define Eigen NexusEigenAvx512
#include <Eigen/Core>

#define NEXUS_CPU_NS cpu_avx512
#include "cpu_kernels.inc"
#undef NEXUS_CPU_NS
#undef Eigen
#pragma GCC diagnostic pop

#if defined(NEXUS_AVX512_PRAGMA)
#pragma GCC pop_options
#endif
#endif

namespace nexus::cpu_avx512 {
#if !defined(NEXUS_CPU_AVX512_BUILT)
std::unique_ptr<detail::CpuEngine> make_engine(int) { return nullptr; }
bool compiled() { return false; }
#else
bool compiled() { return true; }
#endif
}  // namespace nexus::cpu_avx512
