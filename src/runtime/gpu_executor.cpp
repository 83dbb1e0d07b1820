#include "gpu_executor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "nexus/dispatch/merged_queue.hpp"
#include "nexus/sim/sim_backend.hpp"

namespace nexus::runtime {

namespace {

class DequeView final : public dispatch::QueueView {
 public:
  explicit DequeView(const RingQueue<Item>& q) : q_(q) {}
  std::size_t size() const override { return q_.size(); }
  TimePoint deadline(std::size_t i) const override { return q_[i].deadline; }
  TimePoint arrival(std::size_t i) const override { return q_[i].enqueued; }

 private:
  const RingQueue<Item>& q_;
};

// The batch policy's feedback (AIMD and the like): did every item of a batch that ended at
// `finished` meet its deadline?
bool all_met(const std::vector<Item>& items, TimePoint finished, bool failed) {
  if (failed) return false;
  for (const auto& it : items)
    if (finished > it.deadline) return false;
  return true;
}

}  // namespace

Executor::Executor(Engine::Impl& engine, int device)
    : eng_(engine), device_(device), concurrent_(engine.options_.executor.concurrent_sessions) {}

Executor::~Executor() { stop(); }

void Executor::add_session(int session_index) {
  std::lock_guard lock(slot_mu_);
  auto s = std::make_unique<Slot>(session_index);
  s->policy = dispatch::make_batch_policy(eng_.options_.batch_policy);
  slots_[static_cast<std::size_t>(session_index)].store(s.get(), std::memory_order_release);
  slot_store_.push_back(std::move(s));
  num_slots_.store(std::max(num_slots_.load(), session_index + 1), std::memory_order_release);
}

void Executor::set_plan(Schedule schedule) {
  {
    std::lock_guard lock(plan_mu_);
    pending_plan_ = std::move(schedule);
    plan_pending_.store(true, std::memory_order_release);
  }
  notify();
}

void Executor::notify() {
  // The push's seq_cst store of the inbox size and this seq_cst load pair with the loop's
  // seq_cst store of sleeping_ and its load of the inbox size: one of the two sides sees the
  // other, so a push never goes unnoticed by a sleeping executor.
  if (sleeping_.load(std::memory_order_seq_cst)) {
    std::lock_guard lock(wake_mu_);
    wake_cv_.notify_one();
  }
}

void Executor::start() { thread_ = std::thread([this] { loop(); }); }

void Executor::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(wake_mu_);
    stop_.store(true);
  }
  wake_cv_.notify_all();
  thread_.join();
}

std::size_t Executor::queued() const {
  std::size_t n = 0;
  const int ns = num_slots_.load(std::memory_order_acquire);
  for (int i = 0; i < ns; ++i)
    if (auto* s = slot(i)) n += s->queued.load(std::memory_order_acquire);
  return n;
}

void Executor::apply_pending_plan() {
  if (!plan_pending_.load(std::memory_order_acquire)) return;
  Schedule sched;
  {
    std::lock_guard lock(plan_mu_);
    if (!pending_plan_) return;
    sched = std::move(*pending_plan_);
    pending_plan_.reset();
    plan_pending_.store(false, std::memory_order_release);
  }
  const int ns = num_slots_.load(std::memory_order_acquire);
  // The previous schedule's backends and runners are let go here (a backend the engine released
  // is freed when the last schedule naming it is replaced; no batch is running on it now).
  for (int i = 0; i < ns; ++i) {
    Slot* s = slot(i);
    if (!s) continue;
    s->active = false;
    s->serving = Serving{};
  }
  order_.clear();
  // Prefix groups: a group's policy carries over a plan swap that keeps the group.
  std::vector<GroupState> groups;
  for (auto& def : sched.groups) {
    GroupState g;
    for (auto& old : groups_)
      if (old.policy && old.def.runtime == def.runtime) g.policy = std::move(old.policy);
    if (!g.policy) g.policy = dispatch::make_batch_policy(eng_.options_.batch_policy);
    g.def = std::move(def);
    groups.push_back(std::move(g));
  }
  groups_ = std::move(groups);
  group_of_.assign(static_cast<std::size_t>(kMaxSessions), -1);
  for (std::size_t g = 0; g < groups_.size(); ++g)
    for (int session : groups_[g].def.sessions) group_of_[static_cast<std::size_t>(session)] = static_cast<int>(g);
  std::vector<char> group_listed(groups_.size(), 0);
  for (std::size_t e = 0; e < sched.sessions.size(); ++e) {
    const auto [session, batch] = sched.sessions[e];
    if (Slot* s = slot(session); s && !s->active) {
      s->active = true;
      s->target_batch = std::max(1, batch);
      if (e < sched.serving.size()) s->serving = std::move(sched.serving[e]);
      // A group takes one turn per cycle, at its first member's place.
      if (const int g = group_of_[static_cast<std::size_t>(session)]; g >= 0) {
        if (group_listed[static_cast<std::size_t>(g)]) continue;
        group_listed[static_cast<std::size_t>(g)] = 1;
      }
      order_.push_back(session);
    }
  }
  // The new cycle starts with the first session of the new order; the pacing of the cycle that
  // is running carries over (its start stays).
  duty_cycle_ = sched.duty_cycle;
  cycle_pos_ = 0;
  in_cycle_ = false;
  // Items queued for sessions this device no longer serves move to their new route: each
  // leaves this queue exactly when it enters another (or ends), so none is lost or doubled.
  for (int i = 0; i < ns; ++i) {
    Slot* s = slot(i);
    if (!s || s->active) continue;
    merge_inbox(*s);
    while (!s->queue.empty()) {
      Item it = std::move(s->queue.front());
      s->queue.pop_front();
      s->queued.fetch_sub(1, std::memory_order_acq_rel);
      eng_.dispatch(std::move(it));
    }
  }
}

void Executor::merge_inbox(Slot& s) {
  scratch_.clear();
  s.inbox.drain_into(scratch_);
  for (auto& it : scratch_) {
    if (s.queue.empty() || s.queue.back().deadline <= it.deadline) {
      s.queue.push_back(std::move(it));
    } else {
      // Binary search for the first item with a later deadline (stable for equal ones).
      std::size_t lo = 0, hi = s.queue.size();
      while (lo < hi) {
        const std::size_t mid = (lo + hi) / 2;
        if (s.queue[mid].deadline <= it.deadline)
          lo = mid + 1;
        else
          hi = mid;
      }
      s.queue.insert(lo, std::move(it));
    }
  }
  scratch_.clear();
}

std::optional<TimePoint> Executor::next_cycle(TimePoint now) const {
  if (in_cycle_ || !started_ || eng_.options_.executor.work_conserving || duty_cycle_ <= Duration::zero())
    return std::nullopt;
  const TimePoint t = cycle_start_ + duty_cycle_;
  if (t <= now) return std::nullopt;
  return t;
}

bool Executor::take_in(int ns) {
  // Take in what producers pushed; items of sessions not served here (the plan changed under a
  // producer) are re-routed.
  bool work = false;
  for (int i = 0; i < ns; ++i) {
    Slot* s = slot(i);
    if (!s) continue;
    merge_inbox(*s);
    if (s->queue.empty()) continue;
    if (!s->active) {
      apply_pending_plan();
      if (!s->active) {
        while (!s->queue.empty()) {
          Item it = std::move(s->queue.front());
          s->queue.pop_front();
          s->queued.fetch_sub(1, std::memory_order_acq_rel);
          eng_.dispatch(std::move(it));
        }
        continue;
      }
    }
    work = true;
  }
  return work;
}

std::size_t Executor::decide(Slot& s, int idx, TimePoint now, std::vector<QueryResult>& done) {
  const SessionState* ss = eng_.sessions_[static_cast<std::size_t>(idx)].load();
  const ModelState& m = eng_.model(ss->model);
  s.wait_until.reset();
  const auto d = s.policy->decide(DequeView(s.queue), now, m.plan_latency, s.target_batch);
  for (std::size_t i = 0; i < d.drop; ++i) {
    Item it = std::move(s.queue.front());
    s.queue.pop_front();
    s.queued.fetch_sub(1, std::memory_order_acq_rel);
    eng_.end_item(it, RequestStatus::kDropped, Reason::kDeadline,
                  "dropped by the batch policy: cannot finish by its deadline", &done);
  }
  if (d.take > 0) {
    eng_.flush(done);
    return d.take;
  }
  s.wait_until = d.wait_until;
  return 0;
}

bool Executor::step(TimePoint now) {
  apply_pending_plan();
  const int ns = num_slots_.load(std::memory_order_acquire);
  if (ns == 0) return false;
  std::vector<QueryResult>& done = done_;
  const bool work = take_in(ns);
  if (!in_cycle_) {
    // A new duty cycle starts when there is work and the previous cycle's d has passed (paced),
    // or at once (work-conserving).
    if (!work || order_.empty() || next_cycle(now)) return false;
    in_cycle_ = true;
    started_ = true;
    cycle_start_ = now;
    cycle_pos_ = 0;
  }
  // One batch per session per cycle, in plan order.
  while (cycle_pos_ < order_.size()) {
    const int idx = order_[cycle_pos_++];
    if (const int g = group_of_.empty() ? -1 : group_of_[static_cast<std::size_t>(idx)]; g >= 0) {
      if (group_turn(groups_[static_cast<std::size_t>(g)], now, done)) return true;
      continue;
    }
    Slot* s = slot(idx);
    if (!s || !s->active || s->queue.empty()) continue;
    if (const std::size_t take = decide(*s, idx, now, done); take > 0) {
      if (cycle_pos_ >= order_.size()) in_cycle_ = false;
      run_batch(*s, take, now);
      return true;
    }
  }
  in_cycle_ = false;
  eng_.flush(done);
  return false;
}

Tensor Executor::stage_inputs(int model, std::vector<Item>& items) {
  const ModelState& m = eng_.model(model);
  if (staging_.size() <= static_cast<std::size_t>(model)) staging_.resize(static_cast<std::size_t>(model) + 1);
  Tensor& buf = staging_[static_cast<std::size_t>(model)];
  const auto n = static_cast<std::int64_t>(items.size());
  if (m.item_shape.rank() == 0) {
    // Unchecked shape: stack when every item has the same size, else hand over item 0's layout.
    auto size_of_item = [](const Tensor& t) -> std::int64_t { return t.empty() ? 0 : t.numel(); };
    const std::int64_t per = size_of_item(items[0].model_input);
    for (auto& it : items)
      if (size_of_item(it.model_input) != per || it.model_input.dtype() != items[0].model_input.dtype())
        throw_error("batch of '{}': items of different sizes ({} and {} elements)", m.spec.name,
                    per, size_of_item(it.model_input));
    if (per == 0) {
      if (buf.empty()) buf = Tensor(Shape{m.max_batch, 0});
      return buf.slice(0, n);
    }
    std::vector<std::int64_t> dims{n};
    const auto& s = items[0].model_input.shape();
    for (int i = (s.rank() > 0 && s[0] == 1 && s.rank() > 1) ? 1 : 0; i < s.rank(); ++i) dims.push_back(s[i]);
    Tensor out{Shape(dims), items[0].model_input.dtype()};
    const std::size_t bytes = items[0].model_input.nbytes();
    auto* dst = static_cast<std::byte*>(out.raw_data());
    for (std::int64_t i = 0; i < n; ++i)
      std::memcpy(dst + static_cast<std::size_t>(i) * bytes, items[static_cast<std::size_t>(i)].model_input.raw_data(), bytes);
    return out;
  }
  if (buf.empty()) {
    std::vector<std::int64_t> dims{m.max_batch};
    for (auto d : m.item_shape.dims()) dims.push_back(d);
    buf = Tensor(Shape(dims), m.spec.input_dtype);
  }
  const std::size_t bytes = static_cast<std::size_t>(m.item_shape.numel()) * size_of(m.spec.input_dtype);
  auto* dst = static_cast<std::byte*>(buf.raw_data());
  for (std::int64_t i = 0; i < n; ++i) {
    const Tensor& t = items[static_cast<std::size_t>(i)].model_input;
    NEXUS_CHECK(t.nbytes() == bytes && t.dtype() == m.spec.input_dtype,
                "model '{}': item input {} {} (expected {} {})", m.spec.name, t.shape(),
                name_of(t.dtype()), m.item_shape, name_of(m.spec.input_dtype));
    std::memcpy(dst + static_cast<std::size_t>(i) * bytes, t.raw_data(), bytes);
  }
  return buf.slice(0, n);
}

void Executor::run_batch(Slot& s, std::size_t take, TimePoint now) {
  const SessionState& ss = *eng_.sessions_[static_cast<std::size_t>(s.session)].load();
  const ModelState& m = eng_.model(ss.model);
  Batch b;
  b.session = s.session;
  b.device = device_;
  b.items.swap(spare_items_);  // empty; its capacity is reused
  b.items.reserve(take);
  for (std::size_t i = 0; i < take; ++i) {
    b.items.push_back(std::move(s.queue.front()));
    s.queue.pop_front();
  }
  s.queued.fetch_sub(take, std::memory_order_acq_rel);
  b.started = now;
  const Backend* backend = s.serving.backend.get();
  try {
    Tensor in = stage_inputs(ss.model, b.items);
    const PrefixGroupRuntime* g = s.serving.group.get();
    const auto dev = static_cast<std::size_t>(device_);
    if (s.serving.backend) {
      b.outputs = s.serving.backend->run({in});
    } else if (g && dev < g->runners.size() && g->runners[dev] && s.serving.member >= 0) {
      // Its own backend is released while the group holds its weights: the group's runner runs
      // this member alone (the prefix and its suffix on this batch, the other members none).
      std::vector<int> counts(g->models.size(), 0);
      counts[static_cast<std::size_t>(s.serving.member)] = static_cast<int>(take);
      auto outs = g->runners[dev]->run({in}, counts);
      b.outputs = std::move(outs[static_cast<std::size_t>(s.serving.member)]);
    } else {
      throw_error("model '{}': no backend on device {} (internal: not in the schedule)", m.spec.name, device_);
    }
  } catch (const std::exception& e) {
    b.failed = true;
    b.error = e.what();
  } catch (...) {
    b.failed = true;
    b.error = "unknown exception from the backend";
  }
  const auto n = static_cast<int>(take);
  Duration busy;
  if (eng_.virtual_) {
    // What the simulated device took (SimLatency's draw), else the profile's mean.
    if (const auto* sim = dynamic_cast<const sim::SimBackend*>(backend); sim && !b.failed)
      busy = sim->last_batch_time();
    else
      busy = m.sim_latency[static_cast<std::size_t>(std::clamp(n, 1, m.max_batch) - 1)];
    b.finished = now + busy;
  } else {
    b.finished = eng_.clock_->now();
    busy = b.finished - now;
  }
  busy_ns.fetch_add(static_cast<std::uint64_t>(std::max<Duration::rep>(0, busy.count())), std::memory_order_relaxed);
  batches.fetch_add(1, std::memory_order_relaxed);
  items.fetch_add(take, std::memory_order_relaxed);
  auto& sm = const_cast<SessionState&>(ss);
  sm.batches.fetch_add(1, std::memory_order_relaxed);
  sm.batch_items.fetch_add(take, std::memory_order_relaxed);
  if (n < sm.hist_size) sm.batch_hist[static_cast<std::size_t>(n)].fetch_add(1, std::memory_order_relaxed);
  if (concurrent_) {
    // Shares the device from now: its finish (and the policy's feedback) comes when its solo
    // time is used up (concurrent_sim_step).
    share_advance(now);
    s.running = true;
    shared_.push_back({std::move(b), static_cast<double>(busy.count())});
    return;
  }
  s.policy->on_batch_done(n, all_met(b.items, b.finished, b.failed));
  if (eng_.virtual_) {  // no allocation on the virtual-time hot path
    inflight_.clear();
    inflight_.push_back(std::move(b));
    busy_until_ = inflight_.front().finished;
    return;
  }
  std::vector<Batch> out;
  out.push_back(std::move(b));
  finish_batches(std::move(out));
}

void Executor::finish_batches(std::vector<Batch>&& batches) {
  if (batches.empty()) return;
  if (eng_.virtual_) {
    busy_until_ = batches.front().finished;
    inflight_ = std::move(batches);
    return;
  }
  if (eng_.options_.cpu_workers <= 0) {
    std::vector<QueryResult> done;
    for (auto& b : batches) eng_.complete_batch(b, &done);
    eng_.flush(done);
  } else {
    auto shared = std::make_shared<std::vector<Batch>>(std::move(batches));
    eng_.post_to_pool([this, shared] {
      std::vector<QueryResult> done;
      for (auto& b : *shared) eng_.complete_batch(b, &done);
      eng_.flush(done);
    });
  }
}

bool Executor::group_turn(GroupState& g, TimePoint now, std::vector<QueryResult>& done) {
  const std::size_t k = g.def.sessions.size();
  std::vector<Slot*> slots(k);
  std::vector<DequeView> views;
  views.reserve(k);
  std::vector<const dispatch::QueueView*> ptrs(k);
  std::size_t queued = 0;
  for (std::size_t i = 0; i < k; ++i) {
    slots[i] = slot(g.def.sessions[i]);
    slots[i]->wait_until.reset();
    views.emplace_back(slots[i]->queue);
    ptrs[i] = &views.back();
    queued += slots[i]->queue.size();
  }
  if (queued == 0) return false;
  // Early drop over all members' requests in deadline order, with ℓ_group; each member then
  // drops a prefix of its own queue (counted against its session) and gives the next to the batch.
  const dispatch::MergedQueueView merged(ptrs);
  const dispatch::BatchDecision d = g.policy->decide(merged, now, g.def.latency, g.def.batch);
  const dispatch::MemberDecision md = dispatch::split_by_member(merged, d);
  for (std::size_t i = 0; i < k; ++i)
    for (std::size_t j = 0; j < md.drop[i]; ++j) {
      Item it = std::move(slots[i]->queue.front());
      slots[i]->queue.pop_front();
      slots[i]->queued.fetch_sub(1, std::memory_order_acq_rel);
      eng_.end_item(it, RequestStatus::kDropped, Reason::kDeadline,
                    "dropped by the batch policy: cannot finish by its deadline", &done);
    }
  if (md.total_take() > 0) {
    eng_.flush(done);
    if (cycle_pos_ >= order_.size()) in_cycle_ = false;
    run_group_batch(g, md.take, now);
    return true;
  }
  for (Slot* s : slots) s->wait_until = d.wait_until;
  return false;
}

void Executor::run_group_batch(GroupState& g, const std::vector<std::size_t>& take, TimePoint now) {
  const PrefixGroupRuntime& rt = *g.def.runtime;
  const std::size_t members = rt.models.size();
  const auto dev = static_cast<std::size_t>(device_);
  // The merged batch: member models in runner order, each member's sessions in schedule order.
  struct Part {
    int session, member;
    std::size_t begin, n;
  };
  std::vector<Part> parts;
  std::vector<Item> merged;
  std::vector<int> counts(members, 0);
  std::vector<std::size_t> member_begin(members, 0);
  std::vector<int> member_of_session(g.def.sessions.size());
  for (std::size_t i = 0; i < g.def.sessions.size(); ++i) {
    const SessionState& ss = *eng_.sessions_[static_cast<std::size_t>(g.def.sessions[i])].load();
    member_of_session[i] = rt.member_of(ss.model);
  }
  for (std::size_t m = 0; m < members; ++m) {
    member_begin[m] = merged.size();
    for (std::size_t i = 0; i < g.def.sessions.size(); ++i) {
      if (member_of_session[i] != static_cast<int>(m) || take[i] == 0) continue;
      Slot& s = *slot(g.def.sessions[i]);
      parts.push_back({g.def.sessions[i], static_cast<int>(m), merged.size(), take[i]});
      for (std::size_t j = 0; j < take[i]; ++j) {
        merged.push_back(std::move(s.queue.front()));
        s.queue.pop_front();
      }
      s.queued.fetch_sub(take[i], std::memory_order_acq_rel);
      counts[m] += static_cast<int>(take[i]);
    }
  }
  const auto n = static_cast<int>(merged.size());
  std::vector<std::vector<Tensor>> outs(members);
  bool failed = false;
  std::string error;
  Duration drawn{0};
  bool have_draw = false;
  try {
    // Every member takes the same input (detection / load_model check it): one staging buffer.
    Tensor in = stage_inputs(rt.models[0], merged);
    auto slice_of = [&](std::size_t m) {
      return in.slice(static_cast<std::int64_t>(member_begin[m]),
                      static_cast<std::int64_t>(member_begin[m]) + counts[m]);
    };
    if (dev < rt.runners.size() && rt.runners[dev]) {
      outs = rt.runners[dev]->run({in}, counts);  // the prefix once, each suffix on its slice
    } else if (dev < rt.sim.size() && rt.sim[dev].prefix) {
      // A sim executes nothing: the prefix's and suffixes' times are drawn (SimLatency noise).
      rt.sim[dev].prefix->run({in});
      drawn = rt.sim[dev].prefix->last_batch_time();
      for (std::size_t m = 0; m < members; ++m) {
        if (counts[m] == 0) continue;
        outs[m] = rt.sim[dev].suffixes[m]->run({slice_of(m)});
        drawn += rt.sim[dev].suffixes[m]->last_batch_time();
      }
      have_draw = true;
    } else {
      // A declared group on a real device: each member's own backend runs its slice in turn
      // (the merged batch is formed and planned; the prefix is not shared).
      // (each member's backend from its sessions' schedule entries).
      std::vector<Backend*> own(members, nullptr);
      for (std::size_t i = 0; i < g.def.sessions.size(); ++i)
        if (member_of_session[i] >= 0)
          if (Slot* s = slot(g.def.sessions[i]); s && s->serving.backend)
            own[static_cast<std::size_t>(member_of_session[i])] = s->serving.backend.get();
      for (std::size_t m = 0; m < members; ++m) {
        if (counts[m] == 0) continue;
        NEXUS_CHECK(own[m] != nullptr, "prefix group '{}': member '{}' has no backend on device {}", rt.key,
                    eng_.model(rt.models[m]).spec.name, device_);
        outs[m] = own[m]->run({slice_of(m)});
      }
    }
  } catch (const std::exception& e) {
    failed = true;
    error = e.what();
  } catch (...) {
    failed = true;
    error = "unknown exception from the backend";
  }
  TimePoint finished;
  Duration busy;
  if (eng_.virtual_) {
    if (have_draw) {
      busy = drawn;
    } else {
      std::chrono::microseconds us = rt.prefix.mean_latency(std::clamp(n, 1, rt.prefix.max_batch()));
      for (std::size_t m = 0; m < members; ++m)
        if (counts[m] > 0) us += rt.suffixes[m].mean_latency(std::min(counts[m], rt.suffixes[m].max_batch()));
      busy = std::chrono::duration_cast<Duration>(us);
    }
    finished = now + busy;
  } else {
    finished = eng_.clock_->now();
    busy = finished - now;
  }
  busy_ns.fetch_add(static_cast<std::uint64_t>(std::max<Duration::rep>(0, busy.count())), std::memory_order_relaxed);
  batches.fetch_add(1, std::memory_order_relaxed);
  items.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
  PrefixGroupCounters& c = *rt.counters;
  c.batches.fetch_add(1, std::memory_order_relaxed);
  c.items.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
  c.hist[static_cast<std::size_t>(std::min<int>(n, static_cast<int>(c.hist.size()) - 1))].fetch_add(1, std::memory_order_relaxed);
  for (int prev = c.max_batch.load(std::memory_order_relaxed);
       n > prev && !c.max_batch.compare_exchange_weak(prev, n, std::memory_order_relaxed);) {
  }
  g.policy->on_batch_done(n, all_met(merged, finished, failed));
  // One batch per member session, its items and its slice of its model's outputs.
  std::vector<Batch> out;
  for (const Part& p : parts) {
    Batch b;
    b.session = p.session;
    b.device = device_;
    b.started = now;
    b.finished = finished;
    b.merged_size = n;
    b.failed = failed;
    b.error = error;
    const auto m = static_cast<std::size_t>(p.member);
    const auto off = static_cast<std::int64_t>(p.begin - member_begin[m]);
    const auto cnt = static_cast<std::int64_t>(p.n);
    if (!failed)
      for (const Tensor& o : outs[m])
        b.outputs.push_back(o.shape().rank() >= 1 && o.shape()[0] == counts[m] ? o.slice(off, off + cnt) : o);
    b.items.reserve(p.n);
    for (std::size_t j = 0; j < p.n; ++j) b.items.push_back(std::move(merged[p.begin + j]));
    auto& sm = const_cast<SessionState&>(*eng_.sessions_[static_cast<std::size_t>(p.session)].load());
    sm.batches.fetch_add(1, std::memory_order_relaxed);
    sm.batch_items.fetch_add(p.n, std::memory_order_relaxed);
    if (static_cast<int>(p.n) < sm.hist_size) sm.batch_hist[p.n].fetch_add(1, std::memory_order_relaxed);
    out.push_back(std::move(b));
  }
  finish_batches(std::move(out));
}

void Executor::loop() {
  while (true) {
    if (step(eng_.clock_->now())) continue;
    if (stop_.load(std::memory_order_acquire)) break;
    // Spin briefly before sleeping: a producer's next push is often microseconds away, and a
    // futex wake-up costs more than the wait.
    bool arrived = false;
    for (int spin = 0; spin < 64 && !arrived; ++spin) {
      const int n = num_slots_.load(std::memory_order_acquire);
      for (int i = 0; i < n && !arrived; ++i)
        if (Slot* s = slot(i); s && !s->inbox.empty()) arrived = true;
      if (!arrived) std::this_thread::yield();
    }
    if (arrived) continue;
    // Sleep until a push, a plan, a policy timeout or a 2 ms backstop.
    TimePoint wake = eng_.clock_->now() + std::chrono::milliseconds(2);
    const int ns = num_slots_.load(std::memory_order_acquire);
    bool queued_work = false;
    for (int i = 0; i < ns; ++i)
      if (Slot* s = slot(i); s && !s->queue.empty()) {
        queued_work = true;
        if (s->wait_until) wake = std::min(wake, *s->wait_until);
      }
    // Paced: queued work waits for the next duty cycle.
    if (queued_work)
      if (auto c = next_cycle(eng_.clock_->now())) wake = std::min(wake, *c);
    std::unique_lock lock(wake_mu_);
    sleeping_.store(true, std::memory_order_seq_cst);
    bool pending = plan_pending_.load();
    for (int i = 0; i < ns && !pending; ++i)
      if (Slot* s = slot(i); s && !s->inbox.empty()) pending = true;
    if (!pending && !stop_.load()) {
      const auto rel = wake - eng_.clock_->now();
      if (rel > Duration::zero()) wake_cv_.wait_for(lock, rel);
    }
    sleeping_.store(false, std::memory_order_seq_cst);
  }
}

std::optional<TimePoint> Executor::next_event(TimePoint now) const {
  if (concurrent_) {
    // The next completion, or now / a policy's wait for a session with no batch in flight.
    if (plan_pending_.load()) return now;
    std::optional<TimePoint> t = share_next_completion();
    const int ns = num_slots_.load(std::memory_order_acquire);
    for (int i = 0; i < ns; ++i) {
      const Slot* s = slot(i);
      if (!s) continue;
      if (!s->inbox.empty()) return now;
      if (s->queue.empty()) continue;
      if (!s->active) return now;  // to re-route
      if (s->running) continue;    // waits for its batch in flight
      const TimePoint w = s->wait_until ? std::max(now, *s->wait_until) : now;
      if (!t || w < *t) t = w;
    }
    return t;
  }
  if (!inflight_.empty()) return busy_until_;
  if (plan_pending_.load()) return now;
  std::optional<TimePoint> t;
  const int ns = num_slots_.load(std::memory_order_acquire);
  for (int i = 0; i < ns; ++i) {
    const Slot* s = slot(i);
    if (!s) continue;
    if (!s->inbox.empty()) return now;
    if (!s->queue.empty()) {
      if (!s->active) return now;  // to re-route
      const TimePoint w = s->wait_until ? std::max(now, *s->wait_until) : now;
      if (!t || w < *t) t = w;
    }
  }
  if (t && !in_cycle_)
    if (auto c = next_cycle(now)) t = std::max(*t, *c);
  return t;
}

void Executor::share_advance(TimePoint now) {
  if (!shared_.empty() && now > shared_since_) {
    const double done = static_cast<double>((now - shared_since_).count()) / static_cast<double>(shared_.size());
    for (auto& r : shared_) r.remaining_ns -= done;
  }
  shared_since_ = now;
}

std::optional<TimePoint> Executor::share_next_completion() const {
  if (shared_.empty()) return std::nullopt;
  double least = shared_.front().remaining_ns;
  for (const auto& r : shared_) least = std::min(least, r.remaining_ns);
  const double wall = std::ceil(std::max(0.0, least) * static_cast<double>(shared_.size()) - 1e-6);
  return shared_since_ + Duration(static_cast<Duration::rep>(wall));
}

void Executor::concurrent_sim_step(TimePoint now) {
  share_advance(now);
  // Solo time used up (to rounding: the event is at the next nanosecond): the batch ends now, in
  // start order; the policy learns whether it met every deadline.
  bool ended = false;
  for (auto& r : shared_) {
    if (r.remaining_ns > 1e-3) continue;
    Batch& b = r.batch;
    b.finished = now;
    if (Slot* s = slot(b.session)) {
      s->running = false;
      s->policy->on_batch_done(static_cast<int>(b.items.size()), all_met(b.items, b.finished, b.failed));
    }
    eng_.complete_batch(b, &done_);
    ended = true;
  }
  if (ended)
    shared_.erase(std::remove_if(shared_.begin(), shared_.end(), [](const Shared& r) { return r.remaining_ns <= 1e-3; }),
                  shared_.end());
  eng_.flush(done_);
  // Every session with no batch in flight forms its own (plan order), as its policy decides.
  apply_pending_plan();
  const int ns = num_slots_.load(std::memory_order_acquire);
  if (ns == 0) return;
  take_in(ns);
  for (const int idx : order_) {
    Slot* s = slot(idx);
    if (!s || !s->active || s->running || s->queue.empty()) continue;
    if (const std::size_t take = decide(*s, idx, now, done_); take > 0) run_batch(*s, take, now);
  }
  eng_.flush(done_);
}

void Executor::sim_step(TimePoint now) {
  if (concurrent_) {
    concurrent_sim_step(now);
    return;
  }
  if (!inflight_.empty() && now >= busy_until_) {
    for (auto& b : inflight_) eng_.complete_batch(b, &done_);
    eng_.flush(done_);
    inflight_.back().items.clear();
    spare_items_.swap(inflight_.back().items);
    inflight_.clear();  // keeps its capacity
  }
  if (inflight_.empty()) step(now);
}

void Executor::drop_all(Reason reason, const char* message) {
  std::vector<QueryResult> done;
  if (!inflight_.empty()) {
    std::vector<Batch> bs = std::move(inflight_);
    inflight_.clear();
    for (auto& b : bs) eng_.complete_batch(b, &done);
  }
  if (!shared_.empty()) {  // (none after run_until_idle) they end at their solo finish
    std::vector<Shared> rs = std::move(shared_);
    shared_.clear();
    for (auto& r : rs) {
      if (Slot* s = slot(r.batch.session)) s->running = false;
      eng_.complete_batch(r.batch, &done);
    }
  }
  const int ns = num_slots_.load(std::memory_order_acquire);
  for (int i = 0; i < ns; ++i) {
    Slot* s = slot(i);
    if (!s) continue;
    merge_inbox(*s);
    while (!s->queue.empty()) {
      Item it = std::move(s->queue.front());
      s->queue.pop_front();
      s->queued.fetch_sub(1, std::memory_order_acq_rel);
      eng_.end_item(it, RequestStatus::kDropped, reason, message, &done);
    }
  }
  eng_.flush(done);
}

}  // namespace nexus::runtime
