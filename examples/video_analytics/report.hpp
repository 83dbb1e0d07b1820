#pragma once
// The Collector: takes every QueryResult from the poll thread, matches it with its frame, keeps
// the counts, latencies and time series, draws annotated frames, and at the end prints the
// summary table and writes report.json and the plots (gnuplot).
//
// Thread-safety: all members lock one mutex; on_submit (stream threads) and on_result (poll
// thread) may race: a result that arrives before its submit was recorded waits in `early_`.

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "va.hpp"

namespace va {

struct StreamRecord {
  std::string name, kind, query, source;
  std::string pipeline;            ///< "whole" | "tiled"
  int tenant = 0;
  double fps = 0.0;
  std::string describe;
  std::uint64_t submitted = 0, completed = 0, good = 0, dropped = 0, rejected = 0, failed = 0;
  std::uint64_t faces = 0;         ///< faces in completed frames
  std::map<std::string, std::uint64_t> reasons;
  std::vector<double> latency_ms;  ///< completed frames, end to end
  int annotated = 0;
  bool annotated_any = false;
};

struct PhotoFace {
  FaceResult face;
};

class Collector {
 public:
  Collector(std::vector<StreamRecord> streams, const Gallery* gallery, FrameStore* store,
            fs::path annotate_dir, int annotate_per_stream, std::chrono::microseconds slo,
            double match_threshold = kFaceApiMatchThreshold,
            std::vector<TenantHead> heads = {});

  void start(TimePoint t0) { t0_ = t0; }
  /// A frame was submitted as request `id`.
  void on_submit(nexus::runtime::RequestId id, std::shared_ptr<const Frame> frame, TimePoint at);
  /// The one result of a request.
  void on_result(nexus::runtime::QueryResult r);

  std::uint64_t submitted() const;
  std::uint64_t finished() const;
  /// Counters for the live line.
  struct Totals {
    std::uint64_t submitted = 0, finished = 0, completed = 0, good = 0, dropped = 0, rejected = 0,
                  failed = 0;
  };
  Totals totals() const;

  /// Everything for the report (call after the last result).
  struct Summary {
    Totals totals;
    double good_rate = 0.0;
    double p50_ms = 0.0, p99_ms = 0.0;
  };
  Summary summary() const;

  /// Prints the summary table (stages, plan, devices, streams) to `out`. `left_out`: requested
  /// streams that could not be opened ("<name>: <why>"), one row each.
  void print_table(std::ostream& out, const nexus::runtime::EngineStats& stats,
                   const nexus::Plan& plan, const std::string& device,
                   const std::vector<std::string>& left_out = {}) const;
  /// One line per stream that was mostly not served (fewer than half of its frames completed
  /// within the SLO): what happened and what to change.
  std::vector<std::string> warnings() const;
  /// One sentence: what this run demonstrates (load, batching, early drop, good rate), from the
  /// figures of the run. `wall_s`: serving time.
  std::string headline(const nexus::runtime::EngineStats& stats, double wall_s,
                       const std::string& device) const;
  /// report.json contents.
  nlohmann::json to_json(const nexus::runtime::EngineStats& stats, const nexus::Plan& plan) const;
  /// Data files + gnuplot scripts + PNGs under dir. Returns the PNG paths written (empty when
  /// gnuplot is missing; says so on stderr).
  std::vector<std::string> write_plots(const fs::path& dir) const;

  std::vector<std::string> annotated_files() const;

  /// --tenant-heads: faces whose tenant's head was checked against the gallery's nearest
  /// descriptor among the faces that tenant enrolled (computed here in double, independently of
  /// the engine's FC layer); `agree`: the same label; `near_ties`: disagreements where the two
  /// nearest enrolled faces are within 1e-4 of each other (float32 rounding may pick either).
  struct HeadCheck {
    std::uint64_t faces = 0, agree = 0, near_ties = 0;
    double max_distance_error = 0.0;  ///< |head distance − gallery distance| of the same class
  };
  HeadCheck head_check() const;

 private:
  void record_locked(const nexus::runtime::QueryResult& r, const std::shared_ptr<const Frame>& f);

  mutable std::mutex mu_;
  std::vector<StreamRecord> streams_;
  const Gallery* gallery_;
  FrameStore* store_;
  fs::path annotate_dir_;
  int annotate_per_stream_;
  std::chrono::microseconds slo_;
  double match_threshold_;
  std::vector<TenantHead> heads_;
  HeadCheck head_check_;
  TimePoint t0_{};
  struct Pending {
    std::shared_ptr<const Frame> frame;
    TimePoint at;
  };
  std::map<nexus::runtime::RequestId, Pending> pending_;
  std::map<nexus::runtime::RequestId, nexus::runtime::QueryResult> early_;
  Totals totals_;
  std::map<std::string, std::uint64_t> reasons_;
  std::vector<double> latency_ms_;                         // completed, end to end
  std::map<std::string, std::vector<double>> stage_ms_;    // per stage item: enqueue -> done
  // per second since start: offered (by submit), completed/good/not-completed (by finish)
  std::vector<double> offered_, served_, good_, lost_;
  std::map<std::string, nlohmann::json> photos_;           // first completed result per photo
  nlohmann::json frames_ = nlohmann::json::array();        // per finished video frame
  std::vector<std::string> annotated_;
};

}  // namespace va
