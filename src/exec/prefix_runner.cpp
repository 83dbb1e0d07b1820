// PrefixRunner: the prefix once on the merged batch, each suffix on its slice (paper §6.3).
#include "nexus/exec/prefix_runner.hpp"

#include <cstring>
#include <algorithm>
#include <utility>

#include "nexus/core/error.hpp"

namespace nexus {

struct PrefixRunner::Impl {
  BackendFactory make_backend;
  model::PrefixSplit split;
  std::unique_ptr<Backend> prefix;
  std::vector<std::unique_ptr<Backend>> suffixes;  // null for a member that is all prefix
  std::vector<Shape> input_shapes;
  int max_batch = 0;
  bool loaded = false;

  void check_loaded() const { NEXUS_CHECK(loaded, "PrefixRunner: run before load()"); }
};

PrefixRunner::PrefixRunner(BackendFactory make_backend) : impl_(std::make_unique<Impl>()) {
  NEXUS_CHECK(static_cast<bool>(make_backend), "PrefixRunner: no backend factory given");
  impl_->make_backend = std::move(make_backend);
}

PrefixRunner::~PrefixRunner() = default;

void PrefixRunner::load(model::PrefixSplit split, int max_batch) {
  NEXUS_CHECK(max_batch >= 1, "PrefixRunner::load: max_batch {} (expected >= 1)", max_batch);
  Impl& im = *impl_;
  im.loaded = false;
  im.prefix = im.make_backend();
  try {
    im.prefix->load(split.prefix, max_batch);
  } catch (const Error& e) {
    throw_error("prefix group: loading the shared prefix '{}' failed: {}", split.prefix.name(),
                e.what());
  }
  im.suffixes.clear();
  for (const model::SuffixPart& part : split.suffixes) {
    if (!part.graph) {
      im.suffixes.push_back(nullptr);
      continue;
    }
    auto b = im.make_backend();
    try {
      b->load(*part.graph, max_batch);
    } catch (const Error& e) {
      throw_error("prefix group: loading the suffix of model '{}' failed: {}", part.model,
                  e.what());
    }
    im.suffixes.push_back(std::move(b));
  }
  im.input_shapes.clear();
  for (model::NodeId in : split.prefix.inputs())
    im.input_shapes.push_back(split.prefix.node(in).shape);
  im.split = std::move(split);
  im.max_batch = max_batch;
  im.loaded = true;
}

std::vector<std::vector<Tensor>> PrefixRunner::run(const std::vector<Tensor>& merged_inputs,
                                                   std::span<const int> counts) {
  Impl& im = *impl_;
  im.check_loaded();
  const int m = members();
  NEXUS_CHECK(static_cast<int>(counts.size()) == m,
              "PrefixRunner::run: {} counts for {} members (expected one per member)",
              counts.size(), m);
  std::int64_t total = 0;
  for (int k = 0; k < m; ++k) {
    NEXUS_CHECK(counts[static_cast<std::size_t>(k)] >= 0,
                "PrefixRunner::run: count {} of member '{}' (expected >= 0)",
                counts[static_cast<std::size_t>(k)], member_name(k));
    total += counts[static_cast<std::size_t>(k)];
  }
  NEXUS_CHECK(merged_inputs.size() == im.input_shapes.size(),
              "PrefixRunner::run: {} inputs (expected {})", merged_inputs.size(),
              im.input_shapes.size());
  for (std::size_t i = 0; i < merged_inputs.size(); ++i)
    NEXUS_CHECK(merged_inputs[i].shape().rank() >= 1 && merged_inputs[i].shape()[0] == total,
                "PrefixRunner::run: input {} has shape {} but the counts add up to {} items "
                "(expected [{}, {}])",
                i, merged_inputs[i].shape(), total, total, im.input_shapes[i]);

  // The prefix, once, on the merged batch (the backend checks shapes and the batch bound).
  const std::vector<Tensor> prefix_out = im.prefix->run(merged_inputs);
  auto boundary_value = [&](int b) -> const Tensor& {
    const model::PrefixValue& v = im.split.boundary[static_cast<std::size_t>(b)];
    return v.kind == model::PrefixValue::Kind::kInput
               ? merged_inputs[static_cast<std::size_t>(v.index)]
               : prefix_out[static_cast<std::size_t>(v.index)];
  };

  std::vector<std::vector<Tensor>> out(static_cast<std::size_t>(m));
  std::int64_t begin = 0;
  for (int k = 0; k < m; ++k) {
    const int n = counts[static_cast<std::size_t>(k)];
    if (n == 0) continue;
    const std::int64_t end = begin + n;
    const model::SuffixPart& part = im.split.suffixes[static_cast<std::size_t>(k)];
    std::vector<Tensor> suffix_out;
    if (Backend* b = im.suffixes[static_cast<std::size_t>(k)].get()) {
      std::vector<Tensor> in;
      in.reserve(part.inputs.size());
      for (int bi : part.inputs) in.push_back(boundary_value(bi).slice(begin, end));  // views
      suffix_out = b->run(in);
    }
    for (const model::SuffixPart::Output& o : part.outputs) {
      if (!o.from_prefix) {
        out[static_cast<std::size_t>(k)].push_back(suffix_out.at(static_cast<std::size_t>(o.index)));
      } else {
        const model::PrefixValue& v = im.split.boundary[static_cast<std::size_t>(o.index)];
        Tensor t = boundary_value(o.index).slice(begin, end);
        // A graph input handed back as an output: copy, the caller owns the input buffer.
        out[static_cast<std::size_t>(k)].push_back(
            v.kind == model::PrefixValue::Kind::kInput ? t.clone() : t);
      }
    }
    begin = end;
  }
  return out;
}

std::vector<std::vector<Tensor>> PrefixRunner::run_members(
    const std::vector<std::vector<Tensor>>& member_inputs) {
  Impl& im = *impl_;
  im.check_loaded();
  NEXUS_CHECK(static_cast<int>(member_inputs.size()) == members(),
              "PrefixRunner::run_members: inputs for {} members (expected {})",
              member_inputs.size(), members());
  const std::size_t num_in = im.input_shapes.size();
  std::vector<int> counts;
  std::int64_t total = 0;
  for (int k = 0; k < members(); ++k) {
    const auto& ins = member_inputs[static_cast<std::size_t>(k)];
    if (ins.empty()) {
      counts.push_back(0);
      continue;
    }
    NEXUS_CHECK(ins.size() == num_in, "PrefixRunner::run_members: member '{}' has {} inputs "
                "(expected {})", member_name(k), ins.size(), num_in);
    const std::int64_t n = ins[0].shape().rank() >= 1 ? ins[0].shape()[0] : 0;
    for (std::size_t i = 0; i < num_in; ++i) {
      std::vector<std::int64_t> dims{n};
      for (auto d : im.input_shapes[i].dims()) dims.push_back(d);
      const Shape expected(std::move(dims));
      NEXUS_CHECK(ins[i].dtype() == DType::kFloat32 && ins[i].shape() == expected,
                  "PrefixRunner::run_members: member '{}' input {} has shape {} (expected "
                  "float32 {})",
                  member_name(k), i, ins[i].shape(), expected);
    }
    counts.push_back(static_cast<int>(n));
    total += n;
  }
  NEXUS_CHECK(total >= 1, "PrefixRunner::run_members: no items in any member's inputs");
  std::vector<Tensor> merged;
  for (std::size_t i = 0; i < num_in; ++i) {
    std::vector<std::int64_t> dims{total};
    for (auto d : im.input_shapes[i].dims()) dims.push_back(d);
    Tensor t{Shape(std::move(dims))};
    auto* dst = static_cast<std::byte*>(t.raw_data());
    for (const auto& ins : member_inputs) {
      if (ins.empty()) continue;
      std::memcpy(dst, ins[i].raw_data(), ins[i].nbytes());
      dst += ins[i].nbytes();
    }
    merged.push_back(std::move(t));
  }
  return run(merged, counts);
}

int PrefixRunner::members() const { return static_cast<int>(impl_->split.suffixes.size()); }

const std::string& PrefixRunner::member_name(int m) const {
  NEXUS_CHECK(0 <= m && m < members(), "PrefixRunner: member {} out of range (0..{})", m,
              members() - 1);
  return impl_->split.suffixes[static_cast<std::size_t>(m)].model;
}

int PrefixRunner::max_batch() const { return impl_->max_batch; }

int PrefixRunner::num_inputs() const { return static_cast<int>(impl_->input_shapes.size()); }

Shape PrefixRunner::input_shape(int i) const {
  NEXUS_CHECK(0 <= i && i < num_inputs(), "PrefixRunner: input {} out of range (0..{})", i,
              num_inputs() - 1);
  return impl_->input_shapes[static_cast<std::size_t>(i)];
}

std::size_t PrefixRunner::weights_bytes() const {
  if (!impl_->loaded) return 0;
  std::size_t bytes = impl_->prefix->weights_bytes();
  for (const auto& b : impl_->suffixes)
    if (b) bytes += b->weights_bytes();
  return bytes;
}

std::size_t PrefixRunner::shared_weights_bytes() const {
  return impl_->loaded ? impl_->prefix->weights_bytes() : 0;
}

std::size_t PrefixRunner::unshared_weights_bytes() const {
  if (!impl_->loaded) return 0;
  return weights_bytes() +
         shared_weights_bytes() * static_cast<std::size_t>(std::max(0, members() - 1));
}

void PrefixRunner::prepare(const std::vector<int>& batch_sizes) {
  impl_->check_loaded();
  impl_->prefix->prepare(batch_sizes);
  for (const auto& b : impl_->suffixes)
    if (b) b->prepare(batch_sizes);
}

std::size_t PrefixRunner::device_bytes() const {
  if (!impl_->loaded) return 0;
  std::size_t bytes = impl_->prefix->device_bytes();
  for (const auto& b : impl_->suffixes)
    if (b) bytes += b->device_bytes();
  return bytes;
}

std::size_t PrefixRunner::activation_bytes(int batch) const {
  if (!impl_->loaded) return 0;
  std::size_t bytes = impl_->prefix->activation_bytes(batch);
  for (const auto& b : impl_->suffixes)
    if (b) bytes += b->activation_bytes(batch);
  return bytes;
}

const model::PrefixSplit& PrefixRunner::split() const {
  impl_->check_loaded();
  return impl_->split;
}

}  // namespace nexus
