// Frame sources of video_analytics: video files (OpenCV videoio) and photo folders.

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "nexus/core/error.hpp"
#include "va.hpp"

namespace va {

struct FrameSource::Impl {
  StreamSpec spec;
  bool loop = true;
  cv::VideoCapture cap;
  std::int64_t frame_count = 0;   // from the container; may be 0 (unknown)
  std::int64_t position = 0;      // index of the next frame to decode
  double step = 1.0;              // source frames per submitted frame
  double cursor = 0.0;            // ideal position of the next submitted frame
  int loops = 0;
  std::vector<std::shared_ptr<const Image>> photos;
  std::vector<std::string> photo_names;
  std::size_t next_photo = 0;
};

FrameSource::FrameSource(const StreamSpec& spec, bool loop) : impl_(std::make_unique<Impl>()) {
  impl_->spec = spec;
  impl_->loop = loop;
  if (spec.kind == "photos") {
    for (const auto& p : spec.photos) {
      cv::Mat m;
      if (fs::is_regular_file(p)) {
        try {
          m = cv::imread(p.string(), cv::IMREAD_COLOR);
        } catch (const cv::Exception&) {
          m = cv::Mat();
        }
      }
      if (m.empty() || m.type() != CV_8UC3) {
        warnings.push_back(fmt::format("photo {}: {} - skipped", p.string(),
                                       fs::exists(p) ? "cannot decode (not a JPEG/PNG image?)"
                                                     : "no such file"));
        continue;
      }
      impl_->photos.push_back(std::make_shared<Image>(
          nexus::model::zoo::image_from_bgr(m.data, m.cols, m.rows, m.step[0])));
      impl_->photo_names.push_back(p.filename().string());
    }
    NEXUS_CHECK(!impl_->photos.empty(),
                "stream '{}': no readable photo among {} file(s) under {} (expected JPEG/PNG files)",
                spec.name, spec.photos.size(), spec.path.string());
    native_fps_ = spec.fps;
    return;
  }
  NEXUS_CHECK(fs::is_regular_file(spec.path),
              "stream '{}': video file {} not found (run scripts/fetch_data.sh, or pass "
              "--streams with a path to a video file)",
              spec.name, spec.path.string());
  bool ok = false;
  // FFmpeg decodes the AVI/MP4 files; OpenCV's own log lines for a file it cannot open would
  // only repeat the message below, so they are silenced while opening.
  const auto level = cv::utils::logging::getLogLevel();
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  try {
    ok = impl_->cap.open(spec.path.string(), cv::CAP_FFMPEG) ||
         impl_->cap.open(spec.path.string(), cv::CAP_ANY);
  } catch (const cv::Exception&) {
    ok = false;
  }
  cv::utils::logging::setLogLevel(level);
  NEXUS_CHECK(ok && impl_->cap.isOpened(),
              "stream '{}': cannot open video {} (not a video OpenCV can decode: corrupt or an "
              "unsupported codec)",
              spec.name, spec.path.string());
  cv::Mat probe;
  NEXUS_CHECK(impl_->cap.read(probe) && !probe.empty(),
              "stream '{}': video {} has no decodable frame (corrupt file?)", spec.name,
              spec.path.string());
  impl_->cap.set(cv::CAP_PROP_POS_FRAMES, 0);
  native_fps_ = impl_->cap.get(cv::CAP_PROP_FPS);
  if (!(native_fps_ > 0 && native_fps_ < 1000)) native_fps_ = 25.0;
  impl_->frame_count = static_cast<std::int64_t>(impl_->cap.get(cv::CAP_PROP_FRAME_COUNT));
  // Submitting fewer frames per second than the video has: skip frames so the video keeps its
  // own speed (a 10 fps video sampled at 2 fps submits every 5th frame).
  impl_->step = std::max(1.0, native_fps_ / std::max(spec.fps, 1e-3));
}

FrameSource::~FrameSource() = default;

std::string FrameSource::source_name(std::int64_t index) const {
  if (impl_->spec.kind == "photos")
    return impl_->photo_names.at(static_cast<std::size_t>(index) % impl_->photo_names.size());
  return impl_->spec.path.filename().string();
}

std::string FrameSource::describe() const {
  if (impl_->spec.kind == "photos")
    return fmt::format("{} photos, cycled", impl_->photos.size());
  const std::string every =
      impl_->step < 1.5 ? std::string("every frame submitted")
                        : fmt::format("1 frame in {:.0f} submitted", impl_->step);
  return fmt::format("{} frames at {:.1f} fps, {}, {}", impl_->frame_count, native_fps_, every,
                     impl_->loop ? "looped" : "stops at the end");
}

std::optional<std::pair<std::int64_t, std::shared_ptr<const Image>>> FrameSource::next() {
  Impl& s = *impl_;
  if (s.spec.kind == "photos") {
    if (s.next_photo >= s.photos.size()) {
      if (!s.loop) return std::nullopt;
      s.next_photo = 0;
    }
    const auto i = s.next_photo++;
    return std::make_pair(static_cast<std::int64_t>(i), s.photos[i]);
  }
  auto target = static_cast<std::int64_t>(std::floor(s.cursor));
  s.cursor += s.step;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // Skip to the target frame (grab decodes little), then decode it.
    bool ok = true;
    while (ok && s.position < target) {
      ok = s.cap.grab();
      if (ok) ++s.position;
    }
    cv::Mat m;
    if (ok) ok = s.cap.read(m) && !m.empty() && m.type() == CV_8UC3;
    if (ok) {
      const std::int64_t index = s.position++;
      return std::make_pair(index, std::shared_ptr<const Image>(std::make_shared<Image>(
                                       nexus::model::zoo::image_from_bgr(m.data, m.cols, m.rows,
                                                                         m.step[0]))));
    }
    // The end of the video (or an undecodable frame in a truncated file): loop or stop.
    if (!s.loop) return std::nullopt;
    s.cap.set(cv::CAP_PROP_POS_FRAMES, 0);
    s.position = 0;
    target = 0;
    s.cursor = s.step;
    ++s.loops;
  }
  throw nexus::Error(fmt::format("stream '{}': video {} stopped decoding (corrupt?)", s.spec.name,
                                 s.spec.path.string()));
}

}  // namespace va
