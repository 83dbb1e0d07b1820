// eigen_gemm_gflops: Eigen's own multi-threaded SGEMM (tensor contraction on a ThreadPoolDevice),
// the yardstick for CpuBackend's GFLOP/s in benchmarks/cpu_backend.cpp.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"

#include "eigen_isa_begin.inc"
#define EIGEN_USE_THREADS
#include <unsupported/Eigen/CXX11/Tensor>

namespace nexus::exec {

double eigen_gemm_gflops(int n, int threads, int repeats, bool cpu_time) {
  NEXUS_CHECK(n >= 1 && repeats >= 1, "eigen_gemm_gflops: n ({}) and repeats ({}) must be >= 1",
              n, repeats);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Eigen::ThreadPool pool(threads);
  Eigen::ThreadPoolDevice device(&pool, threads);
  using Mat = Eigen::Tensor<float, 2, Eigen::RowMajor>;
  Mat a(n, n), b(n, n), c(n, n);
  a.setRandom();
  b.setRandom();
  const Eigen::array<Eigen::IndexPair<int>, 1> dims = {Eigen::IndexPair<int>(1, 0)};
  c.device(device) = a.contract(b, dims);  // warm-up
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const std::clock_t c0 = std::clock();
    const auto t0 = std::chrono::steady_clock::now();
    c.device(device) = a.contract(b, dims);
    seconds.push_back(cpu_time ? static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC
                               : std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  return 2.0 * n * static_cast<double>(n) * n / median / 1e9;
}

}  // namespace nexus::exec

#include "eigen_isa_end.inc"
