#pragma once
// Which batch sizes a CudaBackend prepares (algorithm choice + CUDA Graph per size) and which
// prepared size a batch runs at. Host-only, no CUDA header: tests/cuda checks it on the CPU.
//
// CudaBackendOptions::graph_batch_sizes empty: every size 1..max_batch is prepared and a batch
// of n runs at n. Otherwise only those sizes (clipped to 1..max_batch) and max_batch are, and a
// batch of n runs at the smallest prepared size >= n, its extra rows padding (computed and
// discarded): fewer plans and graphs, less load time and memory, some wasted work per batch.

#include <algorithm>
#include <vector>

namespace nexus::cuda {

inline std::vector<int> prepared_batch_sizes(int max_batch, const std::vector<int>& captured) {
  std::vector<int> out;
  if (max_batch < 1) return out;
  if (captured.empty()) {
    for (int b = 1; b <= max_batch; ++b) out.push_back(b);
    return out;
  }
  for (int b : captured)
    if (b >= 1 && b <= max_batch) out.push_back(b);
  out.push_back(max_batch);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// The smallest prepared size >= n (prepared sorted ascending); -1 when none is.
inline int padded_batch(int n, const std::vector<int>& prepared) {
  const auto it = std::lower_bound(prepared.begin(), prepared.end(), n);
  return it == prepared.end() ? -1 : *it;
}

}  // namespace nexus::cuda
