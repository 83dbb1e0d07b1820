// FaceExpressionNet (face-api faceExpressionNet/) in the Graph IR.
#include "nexus/model/zoo/face_expression.hpp"

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/face_feature_extractor.hpp"

namespace nexus::model::zoo {

Graph build_face_expression_net(const WeightMap& w) {
  GraphBuilder b("face_expression_net");
  const NodeId image =
      b.input("image", Shape{3, kFaceExpressionInputSize, kFaceExpressionInputSize});
  NodeId out = add_face_feature_extractor(b, add_face_normalization(b, image, "normalize"), w);
  const Tensor& fw = get(w, "fc/weights", Shape{256, kFaceExpressionCount});
  const Tensor& fb = get(w, "fc/bias", Shape{kFaceExpressionCount});
  out = b.fully_connected("logits", b.flatten("flatten", out), dense_to_out_in(fw), fb.clone());
  out = b.softmax("expressions", out);
  b.output(out);
  return std::move(b).build();
}

Graph load_face_expression_net(const std::filesystem::path& model_dir) {
  return build_face_expression_net(
      load_tfjs_weights(model_dir / "face_expression_model-weights_manifest.json"));
}

int top_face_expression(std::span<const float> p) {
  NEXUS_CHECK(p.size() == kFaceExpressionCount,
              "top_face_expression: expected {} probabilities, got {}", kFaceExpressionCount,
              p.size());
  int best = 0;
  for (int i = 1; i < kFaceExpressionCount; ++i)
    if (p[static_cast<std::size_t>(i)] > p[static_cast<std::size_t>(best)]) best = i;
  return best;
}

}  // namespace nexus::model::zoo
