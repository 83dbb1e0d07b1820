#pragma once
// FaceDetector: face-api's SSD-MobileNetV1 face detector as a Graph IR model plus the CPU pre-
// and post-processing that face-api wraps around it, so that a Backend runs the DNN and the
// application (or Nexus's pre/post-processing pool) runs the rest.
//
// Pipeline (SsdMobilenetv1.locateFaces):
//  preprocess   RGB image (W x H) -> zero-pad bottom/right to a square of side max(W, H) ->
//               bilinear resize to 512 x 512 (TF, no corner alignment) -> x / 127.5 - 1 ->
//               [3, 512, 512] float32 (CHW).
//  graph        MobileNetV1 (conv 3x3/2 + 13 depthwise-separable pairs; depthwise conv +
//               BatchNorm + ReLU6, pointwise conv + bias + ReLU6), 8 extra pointwise convs, and
//               6 box predictors on conv11 (32x32), conv13 (16x16), 8x8, 4x4, 2x2, 1x1 with
//               3, 6, 6, 6, 6, 6 anchors per cell: 5118 anchors.
//               Outputs, in order, for predictor p = 0..5: "box_encoding_p" [A_p*4, H_p, W_p]
//               and "class_logits_p" [A_p*3, H_p, W_p] (raw 1x1 conv outputs, NCHW).
//  postprocess  per anchor: encodings (ty, tx, th, tw) decoded against the anchor with variances
//               (10, 10, 5, 5) to (ymin, xmin, ymax, xmax) relative to the padded square; score =
//               sigmoid(logit of class 1); face-api's greedy NMS (IoU > 0.5 suppresses, scores
//               > min_confidence, at most max_results); boxes clipped to [0, 1], un-padded and
//               scaled to image pixels.
//
// Source: face-api 1.7.15 src/ssdMobilenetv1/{SsdMobilenetv1,mobileNetV1,predictionLayer,
// boxPredictionLayer,outputLayer,nonMaxSuppression}.ts, dom/NetInput.ts, ops/padToSquare.ts;
// weights data/face-api/model/ssd_mobilenetv1_model-*.
//
// Thread-safety: a loaded FaceDetector is immutable; all const members may run concurrently.

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "nexus/core/tensor.hpp"
#include "nexus/exec/backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/weights.hpp"
#include "nexus/model/zoo/image.hpp"

namespace nexus::model::zoo {

inline constexpr int kFaceDetectorInputSize = 512;
inline constexpr int kFaceDetectorAnchors = 5118;
inline constexpr int kFaceDetectorPredictors = 6;
/// face-api's SsdMobilenetv1Options defaults.
inline constexpr float kFaceDetectorMinConfidence = 0.5f;
inline constexpr int kFaceDetectorMaxResults = 100;
inline constexpr float kFaceDetectorIouThreshold = 0.5f;

/// One detected face: score in (0, 1) and a box in image pixels (x, y = top-left).
struct FaceDetection {
  double score = 0.0;
  double x = 0.0, y = 0.0, width = 0.0, height = 0.0;
};

/// The decoded, un-suppressed outputs for one image: scores [5118] (sigmoid) and boxes
/// [5118 x 4] as (ymin, xmin, ymax, xmax) relative to the padded 512 x 512 input, exactly what
/// face-api's outputLayer returns.
struct FaceDetectorRaw {
  std::vector<float> scores;
  std::vector<float> boxes;
};

class FaceDetector {
 public:
  /// Loads `<model_dir>/ssd_mobilenetv1_model-weights_manifest.json` and builds the graph.
  /// Throws nexus::Error naming the file or a missing/misshaped tensor.
  static FaceDetector load(const std::filesystem::path& model_dir);
  /// Builds from an already loaded weight map (names as in the manifest).
  static FaceDetector from_weights(const WeightMap& weights);

  /// The DNN: input "image" [3, 512, 512], the 12 outputs described above.
  const Graph& graph() const { return graph_; }

  /// Pre-processing of one image into a new [3, 512, 512] float32 tensor.
  /// Throws nexus::Error on an empty image.
  Tensor preprocess(const Image& image) const;
  /// The same into `out` (3 * 512 * 512 floats), e.g. one item of a [N, 3, 512, 512] batch.
  /// Throws nexus::Error when out has the wrong size or the image is empty.
  void preprocess_into(const Image& image, std::span<float> out) const;

  /// Decodes item `item` of a batch of graph outputs (Backend::run's result, 12 tensors with a
  /// leading batch dimension). Throws nexus::Error on a wrong output count or shape.
  FaceDetectorRaw decode(const std::vector<Tensor>& outputs, std::int64_t item = 0) const;

  /// decode() + NMS + conversion to pixels of the original W x H image, best score first.
  /// Throws nexus::Error as decode(), or when min_confidence is not in (0, 1) or a size < 1.
  std::vector<FaceDetection> postprocess(const std::vector<Tensor>& outputs, std::int64_t item,
                                         int image_width, int image_height,
                                         float min_confidence = kFaceDetectorMinConfidence,
                                         int max_results = kFaceDetectorMaxResults) const;

  /// preprocess + backend.run + postprocess for one image. `backend` must have loaded graph().
  std::vector<FaceDetection> detect(Backend& backend, const Image& image,
                                    float min_confidence = kFaceDetectorMinConfidence,
                                    int max_results = kFaceDetectorMaxResults) const;

  /// The 5118 anchors [5118 x 4] as stored in the weights (ymin, xmin, ymax, xmax).
  const std::vector<float>& anchors() const { return anchors_; }

 private:
  FaceDetector() = default;
  Graph graph_;
  std::vector<float> anchors_;
};

/// face-api's nonMaxSuppression over boxes [n x 4] (ymin, xmin, ymax, xmax) and scores [n]:
/// candidates with score > score_threshold, by descending score (ties by index), each kept
/// unless its IoU with an already kept box exceeds iou_threshold; at most max_output.
/// Returns the kept indices in order of selection.
std::vector<int> face_api_nms(std::span<const float> boxes, std::span<const float> scores,
                              int max_output, double iou_threshold, double score_threshold);

}  // namespace nexus::model::zoo
