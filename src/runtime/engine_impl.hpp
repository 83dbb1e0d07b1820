#pragma once
// Private parts of the Engine: query/session/model state, the Dispatcher's routing, the
// GpuExecutor and the CPU pool. Only src/runtime/*.cpp include this.

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nexus/core/blocking_queue.hpp"
#include "nexus/core/handoff_queue.hpp"
#include "nexus/dispatch/batch_policy.hpp"
#include "nexus/dispatch/dispatcher.hpp"
#include "nexus/exec/prefix_runner.hpp"
#include "nexus/runtime/engine.hpp"
#include "nexus/schedule/scheduler.hpp"

namespace nexus::runtime {

constexpr int kMaxSessions = dispatch::Dispatcher::kMaxSessions;
constexpr int kNumReasons = 7;
constexpr int kMaxModels = 256;
constexpr int kMaxQueries = 256;

struct QueryDef;

/// One submitted request while it is in flight.
struct QueryState {
  RequestId id = 0;
  const QueryDef* query = nullptr;
  Tensor input;
  TimePoint submitted{}, deadline{};
  std::atomic<int> outstanding{1};   // stage items not yet finished
  std::atomic<bool> dead{false};     // ended early: no more fan-out
  std::mutex mu;                     // guards the fields below
  RequestStatus status = RequestStatus::kCompleted;
  Reason reason = Reason::kNone;
  std::string message, stage;
  std::vector<StageResult> stages;
};

/// One stage item in a session queue.
struct Item {
  QueryState* q = nullptr;
  int stage = 0;
  int parent = -1;         // index into q->stages of the parent item
  Tensor input;            // as given (fan-out view)
  Tensor model_input;      // after preprocess, per-item shape
  TimePoint deadline{}, enqueued{};
};

struct StageDef {
  std::string name;
  int model = -1;
  int session = -1;
  PreprocessFn pre;
  PostprocessFn post;
  struct Child {
    int stage;
    FanoutFn fanout;
    double fanout_mean;
  };
  std::vector<Child> children;
  std::vector<int> parents;
};

struct QueryDef {
  int handle = 0;
  std::string name;
  Duration slo{};
  double expected_rate = 0;
  int priority = 0;
  std::vector<StageDef> stages;
  // metrics
  std::atomic<std::uint64_t> arrivals{0}, completions{0}, good{0}, dropped{0}, rejected{0},
      failed{0};
  std::array<std::atomic<std::uint64_t>, kNumReasons> reasons{};
  LatencyHistogram latency;
};

struct ModelState {
  ModelSpec spec;
  int index = 0;
  int max_batch = 1;
  dispatch::LatencyTable plan_latency;   // planning ℓ(b): the batch policy's estimate
  std::vector<Duration> sim_latency;     // mean ℓ(b): virtual-time batch duration
  Shape item_shape;                      // per-item input shape ({} = unchecked)
  // One per device, its own (control thread only; the executors get theirs through their
  // Schedule, so a backend released here lives until no executor's schedule names it). Null on
  // a device where a prefix group's runner serves the model (its weights are held once there).
  std::vector<std::shared_ptr<Backend>> backends;
  std::vector<std::size_t> device_bytes;           // Backend::device_bytes per device (0: released)
  ModelLoadSnapshot load;                          // load + prepare cost (EngineStats::models)
  bool unloaded = false;                           // unload_model(): no backends, not in groups
};

/// Counters of one prefix group key (kept for the engine's life, so a re-formed group goes on
/// counting).
struct PrefixGroupCounters {
  std::atomic<std::uint64_t> batches{0}, items{0};
  std::atomic<int> max_batch{0};
  std::array<std::atomic<std::uint64_t>, 1025> hist{};  // merged batch size → count (1024+: last)
};

/// A formed prefix group (paper §6.3): published immutable (shared_ptr) to the executors with
/// their schedule; each device's merged-execution parts are used by that device's executor only.
// The planning parts (PrefixGroupProfiles: session_id, member_models, max_batch, prefix and
// suffix profiles) come from split_prefix_group (schedule/prefix_group.hpp).
struct PrefixGroupRuntime : PrefixGroupProfiles {
  std::string key;            // declared key, or "prefix-<hash>"
  bool declared = false;
  std::vector<int> models;    // member model indices; runner member m = models[m]
  std::size_t shared_weight_bytes = 0, weights_bytes = 0, unshared_weights_bytes = 0;
  /// Per device: the merged runner (graph groups on cpu/cuda devices), or null.
  std::vector<std::unique_ptr<PrefixRunner>> runners;
  std::vector<std::size_t> device_bytes;  // per device: the runner's PrefixRunner::device_bytes
  /// Per device (sim devices): SimBackends drawing ℓ_prefix and each ℓ_suffix_m with the
  /// engine's SimLatency noise; empty elsewhere.
  struct SimParts {
    std::unique_ptr<sim::SimBackend> prefix;
    std::vector<std::unique_ptr<sim::SimBackend>> suffixes;
  };
  std::vector<SimParts> sim;
  PrefixGroupCounters* counters = nullptr;
  int member_of(int model) const {
    for (std::size_t m = 0; m < models.size(); ++m)
      if (models[m] == model) return static_cast<int>(m);
    return -1;
  }
};

struct SessionState {
  int index = 0;
  std::string id;            // "<query>/<stage>"
  int query = 0, stage = 0, model = 0;
  std::atomic<Duration::rep> budget_ns{0};      // this stage's latency budget
  std::atomic<Duration::rep> downstream_ns{0};  // budgets of the stages below it (max path)
  // metrics
  std::atomic<std::uint64_t> arrivals{0}, completions{0}, good{0}, batches{0}, batch_items{0};
  std::array<std::atomic<std::uint64_t>, kNumReasons> drops{};
  std::unique_ptr<std::atomic<std::uint64_t>[]> batch_hist;  // [0..max_batch]
  int hist_size = 0;
  LatencyHistogram latency;
  // epoch loop (control thread only)
  std::uint64_t last_arrivals = 0;
  double rate_rps = 0;
  std::atomic<double> rate_published{0};
};

/// A batch between the device and its post-processing.
struct Batch {
  int session = 0;
  int device = 0;
  std::vector<Item> items;
  std::vector<Tensor> outputs;
  TimePoint started{}, finished{};
  int merged_size = 0;   // > 0: the items ran in a prefix group's merged batch of this size
  bool failed = false;
  std::string error;
};

class Executor;

class Engine::Impl {
 public:
  explicit Impl(EngineOptions options);
  ~Impl();

  // --- API ---
  void load_model(ModelSpec spec);
  void unload_model(const std::string& name);
  int add_query(QuerySpec spec);
  RequestId submit(const QueryDef& q, Tensor input);
  std::vector<QueryResult> poll(std::size_t max, Duration timeout);
  void shutdown();
  void run_until(TimePoint t);
  void run_until_idle();
  void replan();
  Plan plan() const;
  EngineStats stats() const;

  // --- shared with the executors ---
  /// Routes an item to a device queue (admission control); ends it when it cannot be queued.
  void dispatch(Item&& item);
  /// Finishes a batch: per item postprocess, stage result, fan-out, release. `done` collects
  /// finished QueryResults to push at once.
  void complete_batch(Batch& batch, std::vector<QueryResult>* done);
  /// Ends one item with a non-completed outcome (the query ends with it).
  void end_item(Item& item, RequestStatus status, Reason reason, std::string message,
                std::vector<QueryResult>* done);
  /// Runs fn on the CPU pool (or inline without one / in virtual time).
  void post_to_pool(std::function<void()> fn);
  void flush(std::vector<QueryResult>& done);

  EngineOptions options_;
  std::shared_ptr<Clock> clock_;
  bool virtual_ = false;
  std::vector<DeviceInfo> devices_;
  TimePoint started_at_{};

  // Read lock-free by submit() and the executors: fixed arrays of published pointers.
  std::array<std::atomic<ModelState*>, kMaxModels> models_{};
  std::vector<std::unique_ptr<ModelState>> model_store_;
  std::map<std::string, int> model_index_;       // control_mu_
  std::array<std::atomic<QueryDef*>, kMaxQueries> queries_{};
  std::vector<std::unique_ptr<QueryDef>> query_store_;
  using QueryIndex = std::map<std::string, QueryDef*, std::less<>>;
  std::atomic<const QueryIndex*> query_index_{nullptr};  // replaced on add_query
  std::vector<std::unique_ptr<QueryIndex>> query_index_store_;
  const ModelState& model(int i) const { return *models_[static_cast<std::size_t>(i)].load(std::memory_order_acquire); }
  const QueryDef* find_query(std::string_view name) const;
  std::array<std::atomic<SessionState*>, kMaxSessions> sessions_{};
  std::vector<std::unique_ptr<SessionState>> session_store_;
  std::atomic<int> num_sessions_{0};
  std::vector<std::unique_ptr<Executor>> executors_;

  std::atomic<RequestId> next_id_{1};
  std::atomic<bool> accepting_{true};
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> submitted_{0}, completed_{0}, good_{0}, dropped_{0}, rejected_{0},
      failed_{0};
  BlockingQueue<QueryResult> results_;

  // control plane
  mutable std::mutex control_mu_;
  Plan plan_;
  std::unique_ptr<Scheduler> scheduler_;  // the epoch mechanism: EWMA, when to re-plan, keep
  Duration tick_{0};                      // rate sampling period (min_epoch), 0 = no epochs
  std::string plan_error_;  // the last failed re-plan of the epoch loop (empty: none)
  dispatch::Dispatcher dispatcher_;  // routing tables per session
  TimePoint last_epoch_{};
  std::thread epoch_thread_;
  std::mutex epoch_mu_;
  std::condition_variable epoch_cv_;
  bool stopping_ = false;
  bool shut_down_ = false;
  std::mutex shutdown_mu_;
  // Why a session has no route (from Plan::rejected), for its kNoRoute answers.
  std::mutex no_route_mu_;
  std::map<int, std::string> no_route_reason_;

  // CPU pool
  struct Pool {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool stop = false;
    std::vector<std::thread> threads;
    std::atomic<std::int64_t> pending{0};
  } pool_;

 private:
  void finalize(QueryState* q, std::vector<QueryResult>* done);
  void release(QueryState* q, std::vector<QueryResult>* done);
  void compute_budgets(QueryDef& q);
  std::vector<Duration> proportional_budgets(const QueryDef& q, bool uniform = false) const;
  std::vector<Duration> split_slo(const QueryDef& q, const std::vector<double>& rate, bool explain) const;
  void recompute_downstream(QueryDef& q);
  void epoch_tick(TimePoint now);
  /// Re-plans through the Scheduler when due (or always with `force`); control_mu_ held.
  void plan_now(TimePoint now, bool force);
  /// The Scheduler's planner: the custom / replicate / squishy planner over `sessions`.
  Plan plan_sessions(const std::vector<Session>& sessions, const Plan* running);
  PackerOptions planner_packer() const;
  struct DeviceMemory {
    std::size_t used = 0;      // Σ device_bytes of the models loaded on the device
    std::size_t capacity = 0;  // free_memory() + used, 0 = unknown
  };
  std::vector<DeviceMemory> device_memory_;  // control_mu_
  // Prefix batching (control_mu_): the groups formed over the loaded models, and the counters
  // per group key.
  std::vector<std::shared_ptr<const PrefixGroupRuntime>> groups_;
  std::map<std::string, std::unique_ptr<PrefixGroupCounters>> group_counters_;
  /// Re-forms the prefix groups over the loaded models (reusing unchanged ones); returns true
  /// when the set of groups changed.
  bool regroup();
  std::shared_ptr<const PrefixGroupRuntime> build_group(std::string key, bool declared,
                                                         std::vector<int> models);
  /// Makes, loads and prepares (every batch size 1..max_batch) model m's own backend on device
  /// d; counts its bytes (m.load, m.device_bytes, device_memory_). Throws what the backend throws.
  void load_own_backend(ModelState& m, const DeviceInfo& d);
  /// The group (in groups_) whose runner serves model `mi` on device `d`, or null.
  std::shared_ptr<const PrefixGroupRuntime> runner_group(int mi, int d) const;
  /// Sessions → the planner's sessions: the sessions of each prefix group's members (two or
  /// more) become one group session; `profiles` gains the groups' profiles.
  using GroupedSessions = PrefixGroupedSessions;  // merge_prefix_groups
  GroupedSessions group_sessions(const std::vector<Session>& sessions,
                                 std::map<std::string, BatchProfile>& profiles) const;
  /// Replaces each group session of `plan` by its members (shares of batch and rate, the
  /// group's routes, rejections per member).
  static void expand_groups(Plan& plan, const GroupedSessions& grouped);
  void apply_plan(const Plan& plan);
  void check_external_plan(const Plan& plan, const PlanRequest& req) const;
  // Virtual time: an event queue over the executors. Each executor's next_event() changes only
  // when it steps, an item is pushed to it (dispatch) or a plan is set (apply_plan); those mark
  // it dirty and its next event is recomputed before the queue is read, so an event costs
  // O(log devices) instead of a scan of every executor (1,000 simulated GPUs).
  void sim_mark(int device);
  std::optional<TimePoint> sim_next_event();
  void sim_step_due(TimePoint now);
  struct SimEvent {
    Duration::rep t;
    int device;
    bool operator>(const SimEvent& o) const { return t != o.t ? t > o.t : device > o.device; }
  };
  std::vector<SimEvent> sim_heap_;              // min-heap (std::push_heap with greater)
  std::vector<std::optional<TimePoint>> sim_next_;
  std::vector<int> sim_dirty_;
  std::vector<char> sim_dirty_flag_;
  std::vector<int> sim_due_;
  SessionState* session(int i) const { return sessions_[static_cast<std::size_t>(i)].load(std::memory_order_acquire); }
};

}  // namespace nexus::runtime
