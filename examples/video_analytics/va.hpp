#pragma once
// video_analytics: a multi-stream, multi-tenant face analytics service built on the Nexus
// Engine (docs/video_analytics.md). This header declares the parts shared by its files:
//   pipeline.cpp  models, batching profiles (measured once, cached), the query graphs and their
//                 stage functions, the frame store, the identity gallery;
//   streams.cpp   video files and photo folders paced at a frame rate;
//   report.cpp    the collector of results, the live line, summary table, report.json, plots;
//   annotate.cpp  boxes and labels drawn on frames.
//
// Query of one tenant (one QuerySpec per tenant and pipeline kind):
//   whole frames:  detect -> landmarks -> {recognize, age_gender, expression}
//   tiled frames:  tile -> detect (2x2 tiles, batched across frames) -> landmarks -> {...}
// Every stage input is a small "handle" tensor [frame id, x, y, w, h, score] that names a frame in
// the FrameStore and a rectangle in it; the pixels stay in the store, so queues stay small and
// the crops are cut from the full-resolution frame on the engine's CPU pool.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "nexus/core/clock.hpp"
#include "nexus/core/tensor.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/zoo/face_align.hpp"
#include "nexus/model/zoo/face_detector.hpp"
#include "nexus/model/zoo/face_identity.hpp"
#include "nexus/model/zoo/image.hpp"
#include "nexus/profile/model_store.hpp"
#include "nexus/runtime/engine.hpp"
#include "nexus/schedule/query_planner.hpp"

namespace va {

namespace fs = std::filesystem;
using nexus::Duration;
using nexus::Tensor;
using nexus::TimePoint;
using nexus::model::zoo::FaceRect;
using nexus::model::zoo::Image;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Frames

/// One decoded frame of one stream, shared by every stage item of its request.
struct Frame {
  std::uint64_t id = 0;         ///< global, 1.. (< 2^24: carried in float32 handles)
  int stream = 0;               ///< index into the stream list
  std::int64_t index = 0;       ///< frame number in the source (video frame / photo number)
  std::string source;           ///< file name
  std::shared_ptr<const Image> image;
};

/// Frames in flight, by id. Thread-safe. The stage functions read it; the poll thread erases a
/// frame once its request's one result came back.
class FrameStore {
 public:
  void put(std::shared_ptr<const Frame> f);
  /// Throws nexus::Error when the frame is unknown (already finished).
  std::shared_ptr<const Frame> get(std::uint64_t id) const;
  void erase(std::uint64_t id);
  std::size_t size() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::shared_ptr<const Frame>> frames_;
};

/// A handle: float32 [6] = frame id, x, y, w, h (pixels of the frame), detection score.
Tensor make_handle(std::uint64_t frame, const FaceRect& r, double score = 0.0);
struct Handle {
  std::uint64_t frame = 0;
  FaceRect rect;
  double score = 0.0;
};
Handle read_handle(const Tensor& t);

// ---------------------------------------------------------------------------------------------
// Models, profiles, queries

inline constexpr const char* kModelTile = "tile";
inline constexpr const char* kModelDetector = "face_detector";
inline constexpr const char* kModelLandmarks = "face_landmarks";
inline constexpr const char* kModelRecognition = "face_recognition";
inline constexpr const char* kModelAgeGender = "age_gender";
inline constexpr const char* kModelExpression = "face_expression";

/// Faces smaller than this (pixels, the shorter side of the detection box) get no identity, age,
/// gender or expression in the labels and the report: the nets see a crop upsampled from a few
/// pixels to 112-150 px, and what they say about it is noise (a 10 px pedestrian came out
/// "male 90%, age 9"). The nets still run on them; only the claims are withheld.
inline constexpr double kMinFacePx = 32.0;

/// face-api's FaceMatcher threshold: a gallery match needs a Euclidean descriptor distance
/// strictly below it (FaceMatcher.ts: `distanceThreshold = 0.6`, `bestMatch.distance <
/// this._distanceThreshold`). --match-threshold changes it.
inline constexpr double kFaceApiMatchThreshold = 0.6;

/// Side of the thumbnail the tile stage's model sees ([3, kTileThumb, kTileThumb]).
inline constexpr int kTileThumb = 32;

struct Models {
  std::shared_ptr<const nexus::model::zoo::FaceDetector> detector;
  std::map<std::string, std::shared_ptr<const nexus::model::Graph>> graphs;  ///< by model name
  std::map<std::string, int> max_batch;                                      ///< by model name
};
/// Loads the five face-api models from `model_dir` and builds the tile model. Throws
/// nexus::Error naming a missing file.
Models load_models(const fs::path& model_dir);

/// Batching profiles of all models on `device` ("cpu" or "cuda"): read from
/// `<profile_dir>/<device>/` when present and made on this machine by this build (its
/// `machine.txt` stamp, profile_stamp.hpp: machine_fingerprint and nexus::build_fingerprint()),
/// else measured now with
/// the backends (ℓ(b) for b = 1, 2, 4, 8, ... up to each model's max batch, plus the CPU pre/post
/// time per item) and saved there. Prints what it does.
nexus::ProfileMap load_or_measure_profiles(const Models& models, const std::string& device,
                                           const fs::path& profile_dir, bool force);

enum class PipelineKind { kWhole, kTiled };

/// Builds the Engine query of one tenant and pipeline kind. Stage names: tile (tiled only),
/// detect, landmarks, recognize, age_gender, expression. The recognize stage runs model
/// `recognition_model`: FaceRecognitionNet itself, or a tenant's identity head over it
/// (--tenant-heads; TenantHead::model).
nexus::runtime::QuerySpec make_query(const std::string& name, PipelineKind kind,
                                     std::chrono::microseconds slo, double rate_rps,
                                     const Models& models, FrameStore& store, float min_score,
                                     const std::string& recognition_model = kModelRecognition);
/// The same graph for the Scheduler (fan-outs as expected values).
nexus::QuerySpec make_schedule_query(const std::string& name, PipelineKind kind,
                                     std::chrono::microseconds slo, double rate_rps,
                                     double faces_per_frame);

/// The stages of a pipeline, root first.
std::vector<std::string> stage_names(PipelineKind kind);

/// The SLO pre-check of one query on a box with `devices` devices. An SLO is accepted when
///  (1) the QueryPlanner finds a split of it (§6.2: every stage within 2ℓ(b) + pre + post of its
///      budget), and
///  (2) one frame alone fits in it with its fan-out: each stage runs its items per frame (4 tiles
///      for the detector of a tiled frame, the expected faces for the face nets, at least one) as
///      one batch, ℓ(n) + n·(pre + post); on one device all stages of the frame take turns, so
///      their times add up; with several devices the longest root-to-leaf path counts.
/// Returns "" when accepted, else why not: the stage that needs most, the frame's least time and
/// the smallest accepted SLO (smallest_accepted_slo).
std::string explain_infeasible_slo(const nexus::QuerySpec& q, const nexus::ProfileMap& profiles,
                                   int devices);
/// True when the pre-check above accepts q.slo.
bool slo_accepted(const nexus::QuerySpec& q, const nexus::ProfileMap& profiles, int devices);
/// The smallest SLO, in whole ms, that slo_accepted() accepts for q (q.slo ignored): binary
/// search over whole milliseconds; the result r is accepted and r - 1 is not.
std::int64_t smallest_accepted_slo_ms(nexus::QuerySpec q, const nexus::ProfileMap& profiles,
                                      int devices);


// ---------------------------------------------------------------------------------------------
// What a finished request found

struct FaceResult {
  FaceRect box;
  double score = 0.0;
  std::vector<nexus::model::zoo::FacePoint> landmarks;  ///< 68 points, empty if not reached
  bool has_descriptor = false;
  std::vector<float> descriptor;
  /// --tenant-heads: the tenant's identity head's scores (one per enrolled class, in the head's
  /// order; score_c = |d|² − |d − μ_c|², zoo/face_identity.hpp), the recognize stage's 2nd output.
  std::vector<float> head_scores;
  std::string identity;           ///< gallery label of the match, "unknown" when too far/small
  std::string nearest;            ///< gallery label of the nearest entry (a look-alike if unknown)
  double distance = 0.0;          ///< to the nearest entry
  bool too_small = false;         ///< box under kMinFacePx: no identity, age, gender, expression
  bool has_age_gender = false;
  double age = 0.0;
  std::string gender;
  double gender_probability = 0.0;
  bool has_expression = false;
  std::string expression;
  double expression_probability = 0.0;
};

/// Faces of a completed request, assembled from its stage results (parent links).
std::vector<FaceResult> faces_of(const nexus::runtime::QueryResult& r);

/// The enrolled identities: one entry per face found on the demo photos.
struct GalleryEntry {
  std::string label;      ///< "<photo>#<k>", faces numbered left to right
  std::string photo;
  FaceRect box;
  std::vector<float> descriptor;
};
struct GalleryMatch {
  std::string identity;   ///< label of the nearest entry when distance < threshold, else "unknown"
  std::string nearest;    ///< label of the nearest entry ("" when the gallery is empty)
  double distance = 0.0;  ///< Euclidean distance of the descriptors to the nearest entry
};
struct Gallery {
  std::vector<GalleryEntry> entries;
  /// The nearest entry, as face-api's FaceMatcher.findBestMatch: a match when its distance is
  /// strictly below `threshold`. Entries enrolled from photo `exclude_photo` are skipped (a demo
  /// photo is matched against the others, not against itself).
  GalleryMatch match(const std::vector<float>& d, double threshold = kFaceApiMatchThreshold,
                     const std::string& exclude_photo = "") const;
  const GalleryEntry* find(const std::string& label) const;
};

/// --tenant-heads: one tenant's own identity model, FaceRecognitionNet + a nearest-class-mean
/// head (zoo::with_identity_head) over the faces it enrolled. The tenants' models share the whole
/// backbone, so the Engine serves them as one prefix group (paper §6.3, prefix batching).
struct TenantHead {
  int tenant = 0;
  std::string model;                  ///< Engine model name: "face_recognition/t<k>"
  std::vector<std::string> labels;    ///< gallery labels, one class each
  std::vector<std::vector<float>> class_means;  ///< [C][128]: each class's enrolled descriptor
  std::shared_ptr<const nexus::model::Graph> graph;
};
/// The heads of `tenants` tenants over `backbone` (FaceRecognitionNet). Tenant k enrols the faces
/// the gallery found on the demo photos p with p mod tenants == k (photos in file-name order),
/// one class per face; a tenant left without a photo (more tenants than photos) enrols them all.
/// Throws nexus::Error when the gallery is empty (a head needs at least one class).
std::vector<TenantHead> make_tenant_heads(const Gallery& gallery, int tenants,
                                          const nexus::model::Graph& backbone);

/// What a tenant's head says of one face: the class with the highest score, i.e. the nearest
/// class mean, and its Euclidean distance sqrt(|d|² − score) (0 when rounding makes it negative).
struct HeadMatch {
  std::string identity;   ///< label of the best class when distance < threshold, else "unknown"
  std::string nearest;    ///< label of the best class
  double distance = 0.0;
  double score = 0.0;
};
HeadMatch match_head(const TenantHead& head, const std::vector<float>& scores,
                     const std::vector<float>& descriptor,
                     double threshold = kFaceApiMatchThreshold);

// ---------------------------------------------------------------------------------------------
// Streams

struct StreamSpec {
  std::string name;        ///< "vtest#0"
  std::string kind;        ///< "video" | "photos"
  fs::path path;           ///< video file or folder / glob base of photos
  std::vector<fs::path> photos;
  PipelineKind pipeline = PipelineKind::kWhole;
  int tenant = 0;
  std::string query;       ///< the Engine query it feeds
  double fps = 1.0;        ///< frames submitted per second
};

/// A source of frames paced by the caller. Video: decodes with OpenCV videoio and skips frames so
/// that the video plays at its own speed at `fps` submitted frames per second; at the end it loops
/// (or stops with loop=false). Photos: decoded once, cycled. Thread-compatible (one thread).
class FrameSource {
 public:
  /// Opens the source. Throws nexus::Error naming the file when it is missing or undecodable
  /// (a photo folder with no readable photo), with what was expected.
  FrameSource(const StreamSpec& spec, bool loop);
  ~FrameSource();
  /// The next frame (its index in the source), or nullopt at the end without loop.
  std::optional<std::pair<std::int64_t, std::shared_ptr<const Image>>> next();
  double native_fps() const { return native_fps_; }
  /// File name of frame `index` (the video's name, or the photo's).
  std::string source_name(std::int64_t index) const;
  std::string describe() const;
  std::vector<std::string> warnings;  ///< e.g. unreadable photos skipped

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  double native_fps_ = 0.0;
};

// ---------------------------------------------------------------------------------------------
// Annotation

/// False for a frame without content to show: nearly uniform (a black or white fade frame), i.e.
/// the standard deviation of its luma over a 64 x 64 sample grid is below 8 (of 255).
bool has_content(const Image& image);

/// Draws the faces (box, identity, age, gender, expression) on a copy of the frame and writes it
/// as PNG or JPEG (by the extension). Frames are scaled to 1280 px wide so labels stay readable.
/// `tiled`: also draws the 2 x 2 tile grid the detector saw.
void write_annotated(const Image& image, const std::vector<FaceResult>& faces,
                     const std::string& title, const fs::path& file, bool tiled = false);

}  // namespace va
