// CpuBackend: picks the kernels compiled for the best instruction set this CPU has
// (cpu_engine.hpp) and forwards to them.
#include "nexus/exec/cpu_backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "cpu_engine.hpp"
#include "nexus/core/error.hpp"

namespace nexus {

namespace {

int default_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

bool cpu_has_avx512() {
#if defined(__GNUC__) && defined(__x86_64__)
  return cpu_avx512::compiled() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

const char* avx2_isa_name() {
#if defined(NEXUS_CPU_KERNELS_AVX2) || (defined(__AVX2__) && defined(__FMA__)) || \
    (defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(NEXUS_CPU_GENERIC))
  return "avx2+fma";
#else
  return "baseline";
#endif
}

// The kernels `requested` names ("" = NEXUS_CPU_KERNELS from the environment, else the best
// this CPU has).
std::string choose_kernels(std::string requested) {
  if (requested.empty()) {
    const char* env = std::getenv("NEXUS_CPU_KERNELS");
    requested = env ? env : "";
  }
  if (requested.empty()) return cpu_has_avx512() ? "avx512" : "avx2";
  NEXUS_CHECK(requested == "avx2" || requested == "avx512",
              "CpuBackendOptions::kernels (or NEXUS_CPU_KERNELS) is '{}', expected '', 'avx2' or "
              "'avx512'", requested);
  NEXUS_CHECK(requested != "avx512" || cpu_has_avx512(),
              "CpuBackend: AVX-512 kernels requested but {}", cpu_avx512::compiled()
                  ? "this CPU lacks AVX-512 F/DQ/VL/BW"
                  : "this build has none (not x86-64 GCC, or NEXUS_CPU_GENERIC)");
  return requested;
}

}  // namespace

struct CpuBackend::Impl {
  std::unique_ptr<detail::CpuEngine> engine;
  std::string isa;
};

CpuBackend::CpuBackend(CpuBackendOptions options) : memory_share_(options.memory_share) {
  NEXUS_CHECK(options.threads >= 0, "CpuBackendOptions::threads must be >= 0, got {}",
              options.threads);
  impl_ = std::make_unique<Impl>();
  const std::string kernels = choose_kernels(options.kernels);
  if (kernels == "avx512") {
    impl_->engine = cpu_avx512::make_engine(default_threads(options.threads));
    impl_->isa = "avx512+fma";
  } else {
    impl_->isa = avx2_isa_name();
    if (impl_->isa == std::string("avx2+fma")) {
#if defined(__GNUC__) && defined(__x86_64__)
      NEXUS_CHECK(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
                  "CpuBackend: this build's kernels need AVX2 and FMA, which this CPU lacks "
                  "(rebuild Nexus with -DNEXUS_CPU_GENERIC)");
#endif
    }
    impl_->engine = cpu_avx2::make_engine(default_threads(options.threads));
  }
}

CpuBackend::~CpuBackend() = default;

std::string CpuBackend::device_name() const { return "cpu"; }
int CpuBackend::threads() const { return impl_->engine->threads(); }
const std::string& CpuBackend::kernel_isa() const { return impl_->isa; }
void CpuBackend::load(const model::Graph& graph, int max_batch) {
  impl_->engine->load(graph, max_batch);
}
std::vector<Tensor> CpuBackend::run(const std::vector<Tensor>& inputs) {
  return impl_->engine->run(inputs);
}
int CpuBackend::max_batch() const { return impl_->engine->loaded_max_batch(); }
Shape CpuBackend::input_shape(int i) const { return impl_->engine->input_shape(i); }
std::size_t CpuBackend::weights_bytes() const { return impl_->engine->weights_bytes(); }
std::size_t CpuBackend::activation_bytes(int batch) const {
  return impl_->engine->activation_bytes(batch);
}

std::size_t CpuBackend::free_memory() const {
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<std::size_t>(std::clamp(memory_share_, 0.0, 1.0) * double(pages) * double(page));
}

const char* exec::cpu_kernel_isa() {
  return choose_kernels("") == "avx512" ? "avx512+fma" : avx2_isa_name();
}

}  // namespace nexus
