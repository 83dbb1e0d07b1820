// Collector: results -> counts, latencies, time series, annotated frames, table, JSON, plots.

#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace va {

using nexus::runtime::QueryResult;
using nexus::runtime::RequestStatus;

namespace {

double ms_between(TimePoint a, TimePoint b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Exact percentile of unsorted samples (nearest rank).
double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * double(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

void bump(std::vector<double>& series, double t_s, double by = 1.0) {
  if (t_s < 0) t_s = 0;
  const auto k = static_cast<std::size_t>(t_s);
  if (k > 100000) return;
  if (series.size() <= k) series.resize(k + 1, 0.0);
  series[k] += by;
}

nlohmann::json face_json(const FaceResult& f) {
  nlohmann::json j;
  j["box"] = {std::round(f.box.x * 10) / 10, std::round(f.box.y * 10) / 10,
              std::round(f.box.width * 10) / 10, std::round(f.box.height * 10) / 10};
  j["score"] = f.score;
  if (f.too_small) {  // the nets' answers on a few upsampled pixels are not claimed
    j["too_small"] = true;
    j["size_px"] = std::round(std::min(f.box.width, f.box.height));
    return j;
  }
  if (f.has_descriptor) {
    j["identity"] = f.identity;
    j["nearest"] = f.nearest;
    j["distance"] = f.distance;
  }
  if (f.has_age_gender) {
    j["age"] = f.age;
    j["gender"] = f.gender;
    j["gender_probability"] = f.gender_probability;
  }
  if (f.has_expression) {
    j["expression"] = f.expression;
    j["expression_probability"] = f.expression_probability;
  }
  return j;
}

// One finished video frame for report.json's "frames": which, when, its outcome.
nlohmann::json frame_json(const StreamRecord& s, const QueryResult& r, const Frame& f) {
  nlohmann::json j;
  j["stream"] = s.name;
  j["frame"] = f.index;
  j["status"] = std::string(nexus::runtime::to_string(r.status));
  if (r.status != RequestStatus::kCompleted)
    j["reason"] = std::string(nexus::runtime::to_string(r.reason));
  else {
    j["latency_ms"] = std::round(ms_between(r.submitted, r.finished) * 10) / 10;
    j["met_slo"] = r.met_slo;
  }
  return j;
}

// --tenant-heads: what the tenant's head said of one face, the same question asked of the
// gallery (nearest enrolled descriptor of this tenant, in double), and the descriptor itself (so
// that a reader can check both). Counts the comparison in `check`.
nlohmann::json head_face_json(const TenantHead& head, const FaceResult& face, double threshold,
                              Collector::HeadCheck& check) {
  const HeadMatch hm = match_head(head, face.head_scores, face.descriptor, threshold);
  // The gallery's answer over the tenant's enrolled faces: nearest by Euclidean distance.
  double best = 1e300, second = 1e300;
  std::size_t bi = 0;
  for (std::size_t c = 0; c < head.class_means.size(); ++c) {
    double d2 = 0;
    for (std::size_t k = 0; k < face.descriptor.size(); ++k) {
      const double x = double(face.descriptor[k]) - double(head.class_means[c][k]);
      d2 += x * x;
    }
    const double d = std::sqrt(d2);
    if (d < best) {
      second = best;
      best = d;
      bi = c;
    } else if (d < second) {
      second = d;
    }
  }
  const std::string& gallery_nearest = head.labels[bi];
  const bool agrees = hm.nearest == gallery_nearest;
  ++check.faces;
  if (agrees) {
    ++check.agree;
    check.max_distance_error = std::max(check.max_distance_error, std::abs(hm.distance - best));
  } else if (second - best < 1e-4) {
    ++check.near_ties;
  }
  nlohmann::json j;
  j["model"] = head.model;
  j["identity"] = std::min(face.box.width, face.box.height) < kMinFacePx ? "unknown" : hm.identity;
  j["nearest"] = hm.nearest;
  j["distance"] = hm.distance;
  j["gallery_nearest"] = gallery_nearest;
  j["gallery_distance"] = best;
  j["gallery_margin"] = second < 1e300 ? second - best : 0.0;
  j["agrees"] = agrees;
  j["descriptor"] = face.descriptor;
  return j;
}

nlohmann::json with_head(nlohmann::json face, const nlohmann::json& head) {
  if (!head.is_null()) face["tenant_head"] = head;
  return face;
}

const char* const kStageOrder[] = {"tile", "detect", "landmarks", "recognize", "age_gender",
                                   "expression"};

std::string stage_of(const std::string& session) {
  auto p = session.find('/');
  return p == std::string::npos ? session : session.substr(p + 1);
}

}  // namespace

Collector::Collector(std::vector<StreamRecord> streams, const Gallery* gallery, FrameStore* store,
                     fs::path annotate_dir, int annotate_per_stream,
                     std::chrono::microseconds slo, double match_threshold,
                     std::vector<TenantHead> heads)
    : streams_(std::move(streams)),
      gallery_(gallery),
      store_(store),
      annotate_dir_(std::move(annotate_dir)),
      annotate_per_stream_(annotate_per_stream),
      slo_(slo),
      match_threshold_(match_threshold),
      heads_(std::move(heads)) {}

void Collector::on_submit(nexus::runtime::RequestId id, std::shared_ptr<const Frame> frame,
                          TimePoint at) {
  std::lock_guard lock(mu_);
  ++totals_.submitted;
  auto& s = streams_.at(static_cast<std::size_t>(frame->stream));
  ++s.submitted;
  bump(offered_, std::chrono::duration<double>(at - t0_).count());
  if (auto it = early_.find(id); it != early_.end()) {
    QueryResult r = std::move(it->second);
    early_.erase(it);
    record_locked(r, frame);
    return;
  }
  pending_[id] = {std::move(frame), at};
}

void Collector::on_result(QueryResult r) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(r.id);
  if (it == pending_.end()) {  // its submit() has not returned to the stream thread yet
    early_.emplace(r.id, std::move(r));
    return;
  }
  auto f = std::move(it->second.frame);
  pending_.erase(it);
  record_locked(r, f);
}

void Collector::record_locked(const QueryResult& r, const std::shared_ptr<const Frame>& f) {
  auto& s = streams_.at(static_cast<std::size_t>(f->stream));
  ++totals_.finished;
  const double t_fin = std::chrono::duration<double>(r.finished - t0_).count();
  for (const auto& st : r.stages)
    stage_ms_[st.stage].push_back(ms_between(st.enqueued, st.finished));
  switch (r.status) {
    case RequestStatus::kCompleted: {
      ++totals_.completed;
      ++s.completed;
      bump(served_, t_fin);
      const double lat = ms_between(r.submitted, r.finished);
      latency_ms_.push_back(lat);
      s.latency_ms.push_back(lat);
      if (r.met_slo) {
        ++totals_.good;
        ++s.good;
        bump(good_, t_fin);
      }
      auto faces = faces_of(r);
      std::vector<nlohmann::json> head_json(faces.size());
      const TenantHead* head =
          heads_.empty() ? nullptr : &heads_.at(static_cast<std::size_t>(s.tenant));
      for (std::size_t i = 0; i < faces.size(); ++i) {
        const FaceResult& face = faces[i];
        if (!head || !face.has_descriptor || face.head_scores.empty()) continue;
        head_json[i] = head_face_json(*head, face, match_threshold_, head_check_);
      }
      for (auto& face : faces) {
        // A face a few pixels wide (vtest's pedestrians, upsampled to 112-150 px for the nets)
        // gets no identity, age, gender or expression: see kMinFacePx.
        face.too_small = std::min(face.box.width, face.box.height) < kMinFacePx;
        if (face.has_descriptor && gallery_) {
          // A demo photo is matched against the faces enrolled from the other photos.
          const auto m = gallery_->match(face.descriptor, match_threshold_,
                                         s.kind == "photos" ? f->source : std::string());
          face.identity = face.too_small ? "unknown" : m.identity;
          face.nearest = m.nearest;
          face.distance = m.distance;
        }
      }
      s.faces += faces.size();
      if (s.kind == "photos" && !photos_.count(f->source)) {
        nlohmann::json j;
        j["file"] = f->source;
        j["width"] = f->image->width;
        j["height"] = f->image->height;
        j["faces"] = nlohmann::json::array();
        for (std::size_t i = 0; i < faces.size(); ++i)
          j["faces"].push_back(with_head(face_json(faces[i]), head_json[i]));
        if (head) j["tenant"] = fmt::format("t{}", s.tenant);
        photos_[f->source] = j;
      }
      if (s.kind == "video") {
        nlohmann::json fr = frame_json(s, r, *f);
        fr["faces"] = nlohmann::json::array();
        for (std::size_t i = 0; i < faces.size(); ++i)
          fr["faces"].push_back(with_head(face_json(faces[i]), head_json[i]));
        if (head) fr["tenant"] = fmt::format("t{}", s.tenant);
        frames_.push_back(std::move(fr));
      }
      // Annotate the first completed frame of each stream, then frames with faces; never a frame
      // without content (the black first frame of Megamind.avi).
      const bool want = !annotate_dir_.empty() && s.annotated < annotate_per_stream_ &&
                        (!s.annotated_any || !faces.empty()) &&
                        (s.kind != "photos" || !faces.empty()) && has_content(*f->image);
      if (want) {
        std::string safe = s.name;
        std::replace(safe.begin(), safe.end(), '#', '_');
        const fs::path file =
            annotate_dir_ / fmt::format("{}_{}_{:05d}.png", safe,
                                        fs::path(f->source).stem().string(), f->index);
        const std::string title = fmt::format(
            "{}  {} frame {}{}  {} face(s)  latency {:.0f} ms (SLO {:.0f} ms)", s.name, f->source,
            f->index, s.pipeline == "tiled" ? " (detected on 2x2 tiles)" : "", faces.size(), lat,
            slo_.count() / 1e3);
        try {
          write_annotated(*f->image, faces, title, file, s.pipeline == "tiled");
          annotated_.push_back(file.string());
          ++s.annotated;
          s.annotated_any = true;
        } catch (const std::exception& e) {
          std::cerr << "annotation: " << e.what() << "\n";
        }
      }
      break;
    }
    case RequestStatus::kDropped: ++totals_.dropped; ++s.dropped; bump(lost_, t_fin); break;
    case RequestStatus::kRejected: ++totals_.rejected; ++s.rejected; bump(lost_, t_fin); break;
    case RequestStatus::kFailed:
      ++totals_.failed;
      ++s.failed;
      bump(lost_, t_fin);
      if (s.failed <= 3)
        std::cerr << fmt::format("\n{}: frame {} failed in stage '{}': {}\n", s.name, f->index,
                                 r.stage, r.message);
      break;
  }
  if (r.status != RequestStatus::kCompleted) {
    const std::string reason(nexus::runtime::to_string(r.reason));
    ++reasons_[reason];
    ++s.reasons[reason];
    if (s.kind == "video") frames_.push_back(frame_json(s, r, *f));
  }
  store_->erase(f->id);
}

std::uint64_t Collector::submitted() const {
  std::lock_guard lock(mu_);
  return totals_.submitted;
}

std::uint64_t Collector::finished() const {
  std::lock_guard lock(mu_);
  return totals_.finished;
}

Collector::Totals Collector::totals() const {
  std::lock_guard lock(mu_);
  return totals_;
}

Collector::Summary Collector::summary() const {
  std::lock_guard lock(mu_);
  Summary s;
  s.totals = totals_;
  s.good_rate = totals_.submitted ? double(totals_.good) / double(totals_.submitted) : 0.0;
  s.p50_ms = percentile(latency_ms_, 0.5);
  s.p99_ms = percentile(latency_ms_, 0.99);
  return s;
}

std::vector<std::string> Collector::annotated_files() const {
  std::lock_guard lock(mu_);
  return annotated_;
}

Collector::HeadCheck Collector::head_check() const {
  std::lock_guard lock(mu_);
  return head_check_;
}

namespace {

// One member session of a prefix group: its part of the merged batches (the engine counts a
// member's batch sizes as its slice of each merged batch it was in).
struct MemberPart {
  std::string session;
  std::uint64_t items = 0, batches = 0;
  int max_part = 0;
  double mean_part() const { return batches ? double(items) / double(batches) : 0.0; }
};

// The sessions of a group's members: those the current plan runs in it, and (--tenant-heads) each
// tenant query's recognize stage whose head is a member, also when the last plan left the group
// out (rejected: its earlier batches still count).
std::vector<std::string> member_sessions(const nexus::runtime::PrefixGroupMetricsSnapshot& g,
                                         const std::vector<StreamRecord>& streams,
                                         const std::vector<TenantHead>& heads) {
  std::set<std::string> ids(g.sessions.begin(), g.sessions.end());
  if (!heads.empty())
    for (const auto& s : streams) {
      const auto& model = heads.at(static_cast<std::size_t>(s.tenant)).model;
      if (std::find(g.members.begin(), g.members.end(), model) != g.members.end())
        ids.insert(s.query + "/recognize");
    }
  return {ids.begin(), ids.end()};
}

std::vector<MemberPart> member_parts(const std::vector<std::string>& sessions,
                                     const nexus::runtime::EngineStats& stats) {
  std::vector<MemberPart> out;
  for (const auto& id : sessions) {
    MemberPart p;
    p.session = id;
    if (auto it = stats.sessions.find(id); it != stats.sessions.end())
      for (auto [b, n] : it->second.batch_sizes) {
        if (!n) continue;
        p.items += n * static_cast<std::uint64_t>(b);
        p.batches += n;
        p.max_part = std::max(p.max_part, b);
      }
    out.push_back(p);
  }
  return out;
}

// The largest part any member had in one batch, and the members' mean part (items / the batches
// they were in, over all members).
std::pair<int, double> largest_and_mean_part(const std::vector<MemberPart>& parts) {
  int hi = 0;
  std::uint64_t items = 0, batches = 0;
  for (const auto& p : parts) {
    hi = std::max(hi, p.max_part);
    items += p.items;
    batches += p.batches;
  }
  return {hi, batches ? double(items) / double(batches) : 0.0};
}

std::string fmt_hist(const std::map<int, std::uint64_t>& h) {
  std::string out;
  for (auto [b, n] : h)
    if (n) out += fmt::format("{}{}x{}", out.empty() ? "" : " ", n, b);
  return out.empty() ? "-" : out;
}

// Per-stage aggregate over the sessions of all queries (tenants) from the engine's metrics.
struct StageAgg {
  std::uint64_t arrivals = 0, completions = 0, good = 0, batches = 0;
  std::map<std::string, std::uint64_t> drops;
  std::map<int, std::uint64_t> batch_sizes;
};

// Fewer than half of a stream's frames completed within the SLO.
bool mostly_lost(const StreamRecord& s) { return s.submitted > 0 && 2 * s.good < s.submitted; }

std::map<std::string, StageAgg> aggregate(const nexus::runtime::EngineStats& stats) {
  std::map<std::string, StageAgg> out;
  for (const auto& [id, m] : stats.sessions) {
    auto& a = out[stage_of(id)];
    a.arrivals += m.arrivals;
    a.completions += m.completions;
    a.good += m.good;
    a.batches += m.batches;
    for (const auto& [r, n] : m.drops)
      if (n) a.drops[r] += n;
    for (const auto& [b, n] : m.batch_sizes)
      if (n) a.batch_sizes[b] += n;
  }
  return out;
}

std::string fmt_batches(const std::map<int, std::uint64_t>& h) {
  std::uint64_t n = 0, sum = 0;
  int lo = 1 << 30, hi = 0;
  for (auto [b, c] : h) {
    if (!c) continue;
    n += c;
    sum += c * static_cast<std::uint64_t>(b);
    lo = std::min(lo, b);
    hi = std::max(hi, b);
  }
  if (!n) return "-";
  return fmt::format("{:.1f} ({}-{})", double(sum) / double(n), lo, hi);
}

std::string fmt_drops(const std::map<std::string, std::uint64_t>& d) {
  std::string s;
  for (const auto& [r, n] : d) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", r, n);
  return s.empty() ? "-" : s;
}

}  // namespace

void Collector::print_table(std::ostream& out, const nexus::runtime::EngineStats& stats,
                            const nexus::Plan& plan, const std::string& device,
                            const std::vector<std::string>& left_out) const {
  std::lock_guard lock(mu_);
  const auto agg = aggregate(stats);
  out << "\nPer stage (all tenants; latency = queued -> post-processed, per item)\n";
  out << fmt::format("  {:<11} {:>8} {:>9} {:>14} {:>9} {:>9} {:>8}  {}\n", "stage", "requests",
                     "completed", "batch mean", "p50 ms", "p99 ms", "good", "drops by reason");
  for (const char* st : kStageOrder) {
    auto it = agg.find(st);
    if (it == agg.end()) continue;
    const auto& a = it->second;
    auto lat = stage_ms_.find(st);
    const std::vector<double> none;
    const auto& v = lat == stage_ms_.end() ? none : lat->second;
    out << fmt::format("  {:<11} {:>8} {:>9} {:>14} {:>9.1f} {:>9.1f} {:>7.1f}%  {}\n", st,
                       a.arrivals, a.completions, fmt_batches(a.batch_sizes),
                       percentile(v, 0.5), percentile(v, 0.99),
                       a.arrivals ? 100.0 * double(a.good) / double(a.arrivals) : 0.0,
                       fmt_drops(a.drops));
  }
  out << fmt::format("  {:<11} {:>8} {:>9} {:>14} {:>9.1f} {:>9.1f} {:>7.1f}%  {}\n", "end-to-end",
                     totals_.submitted, totals_.completed, "", percentile(latency_ms_, 0.5),
                     percentile(latency_ms_, 0.99),
                     totals_.submitted ? 100.0 * double(totals_.good) / double(totals_.submitted)
                                       : 0.0,
                     fmt_drops(reasons_));

  out << fmt::format("\nPlan (Scheduler: QueryPlanner SLO split + squishy bin packing over the "
                     "profiles measured on {})\n",
                     device);
  const std::size_t ndev = std::max<std::size_t>(1, stats.devices.size());
  auto device_of = [&](int slot) {
    return stats.devices.empty() ? std::string("?")
                                 : stats.devices[static_cast<std::size_t>(slot) % ndev].name;
  };
  for (const auto& g : plan.gpus) {
    out << fmt::format("  slot {} -> {}: duty cycle {:.1f} ms, planned occupancy {:.0f}%{}\n",
                       g.gpu, device_of(g.gpu), g.duty_cycle.count() / 1e3, 100 * g.occupancy,
                       g.saturated ? " (saturated)" : "");
    for (const auto& a : g.sessions) {
      // The budget the engine gives the stage (Plan::stage_budgets), as in report.json.
      auto it = plan.stage_budgets.find(a.session);
      const auto budget = it != plan.stage_budgets.end() ? it->second : a.slo;
      out << fmt::format("      {:<24} batch {:>2}  l(b) {:>7.1f} ms  rate {:>6.2f}/s  stage "
                         "budget {:>7.1f} ms\n",
                         a.session, a.batch, a.latency.count() / 1e3, a.rate_rps,
                         budget.count() / 1e3);
    }
  }
  // The last plan's admission decisions. A session admitted in part still runs (at the served
  // rate), and one rejected by the last plan may have run under an earlier one: say which, so a
  // "rejected" line never stands beside a stage whose items completed without explanation.
  for (const auto& r : plan.rejected) {
    if (r.served_rps > 0) {
      out << fmt::format("  admitted in part: {} ({:.2f} of {:.2f} req/s served): {}\n", r.session,
                         r.served_rps, r.demanded_rps, r.reason);
      continue;
    }
    std::string earlier;
    if (auto it = stats.sessions.find(r.session); it != stats.sessions.end() && it->second.completions > 0)
      earlier = fmt::format(" (its {} completed items ran under an earlier plan)", it->second.completions);
    out << fmt::format("  rejected by the last plan: {}: {}{}\n", r.session, r.reason, earlier);
  }
  out << "\nDevices (occupancy = share of time running batches: planned = sum over the device's "
         "slots of l(b)/d\nwith full batches every duty cycle; measured = time in the backend / "
         "serving time)\n";
  for (std::size_t d = 0; d < stats.devices.size(); ++d) {
    const auto& dev = stats.devices[d];
    double planned = 0.0;
    std::string slots;
    for (const auto& g : plan.gpus)
      if (static_cast<std::size_t>(g.gpu) % ndev == d) {
        planned += g.occupancy;
        slots += fmt::format("{}{}", slots.empty() ? "" : ",", g.gpu);
      }
    out << fmt::format("  {:<8} occupancy planned {:5.1f}% (slot{} {})  measured {:5.1f}%  busy "
                       "{:.1f} s  batches {}  items {}\n",
                       dev.name, 100 * planned, slots.find(',') == std::string::npos ? "" : "s",
                       slots.empty() ? "-" : slots, 100 * dev.occupancy, dev.busy_seconds,
                       dev.batches, dev.items);
  }
  if (!stats.prefix_groups.empty()) {
    out << "\nPrefix groups (prefix batching, paper §6.3: models sharing a prefix of identical layers "
           "run it once on the merged batch of all members' requests, then each member's suffix on "
           "its slice)\n";
    for (const auto& [key, g] : stats.prefix_groups) {
      std::string members;
      for (const auto& m : g.members) members += (members.empty() ? "" : ", ") + m;
      out << fmt::format("  {}: {} member(s): {}\n", key, g.members.size(), members);
      out << fmt::format("    weights: shared prefix {:.1f} MB held once; merged runner {:.1f} MB vs "
                         "{:.1f} MB for the members one by one\n",
                         g.shared_weight_bytes / 1e6, g.weights_bytes / 1e6,
                         g.unshared_weights_bytes / 1e6);
      const auto parts = member_parts(member_sessions(g, streams_, heads_), stats);
      const auto [max_part, mean_part] = largest_and_mean_part(parts);
      out << fmt::format("    merged batches {}  items {}  merged batch size mean {:.2f}  max {}  "
                         "(members' parts: mean {:.2f}, max {})\n",
                         g.batches, g.items, g.mean_batch, g.max_batch_seen, mean_part, max_part);
      out << fmt::format("    merged batch sizes (count x size): {}\n", fmt_hist(g.batch_sizes));
      for (const auto& p : parts)
        out << fmt::format("    {:<26} items {:>5} ({:5.1f}% of the group's) in {:>4} merged batches, "
                           "part mean {:.2f}, max {}\n",
                           p.session, p.items,
                           g.items ? 100.0 * double(p.items) / double(g.items) : 0.0,
                           p.batches, p.mean_part(), p.max_part);
    }
  }
  if (head_check_.faces > 0)
    out << fmt::format("\nTenant identity heads: {} face(s); the head's best class is the gallery's "
                       "nearest enrolled face of that tenant for {} ({} near-tie(s) where they "
                       "differ); largest distance difference {:.2g}\n",
                       head_check_.faces, head_check_.agree, head_check_.near_ties,
                       head_check_.max_distance_error);
  out << "\nStreams\n";
  out << fmt::format("  {:<12} {:<8} {:>6} {:>9} {:>5} {:>7} {:>8} {:>6} {:>6} {:>9} {:>9}\n",
                     "stream", "pipeline", "fps", "submitted", "good", "dropped", "rejected",
                     "failed", "faces", "p50 ms", "p99 ms");
  for (const auto& s : streams_)
    out << fmt::format("  {:<12} {:<8} {:>6.2f} {:>9} {:>5} {:>7} {:>8} {:>6} {:>6} {:>9.0f} {:>9.0f}{}\n",
                       s.name, s.pipeline, s.fps, s.submitted, s.good, s.dropped, s.rejected,
                       s.failed, s.faces, percentile(s.latency_ms, 0.5),
                       percentile(s.latency_ms, 0.99),
                       mostly_lost(s) ? "  <- mostly not served (warning below)" : "");
  for (const auto& l : left_out)
    out << fmt::format("  {:<12} not served: {}\n", l.substr(0, l.find(':')),
                       l.substr(std::min(l.size(), l.find(':') + 2)));
}

std::vector<std::string> Collector::warnings() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> w;
  for (const auto& s : streams_) {
    if (!mostly_lost(s)) continue;
    std::string lost;  // the non-zero outcomes, then the reasons
    for (auto [what, n] : {std::pair<const char*, std::uint64_t>{"dropped", s.dropped},
                           {"rejected", s.rejected},
                           {"failed", s.failed},
                           {"late", s.completed - s.good}})
      if (n) lost += fmt::format("{}{} {}", lost.empty() ? "" : ", ", n, what);
    std::string why;
    for (const auto& [r, n] : s.reasons) why += fmt::format("{}{} {}", why.empty() ? "" : ", ", r, n);
    w.push_back(fmt::format(
        "stream {}: only {} of {} frame(s) completed within the {:.0f} ms SLO ({}{}{}); {}",
        s.name, s.good, s.submitted, slo_.count() / 1e3, lost, why.empty() ? "" : "; reasons: ",
        why,
        s.failed > 0 ? "see the failure messages above"
                     : "the device cannot keep up with it: raise --slo or lower its fps "
                       "(<stream>@<fps>)"));
  }
  return w;
}

std::string Collector::headline(const nexus::runtime::EngineStats& stats, double wall_s,
                                 const std::string& device) const {
  std::lock_guard lock(mu_);
  const auto agg = aggregate(stats);
  std::uint64_t n = 0, sum = 0;
  int hi = 0;
  if (auto it = agg.find("detect"); it != agg.end())
    for (auto [b, c] : it->second.batch_sizes) {
      n += c;
      sum += c * static_cast<std::uint64_t>(b);
      if (c) hi = std::max(hi, b);
    }
  std::uint64_t early = 0;  // frames early drop discarded before their deadline passed
  if (auto it = reasons_.find("deadline"); it != reasons_.end()) early = it->second;
  const double offered = wall_s > 0 ? double(totals_.submitted) / wall_s : 0.0;
  const double good = totals_.submitted ? 100.0 * double(totals_.good) / double(totals_.submitted)
                                        : 0.0;
  std::string batching =
      hi > 1 ? fmt::format("the detector ran batches of up to {} (mean {:.1f})", hi,
                           n ? double(sum) / double(n) : 0.0)
             : std::string("the detector never batched (the load was too light)");
  std::string dropping =
      early > 0 ? fmt::format("early drop discarded {} frame(s) that could no longer make the "
                              "{:.0f} ms SLO instead of serving them late",
                              early, slo_.count() / 1e3)
                : fmt::format("nothing had to be dropped to keep the {:.0f} ms SLO",
                              slo_.count() / 1e3);
  std::string prefix;
  for (const auto& [key, g] : stats.prefix_groups) {
    if (g.batches == 0) continue;
    const auto [max_part, mean_part] =
        largest_and_mean_part(member_parts(member_sessions(g, streams_, heads_), stats));
    prefix += fmt::format("; the {} models of prefix group {} ran {} merged batch(es) of mean {:.2f} "
                          "(max {}) items, where each member's part was {:.2f} (max {})",
                          g.members.size(), key, g.batches, g.mean_batch, g.max_batch_seen,
                          mean_part, max_part);
  }
  return fmt::format("What this run shows: {} stream(s) offered {:.2f} frames/s to one engine on "
                     "{}; {}, {}{}, and {:.1f}% of all frames completed within the SLO.",
                     streams_.size(), offered, device, batching, dropping, prefix, good);
}

nlohmann::json Collector::to_json(const nexus::runtime::EngineStats& stats,
                                  const nexus::Plan& plan) const {
  std::lock_guard lock(mu_);
  nlohmann::json j;
  j["frames_submitted"] = totals_.submitted;
  j["queries_completed"] = totals_.completed;
  j["queries_dropped"] = totals_.dropped;
  j["queries_rejected"] = totals_.rejected;
  j["queries_failed"] = totals_.failed;
  j["queries_good"] = totals_.good;
  j["accounted"] = totals_.completed + totals_.dropped + totals_.rejected + totals_.failed ==
                   totals_.submitted;
  j["good_rate"] = totals_.submitted ? double(totals_.good) / double(totals_.submitted) : 0.0;
  j["latency_ms_p50"] = percentile(latency_ms_, 0.5);
  j["latency_ms_p99"] = percentile(latency_ms_, 0.99);
  j["not_completed_by_reason"] = reasons_;
  const auto agg = aggregate(stats);
  nlohmann::json stages = nlohmann::json::object();
  for (const char* st : kStageOrder) {
    auto it = agg.find(st);
    if (it == agg.end()) continue;
    const auto& a = it->second;
    auto lat = stage_ms_.find(st);
    const std::vector<double> none;
    const auto& v = lat == stage_ms_.end() ? none : lat->second;
    nlohmann::json s;
    s["requests"] = a.arrivals;
    s["completed"] = a.completions;
    s["good_rate"] = a.arrivals ? double(a.good) / double(a.arrivals) : 0.0;
    s["latency_ms_p50"] = percentile(v, 0.5);
    s["latency_ms_p99"] = percentile(v, 0.99);
    s["batches"] = a.batches;
    nlohmann::json bs = nlohmann::json::object();
    for (auto [b, n] : a.batch_sizes) bs[std::to_string(b)] = n;
    s["batch_sizes"] = bs;
    s["drops_by_reason"] = a.drops;
    stages[st] = s;
  }
  j["stages"] = stages;
  nlohmann::json sessions = nlohmann::json::object();
  for (const auto& [id, m] : stats.sessions) {
    nlohmann::json s;
    s["requests"] = m.arrivals;
    s["completed"] = m.completions;
    s["good"] = m.good;
    s["mean_batch"] = m.mean_batch;
    s["latency_ms_p50"] = m.latency.p50_us / 1e3;
    s["latency_ms_p99"] = m.latency.p99_us / 1e3;
    s["drops_by_reason"] = m.drops;
    s["rate_rps"] = m.rate_rps;
    // The last plan's admission: "served", "partial" (at planned_rate_rps) or "rejected".
    s["admission"] = m.admission;
    if (!m.admission_reason.empty()) s["admission_reason"] = m.admission_reason;
    s["planned_rate_rps"] = m.planned_rate_rps;
    if (auto it = plan.stage_budgets.find(id); it != plan.stage_budgets.end())
      s["stage_budget_ms"] = it->second.count() / 1e3;  // as in the summary and plan
    sessions[id] = s;
  }
  j["sessions"] = sessions;
  // Prefix groups: members, weights held once vs one by one, merged batches and each member's
  // part of them (its session's batch sizes are its slices of the merged batches).
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& [key, g] : stats.prefix_groups) {
    nlohmann::json x;
    x["key"] = key;
    x["declared"] = g.declared;
    x["members"] = g.members;
    x["sessions"] = g.sessions;
    x["shared_weight_bytes"] = g.shared_weight_bytes;
    x["weights_bytes"] = g.weights_bytes;
    x["unshared_weights_bytes"] = g.unshared_weights_bytes;
    x["merged_batches"] = g.batches;
    x["items"] = g.items;
    x["merged_batch_mean"] = g.mean_batch;
    x["merged_batch_max"] = g.max_batch_seen;
    nlohmann::json bs = nlohmann::json::object();
    for (auto [b, n] : g.batch_sizes) bs[std::to_string(b)] = n;
    x["merged_batch_sizes"] = bs;
    const auto parts = member_parts(member_sessions(g, streams_, heads_), stats);
    const auto [max_part, mean_part] = largest_and_mean_part(parts);
    x["member_part_mean"] = mean_part;
    x["member_part_max"] = max_part;
    nlohmann::json per = nlohmann::json::object();
    for (const auto& p : parts)
      per[p.session] = {{"items", p.items},
                        {"merged_batches", p.batches},
                        {"part_mean", p.mean_part()},
                        {"part_max", p.max_part},
                        {"share", g.items ? double(p.items) / double(g.items) : 0.0}};
    x["per_member"] = per;
    groups.push_back(std::move(x));
  }
  j["prefix_groups"] = groups;
  if (!heads_.empty()) {
    nlohmann::json th = nlohmann::json::array();
    for (const auto& h : heads_)
      th.push_back({{"tenant", fmt::format("t{}", h.tenant)},
                    {"model", h.model},
                    {"labels", h.labels},
                    {"class_means", h.class_means}});
    j["tenant_heads"] = th;
    j["tenant_head_check"] = {{"faces", head_check_.faces},
                              {"agree", head_check_.agree},
                              {"near_ties", head_check_.near_ties},
                              {"max_distance_error", head_check_.max_distance_error}};
  }
  j["plan"] = plan.to_json();
  nlohmann::json devs = nlohmann::json::array();
  for (const auto& d : stats.devices)
    devs.push_back({{"name", d.name}, {"busy_s", d.busy_seconds}, {"occupancy", d.occupancy},
                    {"batches", d.batches}, {"items", d.items}});
  j["devices"] = devs;
  // Planned occupancy per device: Σ over the slots the engine runs on it (slot mod devices).
  {
    const std::size_t ndev = std::max<std::size_t>(1, stats.devices.size());
    for (std::size_t d = 0; d < j["devices"].size(); ++d) {
      double planned = 0.0;
      for (const auto& g : plan.gpus)
        if (static_cast<std::size_t>(g.gpu) % ndev == d) planned += g.occupancy;
      j["devices"][d]["occupancy_planned"] = planned;
      j["devices"][d]["occupancy_measured"] = stats.devices[d].occupancy;
    }
  }
  nlohmann::json ss = nlohmann::json::array();
  for (const auto& s : streams_) {
    nlohmann::json x;
    x["name"] = s.name;
    x["kind"] = s.kind;
    x["source"] = s.source;
    x["pipeline"] = s.pipeline;
    x["query"] = s.query;
    x["fps"] = s.fps;
    x["frames_submitted"] = s.submitted;
    x["queries_completed"] = s.completed;
    x["queries_good"] = s.good;
    x["queries_dropped"] = s.dropped;
    x["queries_rejected"] = s.rejected;
    x["queries_failed"] = s.failed;
    x["faces"] = s.faces;
    x["latency_ms_p50"] = percentile(s.latency_ms, 0.5);
    x["latency_ms_p99"] = percentile(s.latency_ms, 0.99);
    x["not_completed_by_reason"] = s.reasons;
    ss.push_back(x);
  }
  j["streams"] = ss;
  nlohmann::json photos = nlohmann::json::array();
  for (const auto& [name, p] : photos_) photos.push_back(p);
  j["photos"] = photos;
  j["frames"] = frames_;  // every finished video frame: outcome, latency, faces
  if (gallery_) {
    nlohmann::json g = nlohmann::json::array();
    for (const auto& e : gallery_->entries)
      g.push_back({{"label", e.label},
                   {"photo", e.photo},
                   {"box", {e.box.x, e.box.y, e.box.width, e.box.height}}});
    j["gallery"] = g;
  }
  nlohmann::json ts = nlohmann::json::array();
  const std::size_t n = std::max({offered_.size(), served_.size(), lost_.size()});
  for (std::size_t k = 0; k < n; ++k) {
    auto at = [&](const std::vector<double>& v) { return k < v.size() ? v[k] : 0.0; };
    ts.push_back({{"t_s", k}, {"offered", at(offered_)}, {"served", at(served_)},
                  {"good", at(good_)}, {"not_completed", at(lost_)}});
  }
  j["timeline_per_second"] = ts;
  j["annotated_frames"] = annotated_;
  return j;
}

std::vector<std::string> Collector::write_plots(const fs::path& dir) const {
  std::lock_guard lock(mu_);
  fs::create_directories(dir);
  // Latency CDFs: one data file per stage + end to end.
  std::vector<std::pair<std::string, std::string>> series;  // (title, file)
  auto write_cdf = [&](const std::string& name, std::vector<double> v) {
    if (v.empty()) return;
    std::sort(v.begin(), v.end());
    const fs::path f = dir / fmt::format("latency_{}.dat", name);
    std::ofstream o(f);
    o << "# latency_ms cumulative_fraction\n";
    const std::size_t step = std::max<std::size_t>(1, v.size() / 2000);
    for (std::size_t i = 0; i < v.size(); i += step)
      o << v[i] << " " << double(i + 1) / double(v.size()) << "\n";
    o << v.back() << " 1\n";
    series.emplace_back(name, f.filename().string());
  };
  for (const char* st : kStageOrder)
    if (auto it = stage_ms_.find(st); it != stage_ms_.end()) write_cdf(st, it->second);
  write_cdf("end-to-end", latency_ms_);
  // Rates as moving averages over a window of a few seconds: at a fraction of a frame per second
  // per stream, one-second counts would jump between 0 and 1.
  const std::size_t n = std::max({offered_.size(), served_.size(), lost_.size()});
  const std::size_t window = std::clamp<std::size_t>(n / 6, 4, 10);
  {
    std::ofstream o(dir / "timeline.dat");
    o << fmt::format("# moving average over {} s: t_s offered_per_s served_per_s good_per_s "
                     "not_completed_per_s good_rate_pct\n", window);
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t k0 = k + 1 >= window ? k + 1 - window : 0;
      double off = 0, srv = 0, gd = 0, lst = 0;
      for (std::size_t i = k0; i <= k; ++i) {
        auto at = [&](const std::vector<double>& v) { return i < v.size() ? v[i] : 0.0; };
        off += at(offered_);
        srv += at(served_);
        gd += at(good_);
        lst += at(lost_);
      }
      const double w = double(k - k0 + 1);
      o << k + 1 << " " << off / w << " " << srv / w << " " << gd / w << " " << lst / w << " ";
      if (srv + lst > 0) o << 100.0 * gd / (srv + lst); else o << "NaN";
      o << "\n";
    }
  }
  const double slo_ms = slo_.count() / 1e3;
  {
    std::ofstream g(dir / "plots.gp");
    g << "set terminal pngcairo size 1000,600 font 'sans,11'\n"
         "set datafile missing 'NaN'\nset termoption noenhanced\n"
         "set grid\nset key bottom right\n";
    // The curves sit at the right (tens of ms to seconds): the key goes top left, off them.
    g << "set output 'latency_cdf.png'\nset key top left box opaque\n"
         "set title \"Latency CDF of completed work: per stage (queued -> done per item) and end "
         "to end (submit -> result)\\nDropped frames are not in it (the timeline counts them)\"\n"
         "set xlabel 'latency (ms, log scale)'\nset ylabel 'fraction of requests'\n"
         "set logscale x\nset yrange [0:1.02]\n";
    double max_ms = 0;
    for (const auto& [st, v] : stage_ms_)
      for (double x : v) max_ms = std::max(max_ms, x);
    for (double x : latency_ms_) max_ms = std::max(max_ms, x);
    if (slo_ms <= 30 * std::max(max_ms, 1.0)) {  // draw the SLO when it is near the curves
      // Room right of the SLO line for its label, off the curves (which end at or left of it).
      g << fmt::format("set xrange [*:{}]\n", std::max(max_ms * 1.5, slo_ms * 5));
      g << fmt::format("set arrow from {0},0 to {0},1.02 nohead dt 2 lw 2 lc rgb 'red'\n"
                       "set label 'SLO {0:.0f} ms' at {0},0.5 left offset 0.5,0 tc rgb 'red'\n",
                       slo_ms);
    } else {
      g << fmt::format("set label 'SLO {:.0f} ms: far right of every latency' at graph 0.02,0.95 "
                       "tc rgb 'red'\n", slo_ms);
    }
    g << "plot ";
    for (std::size_t i = 0; i < series.size(); ++i)
      g << (i ? ", \\\n     " : "") << "'" << series[i].second << "' using 1:2 with lines lw "
        << (series[i].first == "end-to-end" ? 4 : 2) << " title '" << series[i].first << "'";
    g << "\nunset arrow\nunset label\nunset logscale x\nset autoscale\n";
    g << "WINDOW = " << window << "\n";
    g << "set output 'timeline.png'\n"
         "set title sprintf('Frames per second offered and served, and good rate (moving averages over %d s)', WINDOW)\n"
         "set xlabel 'time since start (s)'\nset ylabel 'frames per second'\n"
         "set y2label 'good rate: completed within SLO / finished (%)'\n"
         "set y2range [0:105]\nset y2tics\nset yrange [0:*]\nset offsets 0, 0, graph 0.25, 0\n"
         "set key outside bottom center horizontal nobox noopaque\n"
         "plot 'timeline.dat' using 1:2 with lines lw 6 lc rgb '#b0a0e0' title 'offered (submitted)', \\\n"
         "     'timeline.dat' using 1:3 with lines lw 2 lc rgb '#008060' title 'served (completed)', \\\n"
         "     'timeline.dat' using 1:5 with impulses lw 4 lc rgb '#e04040' title 'dropped/rejected/failed', \\\n"
         "     'timeline.dat' using 1:6 axes x1y2 with lines lw 2 dt 2 lc rgb '#e09000' "
         "title 'good rate (right axis)'\n";
  }
  const std::string cmd =
      fmt::format("cd '{}' && gnuplot plots.gp > gnuplot.log 2>&1", dir.string());
  if (std::system(cmd.c_str()) != 0) {
    std::cerr << "plots: gnuplot failed or is missing (install gnuplot-nox); data and script are "
                 "in "
              << dir.string() << "\n";
    return {};
  }
  return {(dir / "latency_cdf.png").string(), (dir / "timeline.png").string()};
}

}  // namespace va
