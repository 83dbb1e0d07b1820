// Nearest-class-mean identity heads over a face embedding backbone (see zoo/face_identity.hpp).
#include "nexus/model/zoo/face_identity.hpp"

#include <utility>

#include "nexus/core/error.hpp"

namespace nexus::model::zoo {

std::vector<float> class_mean(std::span<const std::vector<float>> descriptors) {
  NEXUS_CHECK(!descriptors.empty(), "class_mean: no descriptors (expected at least one)");
  std::vector<float> mean(descriptors[0].size(), 0.0f);
  for (const auto& d : descriptors) {
    NEXUS_CHECK(d.size() == mean.size(), "class_mean: a descriptor of length {} (expected {})",
                d.size(), mean.size());
    for (std::size_t i = 0; i < d.size(); ++i) mean[i] += d[i];
  }
  for (float& v : mean) v /= static_cast<float>(descriptors.size());
  return mean;
}

Graph with_identity_head(const Graph& backbone, const IdentityHead& head) {
  NEXUS_CHECK(backbone.outputs().size() == 1,
              "with_identity_head: backbone '{}' has {} outputs (expected one descriptor)",
              backbone.name(), backbone.outputs().size());
  const NodeId out = backbone.outputs()[0];
  const Shape& ds = backbone.node(out).shape;
  NEXUS_CHECK(ds.rank() == 1, "with_identity_head: backbone '{}' outputs {} (expected [D])",
              backbone.name(), ds);
  const std::int64_t dim = ds[0];
  const auto classes = static_cast<std::int64_t>(head.class_means.size());
  NEXUS_CHECK(classes >= 1, "with_identity_head: tenant '{}' has no enrolled class",
              head.tenant);
  NEXUS_CHECK(head.labels.size() == head.class_means.size(),
              "with_identity_head: tenant '{}' has {} labels for {} class means", head.tenant,
              head.labels.size(), head.class_means.size());
  Tensor w(Shape{classes, dim}), b(Shape{classes});
  for (std::int64_t c = 0; c < classes; ++c) {
    const auto& mu = head.class_means[static_cast<std::size_t>(c)];
    NEXUS_CHECK(static_cast<std::int64_t>(mu.size()) == dim,
                "with_identity_head: tenant '{}' class '{}' mean has length {} (expected {})",
                head.tenant, head.labels[static_cast<std::size_t>(c)], mu.size(), dim);
    double norm2 = 0;
    for (std::int64_t i = 0; i < dim; ++i) {
      const float m = mu[static_cast<std::size_t>(i)];
      w.data()[c * dim + i] = 2.0f * m;
      norm2 += static_cast<double>(m) * m;
    }
    b.data()[c] = static_cast<float>(-norm2);
  }
  std::vector<Node> nodes = backbone.nodes();
  Node fc;
  fc.id = static_cast<NodeId>(nodes.size());
  fc.name = head.tenant + "/identity";
  fc.op = OpType::kFullyConnected;
  fc.inputs = {out};
  fc.shape = Shape{classes};
  fc.weight = std::move(w);
  fc.bias = std::move(b);
  const NodeId scores = fc.id;
  nodes.push_back(std::move(fc));
  return Graph::from_nodes(backbone.name() + "/" + head.tenant, std::move(nodes),
                           backbone.inputs(), {out, scores});
}

}  // namespace nexus::model::zoo
