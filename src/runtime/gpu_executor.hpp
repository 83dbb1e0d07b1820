#pragma once
// GpuExecutor: one per device (paper §6.1, §6.3; notes §6). Runs the plan's duty cycle d: each
// cycle visits the sessions the plan gives its device in plan order, round robin, and runs one
// batch of each (no two models contending on the device), of at most the planned size, formed
// by the BatchPolicy (early drop by default) over the session's deadline-ordered queue; a session
// with nothing queued at its turn is skipped until the next cycle. The next cycle starts d after
// this one started (or at once when the cycle ran over d): the packer's guarantee d + ℓ(b) <= SLO
// holds for every co-located session. With ExecutorOptions::work_conserving the next cycle starts
// at once whenever the device would otherwise idle. Each batch is staged into a pre-allocated
// input buffer; post-processing and fan-out go to the CPU pool so the device can start the next
// batch at once.
//
// Prefix groups (paper §6.3): the members of a group that the schedule runs together take one
// turn per cycle: the BatchPolicy decides on their queues merged in deadline order
// (dispatch::MergedQueueView, ℓ_group), split_by_member drops per member and takes the merged
// batch; the prefix runs once on it (PrefixRunner; on sim devices the prefix and suffix times are
// drawn) and each member's items complete in their own session.
//
// Real time: a thread loops step(); it sleeps on a condition variable when there is nothing to do.
// Virtual time: no thread; the engine's discrete-event driver calls sim_step(now) at the times
// next_event() reports, and a batch occupies the device for the SimBackend's drawn ℓ(b).
//
// ExecutorOptions::concurrent_sessions (virtual time only; the TF-Serving-like and Triton-like
// baselines): no round robin. Each session on the device starts its own batch, with its own
// BatchPolicy, whenever it has none in flight here (Slot::running), and the batches in flight
// share the device as a processor-sharing server: with k in flight each advances at 1/k of its
// solo speed. Each one's solo time left (Shared::remaining_ns) is brought up to date at every
// step (share_advance), before k changes, so next_event() always reports the true next
// completion: since + k · min(remaining), rounded up to the next nanosecond.

#include <array>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "engine_impl.hpp"
#include "nexus/core/ring_queue.hpp"

namespace nexus::runtime {

/// What runs a session's batches on one device: the model's own backend, or (its own backend
/// released while a prefix group holds its weights) member `member` of the group's runner.
/// Held by the schedule: a backend or runner lives while a schedule names it.
struct Serving {
  std::shared_ptr<Backend> backend;
  std::shared_ptr<const PrefixGroupRuntime> group;
  int member = -1;
};

/// One session's queue on one executor.
struct Slot {
  explicit Slot(int session_index) : session(session_index) {}
  int session;
  HandoffQueue<Item> inbox;                 // producers → executor (batched hand-off)
  std::atomic<std::size_t> queued{0};       // inbox + queue, for admission control
  // executor thread only:
  RingQueue<Item> queue;                    // deadline order
  std::unique_ptr<dispatch::BatchPolicy> policy;
  int target_batch = 1;
  bool active = false;
  Serving serving;                          // set with the schedule (null when inactive)
  std::optional<TimePoint> wait_until;
  bool running = false;  // concurrent_sessions: a batch of this session is on the device
};

class Executor {
 public:
  Executor(Engine::Impl& engine, int device);
  ~Executor();

  /// Creates the slot of a new session (control thread, before it is routed to).
  void add_session(int session_index);
  Slot* slot(int session_index) const {
    return slots_[static_cast<std::size_t>(session_index)].load(std::memory_order_acquire);
  }
  /// One device's schedule: its duty cycle d and, in the order a cycle visits them, its sessions
  /// with their planned batch sizes (a session absent is not served here).
  struct Schedule {
    Duration duty_cycle{0};                       ///< 0: no pacing (work-conserving)
    std::vector<std::pair<int, int>> sessions;    ///< (session index, planned batch)
    std::vector<Serving> serving;                 ///< per entry of `sessions`: what runs it
    /// Prefix groups: member sessions (also in `sessions`) run as one merged batch of at most
    /// `batch` per cycle, at the turn of the first of them in `sessions`.
    struct Group {
      std::shared_ptr<const PrefixGroupRuntime> runtime;
      std::vector<int> sessions;      ///< member session indices
      int batch = 1;                  ///< B: the members' shares together
      dispatch::LatencyTable latency; ///< ℓ_group(b), for the batch policy
    };
    std::vector<Group> groups;
  };
  /// Hands a new schedule to the executor (applied before its next batch).
  void set_plan(Schedule schedule);
  /// Wakes the thread if it sleeps (after a push).
  void notify();

  void start();
  /// Stops the thread once `engine` says nothing is left to do; joins.
  void stop();

  // virtual time
  std::optional<TimePoint> next_event(TimePoint now) const;
  void sim_step(TimePoint now);

  /// Items still queued (inbox + queues); racy snapshot.
  std::size_t queued() const;
  /// Ends every queued item with kShutdown (after the thread stopped).
  void drop_all(Reason reason, const char* message);

  int device() const { return device_; }
  std::atomic<std::uint64_t> busy_ns{0}, batches{0}, items{0};

 private:
  void loop();
  /// Tries one batch, visiting sessions round robin. Returns true if a batch ran.
  bool step(TimePoint now);
  void apply_pending_plan();
  /// Takes in every slot's inbox and re-routes the items of sessions not served here; returns
  /// true when an active session has queued work.
  bool take_in(int num_slots);
  /// The session's batch policy on its queue: ends the items it drops (into `done`) and returns
  /// how many to run now, or 0 (then slot.wait_until says when to look again, if set).
  std::size_t decide(Slot& slot, int session, TimePoint now, std::vector<QueryResult>& done);
  void run_batch(Slot& slot, std::size_t take, TimePoint now);
  struct GroupState {
    Schedule::Group def;
    std::unique_ptr<dispatch::BatchPolicy> policy;
  };
  /// A prefix group's turn: decide on the merged queues, drop per member, run the merged batch.
  /// Returns true if a batch ran.
  bool group_turn(GroupState& g, TimePoint now, std::vector<QueryResult>& done);
  void run_group_batch(GroupState& g, const std::vector<std::size_t>& take, TimePoint now);
  /// Hands finished batches on: to the in-flight list (virtual time) or post-processing.
  void finish_batches(std::vector<Batch>&& batches);
  void merge_inbox(Slot& slot);
  Tensor stage_inputs(int model, std::vector<Item>& items);

  Engine::Impl& eng_;
  int device_;
  std::array<std::atomic<Slot*>, kMaxSessions> slots_{};
  std::vector<std::unique_ptr<Slot>> slot_store_;
  std::mutex slot_mu_;
  std::atomic<int> num_slots_{0};
  std::vector<Item> scratch_;
  // Executor thread only, reused so a warm executor allocates nothing per batch: the results
  // a step ends, and the item buffer of the last finished batch (virtual time).
  std::vector<QueryResult> done_;
  std::vector<Item> spare_items_;
  // Duty cycle (executor thread only).
  Duration duty_cycle_{0};
  std::vector<int> order_;        // sessions in the order a cycle visits them
  std::vector<GroupState> groups_;  // prefix groups of the schedule
  std::vector<int> group_of_;       // by session index: index into groups_, or -1
  std::size_t cycle_pos_ = 0;     // next session of the current cycle
  bool in_cycle_ = false;
  bool started_ = false;          // a cycle has started since the plan was applied
  TimePoint cycle_start_{};
  /// When the next cycle may start (paced mode), or nullopt when it may start now.
  std::optional<TimePoint> next_cycle(TimePoint now) const;
  std::vector<Tensor> staging_;  // per model: [max_batch, ...item_shape]

  std::mutex plan_mu_;
  std::optional<Schedule> pending_plan_;
  std::atomic<bool> plan_pending_{false};

  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;

  // virtual time: the batch on the device (a merged batch: one per member session)
  std::vector<Batch> inflight_;
  TimePoint busy_until_{};

  // virtual time, concurrent_sessions: the batches in flight, sharing the device.
  const bool concurrent_;
  struct Shared {
    Batch batch;
    double remaining_ns;  // solo time left (the SimBackend's draw at the start)
  };
  std::vector<Shared> shared_;  // in start order
  TimePoint shared_since_{};    // when remaining_ns was last brought up to date
  /// Brings every in-flight batch's solo time left up to `now` (each did (now - since) / k).
  void share_advance(TimePoint now);
  /// When the first in-flight batch completes at the current k (nullopt: none in flight).
  std::optional<TimePoint> share_next_completion() const;
  /// Completes the batches whose solo time is used up, then starts a batch of every session
  /// with none in flight and a batch its policy takes now.
  void concurrent_sim_step(TimePoint now);
};

}  // namespace nexus::runtime
