// AgeGenderNet (face-api ageGenderNet/, xception/TinyXception.ts) in the Graph IR.
#include "nexus/model/zoo/face_age_gender.hpp"

#include <string>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/face_feature_extractor.hpp"

namespace nexus::model::zoo {
namespace {

// reductionBlock of TinyXception.ts. The shortcut's 1x1/2 expansion conv reads the block
// input before its (optional) relu.
NodeId reduction_block(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& p,
                       int out_channels, bool activate_input) {
  NodeId out = activate_input ? b.relu(p + "/relu_in", x) : x;
  out = add_separable_conv(b, out, w, p + "/separable_conv0", out_channels, 1);
  out = add_separable_conv(b, b.relu(p + "/relu0", out), w, p + "/separable_conv1", out_channels,
                           1);
  Pool2DAttrs mp;  // tf.maxPool(out, [3, 3], [2, 2], 'same')
  mp.kernel_h = mp.kernel_w = 3;
  mp.stride_h = mp.stride_w = 2;
  mp.padding = Padding::kSame;
  out = b.max_pool(p + "/max_pool", out, mp);
  const NodeId shortcut =
      add_tf_conv(b, x, w, p + "/expansion_conv", 1, out_channels, 2, Padding::kSame);
  return b.add(p + "/add", out, shortcut);
}

// mainBlock: three relu -> separable conv, plus the identity.
NodeId main_block(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& p) {
  const int c = static_cast<int>(b.shape(x)[0]);
  NodeId out = x;
  for (int i = 0; i < 3; ++i) {
    const std::string k = std::to_string(i);
    out = add_separable_conv(b, b.relu(p + "/relu" + k, out), w, p + "/separable_conv" + k, c, 1);
  }
  return b.add(p + "/add", out, x);
}

NodeId fc(GraphBuilder& b, NodeId x, const WeightMap& w, const std::string& p, int out,
          const std::string& name) {
  const Tensor& fw = get(w, p + "/weights", Shape{512, out});
  const Tensor& fb = get(w, p + "/bias", Shape{out});
  return b.fully_connected(name, x, dense_to_out_in(fw), fb.clone());
}

}  // namespace

const char* gender_name(Gender g) { return g == Gender::kMale ? "male" : "female"; }

Graph build_age_gender_net(const WeightMap& w) {
  GraphBuilder b("age_gender_net");
  const NodeId image = b.input("image", Shape{3, kAgeGenderInputSize, kAgeGenderInputSize});
  NodeId out = add_face_normalization(b, image, "normalize");

  out = b.relu("entry_flow/conv_in/relu",
               add_tf_conv(b, out, w, "entry_flow/conv_in", 3, 32, 2, Padding::kSame));
  out = reduction_block(b, out, w, "entry_flow/reduction_block_0", 64, false);
  out = reduction_block(b, out, w, "entry_flow/reduction_block_1", 128, true);
  for (int i = 0; i < kAgeGenderMainBlocks; ++i)
    out = main_block(b, out, w, "middle_flow/main_block_" + std::to_string(i));
  out = reduction_block(b, out, w, "exit_flow/reduction_block", 256, true);
  out = b.relu("exit_flow/relu",
               add_separable_conv(b, out, w, "exit_flow/separable_conv", 512, 1));

  Pool2DAttrs pool;  // tf.avgPool(features, [7, 7], [2, 2], 'valid'): [512, 7, 7] -> [512, 1, 1]
  pool.kernel_h = pool.kernel_w = 7;
  pool.stride_h = pool.stride_w = 2;
  pool.padding = Padding::kValid;
  const NodeId pooled = b.flatten("flatten", b.avg_pool("avg_pool", out, pool));

  b.output(fc(b, pooled, w, "fc/age", 1, "age"));
  b.output(b.softmax("gender", fc(b, pooled, w, "fc/gender", 2, "gender_logits")));
  return std::move(b).build();
}

Graph load_age_gender_net(const std::filesystem::path& model_dir) {
  return build_age_gender_net(
      load_tfjs_weights(model_dir / "age_gender_model-weights_manifest.json"));
}

AgeGender decode_age_gender(std::span<const float> age, std::span<const float> gender) {
  NEXUS_CHECK(age.size() == 1 && gender.size() == 2,
              "decode_age_gender: expected age [1] and gender [2], got [{}] and [{}]", age.size(),
              gender.size());
  AgeGender r;
  r.age = age[0];
  const float p_male = gender[0];
  r.gender = p_male > 0.5f ? Gender::kMale : Gender::kFemale;
  r.gender_probability = p_male > 0.5f ? p_male : 1.0f - p_male;
  return r;
}

}  // namespace nexus::model::zoo
