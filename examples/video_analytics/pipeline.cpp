// Models, profiles, query graphs and stage functions of video_analytics (see va.hpp).

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/zoo/face_age_gender.hpp"
#include "nexus/model/zoo/face_expression.hpp"
#include "nexus/model/zoo/face_landmarks.hpp"
#include "nexus/model/zoo/face_recognition.hpp"
#include "nexus/profile/profiler.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"
#include "nexus/version.hpp"
#include "profile_stamp.hpp"
#include "va.hpp"

namespace va {

namespace zoo = nexus::model::zoo;
using nexus::Shape;
using nexus::runtime::StageView;

// ---------------------------------------------------------------------------------------------
// FrameStore and handles

void FrameStore::put(std::shared_ptr<const Frame> f) {
  std::lock_guard lock(mu_);
  frames_[f->id] = std::move(f);
}

std::shared_ptr<const Frame> FrameStore::get(std::uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = frames_.find(id);
  NEXUS_CHECK(it != frames_.end(), "frame {} is not in the frame store (already finished)", id);
  return it->second;
}

void FrameStore::erase(std::uint64_t id) {
  std::lock_guard lock(mu_);
  frames_.erase(id);
}

std::size_t FrameStore::size() const {
  std::lock_guard lock(mu_);
  return frames_.size();
}

Tensor make_handle(std::uint64_t frame, const FaceRect& r, double score) {
  NEXUS_CHECK(frame < (1u << 24), "frame id {} does not fit a float32 handle", frame);
  const float v[6] = {float(frame), float(r.x), float(r.y), float(r.width), float(r.height),
                      float(score)};
  return Tensor::from(Shape{6}, v);
}

Handle read_handle(const Tensor& t) {
  NEXUS_CHECK(t.numel() == 6 && t.dtype() == nexus::DType::kFloat32,
              "stage input: expected a float32 [6] frame handle, got {}", t.shape());
  auto v = t.values();
  Handle h;
  h.frame = static_cast<std::uint64_t>(v[0]);
  h.rect = {v[1], v[2], v[3], v[4]};
  h.score = v[5];
  return h;
}

namespace {

// The crop of `r` (clipped to the frame), or the frame itself when r covers it.
std::shared_ptr<const Image> crop_of(const Frame& f, const FaceRect& r) {
  const Image& im = *f.image;
  if (r.x <= 0 && r.y <= 0 && r.width >= im.width && r.height >= im.height) return f.image;
  return std::make_shared<Image>(zoo::extract_face(im, r));
}

bool usable(const FaceRect& r, int w, int h) {
  const FaceRect c = zoo::clip_at_image_borders(r, w, h);
  return c.width >= 2 && c.height >= 2;
}

Tensor with_batch(const Tensor& t) {
  std::vector<std::int64_t> d = t.shape().dims();
  d.insert(d.begin(), 1);
  return t.reshape(Shape(std::move(d)));
}

// Landmark stage output layout (float32 [149]).
constexpr int kLmBox = 0;        // x, y, w, h, score
constexpr int kLmPoints = 5;     // 68 x (x, y)
constexpr int kLmAligned = 141;  // aligned_rect x, y, w, h
constexpr int kLmDesc = 145;     // descriptor_rect x, y, w, h
constexpr int kLmSize = 149;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Models

Models load_models(const fs::path& model_dir) {
  NEXUS_CHECK(fs::is_directory(model_dir),
              "model directory {}: not found (expected face-api's weights; run scripts/fetch_data.sh)",
              model_dir.string());
  Models m;
  m.detector = std::make_shared<zoo::FaceDetector>(zoo::FaceDetector::load(model_dir));
  // The detector's graph lives inside the FaceDetector; share it without copying.
  m.graphs[kModelDetector] =
      std::shared_ptr<const nexus::model::Graph>(m.detector, &m.detector->graph());
  m.graphs[kModelLandmarks] =
      std::make_shared<nexus::model::Graph>(zoo::load_face_landmark68_net(model_dir));
  m.graphs[kModelRecognition] =
      std::make_shared<nexus::model::Graph>(zoo::load_face_recognition_net(model_dir));
  m.graphs[kModelAgeGender] =
      std::make_shared<nexus::model::Graph>(zoo::load_age_gender_net(model_dir));
  m.graphs[kModelExpression] =
      std::make_shared<nexus::model::Graph>(zoo::load_face_expression_net(model_dir));
  // The tile stage's model: the mean colour of a 32 x 32 thumbnail (a cheap frame check). The
  // stage's real work is its fan-out, which cuts the frame into tiles; the Engine runs every stage
  // on a model, so the tile stage gets the smallest useful one.
  {
    nexus::model::GraphBuilder b("tile");
    auto x = b.input("thumb", Shape{3, kTileThumb, kTileThumb});
    b.output(b.global_avg_pool("mean", x));
    m.graphs[kModelTile] = std::make_shared<nexus::model::Graph>(std::move(b).build());
  }
  m.max_batch = {{kModelTile, 16},       {kModelDetector, 8},   {kModelLandmarks, 16},
                 {kModelRecognition, 16}, {kModelAgeGender, 16}, {kModelExpression, 16}};
  return m;
}

// ---------------------------------------------------------------------------------------------
// Profiles

namespace {

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown cpu";
}

std::string machine_fingerprint(const std::string& device) {
  return fmt::format("{} | {} | {} threads", device, cpu_model_name(),
                     std::thread::hardware_concurrency());
}

std::unique_ptr<nexus::Backend> make_backend(const std::string& device) {
  if (device == "cuda") return nexus::make_cuda_backend();
  return std::make_unique<nexus::CpuBackend>();
}

// Profiles one model with nexus::Profiler: the backend at 1, 2, 4, ... up to the model's batch
// cap, and the CPU work per item around the model as the stage functions do it.
nexus::BatchProfile measure(const Models& models, const std::string& name,
                            const std::string& device, int max_batch) {
  const auto& graph = *models.graphs.at(name);
  nexus::ProfilerOptions opt;
  opt.warmup = 1;
  opt.repeats = 10;
  opt.max_batch = max_batch;
  // The Profiler always searches B_max (up to this cap) and stops where throughput stops growing
  // (paper §6.1), so a model can get a profile below its cap; min_gain 0 stops only on a drop, as
  // a noisy shared 2-core box easily shows < 1 % between doublings.
  opt.min_gain = 0.0;
  for (int b = 1; b <= max_batch; b *= 2) opt.batches.push_back(b);
  nexus::Profiler profiler([device] { return make_backend(device); }, std::move(opt));

  Image frame(720, 528);
  for (std::size_t i = 0; i < frame.rgb.size(); ++i) frame.rgb[i] = static_cast<std::uint8_t>(i * 31);
  if (name == kModelDetector) {
    // Post-processing needs detector outputs: one batch-1 run on uniform [-1, 1] input.
    auto backend = make_backend(device);
    backend->load(graph, 1);
    std::vector<std::int64_t> d = backend->input_shape(0).dims();
    d.insert(d.begin(), 1);
    Tensor in{Shape(d)};
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& v : in.values()) v = u(rng);
    const std::vector<Tensor> outputs1 = backend->run({in});
    return profiler.profile(
        graph, name, [&] { (void)models.detector->preprocess(frame); },
        [&] { (void)models.detector->postprocess(outputs1, 0, 720, 528, 0.5f); });
  }
  if (name == kModelTile) {
    // The tile stage's pre-processing: sample a kTileThumb^2 RGB thumbnail of the frame.
    Tensor t{Shape{3, kTileThumb, kTileThumb}};
    return profiler.profile(graph, name, [&] {
      auto v = t.values();
      for (int y = 0; y < kTileThumb; ++y)
        for (int x = 0; x < kTileThumb; ++x) {
          const int sx = (2 * x + 1) * frame.width / (2 * kTileThumb);
          const int sy = (2 * y + 1) * frame.height / (2 * kTileThumb);
          for (int c = 0; c < 3; ++c)
            v[static_cast<std::size_t>((c * kTileThumb + y) * kTileThumb + x)] = frame.at(sx, sy, c);
        }
    });
  }
  const int size = static_cast<int>(graph.node(graph.inputs().at(0)).shape[1]);
  return profiler.profile(graph, name, [&] {
    Image crop = zoo::extract_face(frame, FaceRect{100, 100, 120, 140});
    (void)zoo::face_net_input(crop, size);
  });
}

}  // namespace

nexus::ProfileMap load_or_measure_profiles(const Models& models, const std::string& device,
                                           const fs::path& profile_dir, bool force) {
  const fs::path dir = profile_dir / device;
  const fs::path stamp = dir / "machine.txt";
  // The cache is valid for this machine AND this build of the code that decides the timings
  // (profile_stamp.hpp): a cache keyed by the machine alone kept planning a 300 ms detector
  // after the CpuBackend's fused kernels made it ~70 ms, and admission turned streams away.
  const ProfileStamp now{machine_fingerprint(device), nexus::build_fingerprint()};
  bool reuse = !force && fs::is_regular_file(stamp);
  if (reuse) {
    std::ifstream in(stamp);
    std::stringstream have;
    have << in.rdbuf();
    const std::string why = stamp_mismatch(have.str(), now);
    if (!why.empty()) {
      std::cout << "profiles in " << dir.string() << " were measured " << why
                << "; measuring again\n";
      reuse = false;
    }
  }
  nexus::ModelStore store;
  if (reuse) {
    try {
      store = nexus::ModelStore(dir);
      for (const auto& [name, g] : models.graphs)
        if (!store.has(name)) reuse = false;
    } catch (const nexus::Error& e) {
      std::cout << "cached profiles unreadable (" << e.what() << "); measuring again\n";
      reuse = false;
    }
  }
  if (reuse) {
    std::cout << "batching profiles: " << dir.string() << " (cached; --reprofile measures again)\n";
  } else {
    std::cout << "batching profiles: measuring on " << device << " (" << now.machine << "; build "
              << now.build << "), cached in " << dir.string() << " ...\n";
    store = nexus::ModelStore();
    for (const auto& [name, g] : models.graphs) {
      const auto t0 = Clock::now();
      nexus::BatchProfile p = measure(models, name, device, models.max_batch.at(name));
      std::cout << fmt::format("  {:<17} l(1) = {:7.1f} ms  l({}) = {:7.1f} ms  pre {:5.2f} ms/item"
                               "  ({:.1f} s)\n",
                               name, p.mean_latency(1).count() / 1e3, p.max_batch(),
                               p.mean_latency(p.max_batch()).count() / 1e3,
                               p.preprocess().count() / 1e3,
                               std::chrono::duration<double>(Clock::now() - t0).count());
      store.add(std::move(p));
    }
    fs::create_directories(dir);
    store.save(dir);
    std::ofstream(stamp) << format_stamp(now);
  }
  // Planning latency: mean + 1 std, x 1.15 (the original Nexus code's safety margin).
  return store.profiles_for(device, nexus::LatencyModel{1.0, 1.15});
}

// ---------------------------------------------------------------------------------------------
// Queries

std::vector<std::string> stage_names(PipelineKind kind) {
  std::vector<std::string> s;
  if (kind == PipelineKind::kTiled) s.push_back("tile");
  for (const char* n : {"detect", "landmarks", "recognize", "age_gender", "expression"})
    s.push_back(n);
  return s;
}

nexus::runtime::QuerySpec make_query(const std::string& name, PipelineKind kind,
                                     std::chrono::microseconds slo, double rate_rps,
                                     const Models& models, FrameStore& store, float min_score,
                                     const std::string& recognition_model) {
  using namespace nexus::runtime;
  auto det = models.detector;
  FrameStore* fs = &store;
  QuerySpec q;
  q.name = name;
  q.slo = slo;
  q.expected_rate_rps = rate_rps;
  const double faces = kind == PipelineKind::kTiled ? 0.5 : 1.5;

  if (kind == PipelineKind::kTiled) {
    StageSpec tile;
    tile.name = "tile";
    tile.model = kModelTile;
    tile.preprocess = [fs](const Tensor& in) {
      const Handle h = read_handle(in);
      auto f = fs->get(h.frame);
      const Image& im = *f->image;
      Tensor t{Shape{3, kTileThumb, kTileThumb}};
      auto v = t.values();
      for (int y = 0; y < kTileThumb; ++y)
        for (int x = 0; x < kTileThumb; ++x) {
          const int sx = (2 * x + 1) * im.width / (2 * kTileThumb);
          const int sy = (2 * y + 1) * im.height / (2 * kTileThumb);
          for (int c = 0; c < 3; ++c)
            v[static_cast<std::size_t>((c * kTileThumb + y) * kTileThumb + x)] = im.at(sx, sy, c);
        }
      return t;
    };
    // 2 x 2 tiles: a pedestrian's 10-15 px face becomes 13-20 px at the detector's 512 x 512
    // input instead of 7-10 px on the whole frame, which the detector can find.
    tile.children.push_back(
        {.stage = "detect",
         .fanout =
             [fs](const StageView& v) {
               const Handle h = read_handle(v.input);
               auto f = fs->get(h.frame);
               const int w = f->image->width, hh = f->image->height;
               std::vector<Tensor> out;
               for (int ty = 0; ty < 2; ++ty)
                 for (int tx = 0; tx < 2; ++tx) {
                   const int x0 = tx * w / 2, x1 = (tx + 1) * w / 2;
                   const int y0 = ty * hh / 2, y1 = (ty + 1) * hh / 2;
                   out.push_back(make_handle(h.frame, FaceRect{double(x0), double(y0),
                                                               double(x1 - x0), double(y1 - y0)}));
                 }
               return out;
             },
         .expected_fanout = 4.0});
    q.stages.push_back(std::move(tile));
  }

  StageSpec detect;
  detect.name = "detect";
  detect.model = kModelDetector;
  detect.preprocess = [fs, det](const Tensor& in) {
    const Handle h = read_handle(in);
    auto f = fs->get(h.frame);
    return det->preprocess(*crop_of(*f, h.rect));
  };
  detect.postprocess = [det, min_score](std::vector<Tensor> outs, const Tensor& in) {
    const Handle h = read_handle(in);
    std::vector<Tensor> batched;
    for (const Tensor& o : outs) batched.push_back(with_batch(o));
    const int w = static_cast<int>(h.rect.width), hh = static_cast<int>(h.rect.height);
    auto dets = det->postprocess(batched, 0, w, hh, min_score);
    std::vector<float> v{float(dets.size())};
    for (const auto& d : dets)
      for (double x : {d.x + h.rect.x, d.y + h.rect.y, d.width, d.height, d.score})
        v.push_back(float(x));
    return std::vector<Tensor>{Tensor::from(Shape{std::int64_t(v.size())}, v)};
  };
  detect.children.push_back(
      {.stage = "landmarks",
       .fanout =
           [fs](const StageView& v) {
             const Handle h = read_handle(v.input);
             auto f = fs->get(h.frame);
             auto d = v.outputs.at(0).values();
             const int n = static_cast<int>(d[0]);
             std::vector<Tensor> out;
             for (int i = 0; i < n; ++i) {
               const float* b = d.data() + 1 + 5 * i;
               const FaceRect r{b[0], b[1], b[2], b[3]};
               if (usable(r, f->image->width, f->image->height))
                 out.push_back(make_handle(h.frame, r, b[4]));
             }
             return out;
           },
       .expected_fanout = faces});
  q.stages.push_back(std::move(detect));

  StageSpec lm;
  lm.name = "landmarks";
  lm.model = kModelLandmarks;
  lm.preprocess = [fs](const Tensor& in) {
    const Handle h = read_handle(in);
    auto f = fs->get(h.frame);
    return zoo::face_net_input(zoo::extract_face(*f->image, h.rect), zoo::kFaceLandmarkInputSize);
  };
  lm.postprocess = [fs](std::vector<Tensor> outs, const Tensor& in) {
    const Handle h = read_handle(in);
    auto f = fs->get(h.frame);
    auto raw = outs.at(0).values();
    const zoo::AlignedFace a = zoo::align_face(raw, h.rect, f->image->width, f->image->height);
    std::vector<float> v(kLmSize);
    v[kLmBox + 0] = float(h.rect.x);
    v[kLmBox + 1] = float(h.rect.y);
    v[kLmBox + 2] = float(h.rect.width);
    v[kLmBox + 3] = float(h.rect.height);
    v[kLmBox + 4] = float(h.score);
    for (int i = 0; i < zoo::kFaceLandmarkCount; ++i) {
      v[static_cast<std::size_t>(kLmPoints + 2 * i)] = float(a.landmarks[static_cast<std::size_t>(i)].x);
      v[static_cast<std::size_t>(kLmPoints + 2 * i + 1)] = float(a.landmarks[static_cast<std::size_t>(i)].y);
    }
    const FaceRect* rs[2] = {&a.aligned_rect, &a.descriptor_rect};
    for (int k = 0; k < 2; ++k) {
      const int o = k == 0 ? kLmAligned : kLmDesc;
      v[static_cast<std::size_t>(o + 0)] = float(rs[k]->x);
      v[static_cast<std::size_t>(o + 1)] = float(rs[k]->y);
      v[static_cast<std::size_t>(o + 2)] = float(rs[k]->width);
      v[static_cast<std::size_t>(o + 3)] = float(rs[k]->height);
    }
    return std::vector<Tensor>{Tensor::from(Shape{kLmSize}, v)};
  };
  // face-api crops the descriptor input with the dlib alignment and the age/gender and
  // expression inputs with the landmarks' padded bounding box; a crop that falls outside the
  // frame falls back to the detection box.
  auto crop_fanout = [fs](int offset) {
    return [fs, offset](const StageView& v) {
      const Handle h = read_handle(v.input);
      auto f = fs->get(h.frame);
      auto o = v.outputs.at(0).values();
      FaceRect r{o[static_cast<std::size_t>(offset)], o[static_cast<std::size_t>(offset + 1)],
                 o[static_cast<std::size_t>(offset + 2)], o[static_cast<std::size_t>(offset + 3)]};
      if (!usable(r, f->image->width, f->image->height)) r = h.rect;
      return std::vector<Tensor>{make_handle(h.frame, r, h.score)};
    };
  };
  lm.children.push_back({.stage = "recognize", .fanout = crop_fanout(kLmDesc), .expected_fanout = 1});
  lm.children.push_back({.stage = "age_gender", .fanout = crop_fanout(kLmAligned), .expected_fanout = 1});
  lm.children.push_back({.stage = "expression", .fanout = crop_fanout(kLmAligned), .expected_fanout = 1});
  q.stages.push_back(std::move(lm));

  auto crop_pre = [fs](int size) {
    return [fs, size](const Tensor& in) {
      const Handle h = read_handle(in);
      auto f = fs->get(h.frame);
      return zoo::face_net_input(zoo::extract_face(*f->image, h.rect), size);
    };
  };
  StageSpec rec;
  rec.name = "recognize";
  rec.model = recognition_model;
  rec.preprocess = crop_pre(zoo::kFaceRecognitionInputSize);
  q.stages.push_back(std::move(rec));
  StageSpec ag;
  ag.name = "age_gender";
  ag.model = kModelAgeGender;
  ag.preprocess = crop_pre(zoo::kAgeGenderInputSize);
  q.stages.push_back(std::move(ag));
  StageSpec ex;
  ex.name = "expression";
  ex.model = kModelExpression;
  ex.preprocess = crop_pre(zoo::kFaceExpressionInputSize);
  q.stages.push_back(std::move(ex));
  return q;
}

nexus::QuerySpec make_schedule_query(const std::string& name, PipelineKind kind,
                                     std::chrono::microseconds slo, double rate_rps,
                                     double faces_per_frame) {
  nexus::QuerySpec q;
  q.id = name;
  q.slo = slo;
  q.rate_rps = std::max(rate_rps, 0.05);
  const double faces = std::max(faces_per_frame, 0.05);
  if (kind == PipelineKind::kTiled)
    q.stages.push_back({"tile", kModelTile, {{"detect", 4.0}}});
  q.stages.push_back({"detect", kModelDetector,
                      {{"landmarks", kind == PipelineKind::kTiled ? faces / 4.0 : faces}}});
  q.stages.push_back({"landmarks", kModelLandmarks,
                      {{"recognize", 1.0}, {"age_gender", 1.0}, {"expression", 1.0}}});
  q.stages.push_back({"recognize", kModelRecognition, {}});
  q.stages.push_back({"age_gender", kModelAgeGender, {}});
  q.stages.push_back({"expression", kModelExpression, {}});
  return q;
}

namespace {

// Least time of one frame alone in the query, with its fan-out (the pre-check's rule (2), see
// va.hpp). `why` gets the per-stage terms.
std::chrono::microseconds least_frame_time(const nexus::QuerySpec& q,
                                           const nexus::ProfileMap& profiles, int devices,
                                           std::string* why);

}  // namespace

bool slo_accepted(const nexus::QuerySpec& q, const nexus::ProfileMap& profiles, int devices) {
  if (least_frame_time(q, profiles, devices, nullptr) > q.slo) return false;
  try {
    nexus::QueryPlanner().split(q, profiles);
    return true;
  } catch (const nexus::InfeasibleSlo&) {
    return false;
  }
}

std::int64_t smallest_accepted_slo_ms(nexus::QuerySpec q, const nexus::ProfileMap& profiles,
                                      int devices) {
  auto ok = [&](std::int64_t ms) {
    q.slo = std::chrono::milliseconds(ms);
    return slo_accepted(q, profiles, devices);
  };
  std::int64_t hi = 1;
  while (!ok(hi)) {
    NEXUS_CHECK(hi < (std::int64_t{1} << 30), "query '{}': no SLO up to {} ms is accepted", q.id,
                hi);
    hi *= 2;
  }
  std::int64_t lo = hi / 2;  // not accepted (or 0)
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    (ok(mid) ? hi : lo) = mid;
  }
  return hi;
}

std::string explain_infeasible_slo(const nexus::QuerySpec& q, const nexus::ProfileMap& profiles,
                                   int devices) {
  if (slo_accepted(q, profiles, devices)) return "";
  std::string terms;
  const auto least = least_frame_time(q, profiles, devices, &terms);
  // Least budget per stage: 2 l(1) + pre + post (the saturated rule at batch 1).
  std::string worst;
  std::chrono::microseconds worst_need{0};
  for (const auto& s : q.stages) {
    const auto& p = profiles.at(s.model);
    const auto n = 2 * p.latency(1) + p.preprocess() + p.postprocess();
    if (n > worst_need) {
      worst_need = n;
      worst = s.id;
    }
  }
  return fmt::format(
      "query '{}': the SLO of {:.0f} ms cannot be met on this device. Stage '{}' alone needs at "
      "least {:.0f} ms (2 x l(1) + pre/post-processing, from the measured profile), and one frame "
      "with its fan-out needs at least {:.0f} ms ({}). The smallest SLO accepted is --slo {}.",
      q.id, q.slo.count() / 1e3, worst, worst_need.count() / 1e3, least.count() / 1e3, terms,
      smallest_accepted_slo_ms(q, profiles, devices));
}

namespace {

// Root-to-leaf paths of a tree query, as stage indices.
void paths_from(const nexus::QuerySpec& q, std::size_t u, std::vector<std::size_t>& path,
                std::vector<std::vector<std::size_t>>& out) {
  path.push_back(u);
  const auto& st = q.stages[u];
  if (st.children.empty()) out.push_back(path);
  for (const auto& c : st.children)
    for (std::size_t v = 0; v < q.stages.size(); ++v)
      if (q.stages[v].id == c.stage) paths_from(q, v, path, out);
  path.pop_back();
}

std::vector<std::vector<std::size_t>> paths_of(const nexus::QuerySpec& q) {
  std::vector<std::size_t> path;
  std::vector<std::vector<std::size_t>> out;
  paths_from(q, 0, path, out);
  return out;
}

std::chrono::microseconds least_frame_time(const nexus::QuerySpec& q,
                                           const nexus::ProfileMap& profiles, int devices,
                                           std::string* why) {
  const auto rates = nexus::QueryPlanner::stage_rates(q);
  std::map<std::string, std::chrono::microseconds> cost;
  for (const auto& s : q.stages) {
    const auto& p = profiles.at(s.model);
    const double per_frame = rates.at(s.id) / q.rate_rps;
    const int n = std::max(1, static_cast<int>(std::ceil(per_frame - 1e-9)));
    const int b = std::min(n, p.max_batch());
    const int rounds = (n + b - 1) / b;
    cost[s.id] = rounds * p.latency(b) + n * (p.preprocess() + p.postprocess());
    if (why)
      *why += fmt::format("{}{} {} item{} {:.0f} ms", why->empty() ? "" : " + ", s.id, n,
                          n == 1 ? "" : "s", cost[s.id].count() / 1e3);
  }
  std::chrono::microseconds total{0};
  if (devices <= 1) {  // one device: the stages of the frame take turns on it
    for (const auto& [id, c] : cost) total += c;
    if (why) *why += " on one device";
  } else {
    for (const auto& path : paths_of(q)) {
      std::chrono::microseconds sum{0};
      for (auto u : path) sum += cost.at(q.stages[u].id);
      total = std::max(total, sum);
    }
    if (why) *why += "; the longest path counts";
  }
  return total;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Results

std::vector<FaceResult> faces_of(const nexus::runtime::QueryResult& r) {
  std::vector<FaceResult> faces;
  std::map<int, std::size_t> by_item;  // landmarks stage index -> face
  for (std::size_t i = 0; i < r.stages.size(); ++i) {
    const auto& s = r.stages[i];
    if (s.stage != "landmarks" || s.outputs.empty() || s.outputs[0].numel() != kLmSize) continue;
    auto v = s.outputs[0].values();
    FaceResult f;
    f.box = {v[0], v[1], v[2], v[3]};
    f.score = v[4];
    for (int k = 0; k < zoo::kFaceLandmarkCount; ++k)
      f.landmarks.push_back({v[static_cast<std::size_t>(kLmPoints + 2 * k)],
                             v[static_cast<std::size_t>(kLmPoints + 2 * k + 1)]});
    by_item[static_cast<int>(i)] = faces.size();
    faces.push_back(std::move(f));
  }
  for (const auto& s : r.stages) {
    auto it = by_item.find(s.parent);
    if (it == by_item.end()) continue;
    FaceResult& f = faces[it->second];
    if (s.stage == "recognize" && !s.outputs.empty()) {
      auto d = s.outputs[0].values();
      f.descriptor.assign(d.begin(), d.end());
      f.has_descriptor = true;
      if (s.outputs.size() >= 2) {  // a tenant's identity head: its scores
        auto sc = s.outputs[1].values();
        f.head_scores.assign(sc.begin(), sc.end());
      }
    } else if (s.stage == "age_gender" && s.outputs.size() >= 2) {
      const auto ag = zoo::decode_age_gender(s.outputs[0].values(), s.outputs[1].values());
      f.has_age_gender = true;
      f.age = ag.age;
      f.gender = zoo::gender_name(ag.gender);
      f.gender_probability = ag.gender_probability;
    } else if (s.stage == "expression" && !s.outputs.empty()) {
      auto p = s.outputs[0].values();
      const int k = zoo::top_face_expression(p);
      f.has_expression = true;
      f.expression = std::string(zoo::kFaceExpressionLabels[static_cast<std::size_t>(k)]);
      f.expression_probability = p[static_cast<std::size_t>(k)];
    }
  }
  std::sort(faces.begin(), faces.end(),
            [](const FaceResult& a, const FaceResult& b) { return a.box.x < b.box.x; });
  return faces;
}

GalleryMatch Gallery::match(const std::vector<float>& d, double threshold,
                            const std::string& exclude_photo) const {
  GalleryMatch m{"unknown", "", 1e9};
  for (const auto& e : entries) {
    if (!exclude_photo.empty() && e.photo == exclude_photo) continue;
    const double x = zoo::face_distance(d, e.descriptor);
    if (x < m.distance) {
      m.distance = x;
      m.nearest = e.label;
    }
  }
  if (m.distance < threshold) m.identity = m.nearest;
  return m;
}

std::vector<TenantHead> make_tenant_heads(const Gallery& gallery, int tenants,
                                          const nexus::model::Graph& backbone) {
  NEXUS_CHECK(!gallery.entries.empty(),
              "--tenant-heads: the gallery found no face on the demo photos (expected the photos "
              "of data/face-api/demo; run scripts/fetch_data.sh), so no tenant can enrol anyone");
  NEXUS_CHECK(tenants >= 1, "--tenant-heads: {} tenants (expected at least 1)", tenants);
  std::vector<std::string> photos;  // in file-name order
  for (const auto& e : gallery.entries)
    if (std::find(photos.begin(), photos.end(), e.photo) == photos.end()) photos.push_back(e.photo);
  std::sort(photos.begin(), photos.end());
  std::vector<TenantHead> heads;
  for (int t = 0; t < tenants; ++t) {
    TenantHead h;
    h.tenant = t;
    zoo::IdentityHead ih;
    ih.tenant = fmt::format("t{}", t);
    const bool all = t >= static_cast<int>(photos.size());
    for (const auto& e : gallery.entries) {
      const auto p =
          static_cast<int>(std::find(photos.begin(), photos.end(), e.photo) - photos.begin());
      if (!all && p % tenants != t) continue;
      const std::vector<float>* one = &e.descriptor;
      ih.labels.push_back(e.label);
      ih.class_means.push_back(zoo::class_mean(std::span(one, 1)));  // one face per class
    }
    h.labels = ih.labels;
    h.class_means = ih.class_means;
    h.graph = std::make_shared<nexus::model::Graph>(zoo::with_identity_head(backbone, ih));
    h.model = fmt::format("{}/t{}", kModelRecognition, t);
    heads.push_back(std::move(h));
  }
  return heads;
}

HeadMatch match_head(const TenantHead& head, const std::vector<float>& scores,
                     const std::vector<float>& descriptor, double threshold) {
  NEXUS_CHECK(scores.size() == head.labels.size(),
              "tenant t{} head: {} scores (expected one per enrolled class, {})", head.tenant,
              scores.size(), head.labels.size());
  HeadMatch m{"unknown", "", 0.0, 0.0};
  if (scores.empty()) return m;
  const auto best =
      static_cast<std::size_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
  double d2 = 0;
  for (float v : descriptor) d2 += double(v) * v;
  m.nearest = head.labels[best];
  m.score = scores[best];
  m.distance = std::sqrt(std::max(0.0, d2 - m.score));
  if (m.distance < threshold) m.identity = m.nearest;
  return m;
}

const GalleryEntry* Gallery::find(const std::string& label) const {
  for (const auto& e : entries)
    if (e.label == label) return &e;
  return nullptr;
}

}  // namespace va
