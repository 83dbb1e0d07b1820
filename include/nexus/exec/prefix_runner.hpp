#pragma once
// PrefixRunner: merged execution of a prefix group (paper §6.3, prefix batching; research notes
// §5, the original's SharePrefixModel). The models of a group share their first layers
// (model/prefix.hpp finds them); the runner loads the shared prefix once and one suffix per
// member, on Backends of one kind made by a factory (CpuBackend, CudaBackend, ...).
//
// Per batch: the prefix runs once on the merged batch of all members' items (member 0's items
// first, then member 1's, ...); each output of the prefix is sliced along the batch dimension into
// per-member sub-batches as Tensor views (no copy), and each member's suffix runs on its slice, in
// turn. A member with no items in the batch is skipped. Per item, the result equals the member
// model run alone.
//
// Memory: the prefix's weights are held once (weights_bytes()); unshared_weights_bytes() is what
// the members would hold loaded separately. The Backend interface returns host tensors, so on a
// GPU the prefix output makes one round trip through host memory between prefix and suffixes.
//
// Thread-safety: as Backend: one thread at a time calls run(); accessors are safe after load().

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nexus/core/tensor.hpp"
#include "nexus/exec/backend.hpp"
#include "nexus/model/prefix.hpp"

namespace nexus {

/// Makes one unloaded Backend (e.g. [] { return std::make_unique<CpuBackend>(); }).
using BackendFactory = std::function<std::unique_ptr<Backend>()>;

class PrefixRunner {
 public:
  /// Throws nexus::Error if make_backend is empty.
  explicit PrefixRunner(BackendFactory make_backend);
  ~PrefixRunner();
  PrefixRunner(const PrefixRunner&) = delete;
  PrefixRunner& operator=(const PrefixRunner&) = delete;

  /// Loads the prefix once and every suffix, each for batches of 1..max_batch (the prefix runs
  /// the whole merged batch; a member's suffix at most all of it). Throws nexus::Error if
  /// max_batch < 1 or a backend cannot load a part (its message names the part).
  void load(model::PrefixSplit split, int max_batch);

  /// Runs one merged batch. merged_inputs[i]: float32 [N, ...input_shape(i)], the members' items
  /// in member order; counts[m] >= 0 items belong to member m, sum(counts) == N, 1 <= N <=
  /// max_batch(). Returns, per member, that model's outputs in order, each [counts[m], ...]
  /// (an empty vector for a member with no items). Outputs may be views sharing storage with
  /// the batch's prefix output. Throws nexus::Error naming what was wrong on a count mismatch or
  /// wrong inputs.
  std::vector<std::vector<Tensor>> run(const std::vector<Tensor>& merged_inputs,
                                       std::span<const int> counts);

  /// Convenience: concatenates member_inputs[m] (each [n_m, ...], n_m >= 0 items, empty vector
  /// for none) into a merged batch and runs it.
  std::vector<std::vector<Tensor>> run_members(
      const std::vector<std::vector<Tensor>>& member_inputs);

  int members() const;
  /// Member m's model name (the graph's name).
  const std::string& member_name(int m) const;
  int max_batch() const;
  int num_inputs() const;
  /// Per-item shape of the members' input i.
  Shape input_shape(int i = 0) const;

  /// Weight bytes held: the prefix once plus every suffix.
  std::size_t weights_bytes() const;
  /// Weight bytes of the shared prefix (held once).
  std::size_t shared_weights_bytes() const;
  /// Weight bytes the members would hold loaded one by one: prefix x members + suffixes.
  std::size_t unshared_weights_bytes() const;
  /// Backend::prepare for the prefix and every suffix (a suffix may get any of these sizes).
  void prepare(const std::vector<int>& batch_sizes);
  /// Device bytes of all parts (Backend::device_bytes): the prefix once, plus every suffix.
  std::size_t device_bytes() const;
  /// Activation bytes of all parts for a batch of `batch` (prefix at batch, each suffix at batch).
  std::size_t activation_bytes(int batch) const;
  /// The split being run (after load()).
  const model::PrefixSplit& split() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexus
