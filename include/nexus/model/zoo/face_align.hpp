#pragma once
// Face alignment and cropping between detection and the face nets, as face-api does it:
//  1. crop the detection box (clipped to the image, floored) -> landmark net -> 68 points,
//     shifted by the detection box's top-left corner (decode_face_landmarks);
//  2. descriptors: crop align_dlib(points) -> FaceRecognitionNet (150 x 150);
//     age/gender and expressions: crop align_min_bbox(points) -> AgeGenderNet /
//     FaceExpressionNet (112 x 112);
//  3. each crop is turned into the net input by face_net_input(): zero-padded to a centred
//     square, resized bilinearly (TensorFlow, no corner alignment) to the net's size.
//
// Coordinates are image pixels, origin top-left, x right, y down, as doubles (face-api's JS
// numbers).
//
// Source: face-api classes/{FaceLandmarks,FaceLandmarks68,Box}.ts, ops/{minBbox,padToSquare}.ts,
// dom/{extractFaceTensors,NetInput}.ts, globalApi/{DetectFaceLandmarksTasks,
// ComputeFaceDescriptorsTasks,extractFacesAndComputeResults}.ts, factories/WithFaceLandmarks.ts.

#include <span>

#include "nexus/core/tensor.hpp"
#include "nexus/model/zoo/face_landmarks.hpp"
#include "nexus/model/zoo/image.hpp"

namespace nexus::model::zoo {

/// An axis-aligned box in pixels (x, y = top-left corner).
struct FaceRect {
  double x = 0.0, y = 0.0, width = 0.0, height = 0.0;
  double right() const { return x + width; }
  double bottom() const { return y + height; }
};

/// Box.clipAtImageBorders: clips the box to [0, image_width] x [0, image_height], then floors
/// x, y, width and height. The result may be empty (width or height <= 0).
FaceRect clip_at_image_borders(const FaceRect& box, int image_width, int image_height);

/// FaceLandmarks.align() (alignMinBbox): the bounding box of the points, grown by
/// `padding` x its width and height (half on each side). face-api's `alignedRect`, the crop for
/// age/gender and expressions. Throws nexus::Error when `points` is empty.
FaceRect align_min_bbox(std::span<const FacePoint> points, double padding = 0.2);

/// FaceLandmarks.align(null, {useDlibAlignment: true}) (alignDlib): a square of side
/// floor(mean eye-to-mouth distance / 0.45) placed so the centre of (left eye, right eye,
/// mouth) centres sits at (0.5, 0.43) of it, clamped to x, y >= 0; width/height are
/// min(size, crop_width + x) / min(size, crop_height + y), where crop_width/height are the
/// dimensions of the detection crop the landmarks came from (face-api's quirk, kept).
/// The crop for descriptors. Throws nexus::Error unless there are 68 points.
FaceRect align_dlib(std::span<const FacePoint> points68, int crop_width, int crop_height);

/// extractFaceTensors for one box: the pixels of clip_at_image_borders(box). Throws
/// nexus::Error when the clipped box is empty.
Image extract_face(const Image& image, const FaceRect& box);

/// NetInput.toBatchTensor(size, isCenterInputs = true) for one image: pads the short side with
/// black to a square (round(diff / 2) after, the rest before), resizes it bilinearly to
/// size x size (tf.image.resizeBilinear, alignCorners = halfPixelCenters = false) and returns
/// a float32 [3, size, size] tensor of RGB values in 0..255: the input of a face net graph.
/// Throws nexus::Error on an empty image or size < 1.
Tensor face_net_input(const Image& face, int size);

/// face_net_input into `out` (3 * size * size floats), e.g. one item of a [N, 3, size, size]
/// batch. Throws nexus::Error when out has the wrong size.
void face_net_input_into(const Image& face, int size, std::span<float> out);

/// What face-api derives from one detection and its landmark net output.
struct AlignedFace {
  FaceLandmarks68 landmarks;  ///< image pixels (face-api `landmarks`)
  FaceRect aligned_rect;      ///< align_min_bbox: crop for age/gender and expressions
  FaceRect descriptor_rect;   ///< align_dlib: crop for the descriptor
};

/// face-api's extendWithFaceLandmarks + the alignments: `raw_landmarks` is the [136] output of
/// FaceLandmark68Net on face_net_input(extract_face(image, detection_box), 112), image_width x
/// image_height the size of the whole image. Throws nexus::Error when the detection crop is
/// empty or raw_landmarks.size() != 136.
AlignedFace align_face(std::span<const float> raw_landmarks, const FaceRect& detection_box,
                       int image_width, int image_height);

}  // namespace nexus::model::zoo
