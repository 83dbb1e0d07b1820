// CpuBackend: memory planner, thread pool and Eigen kernels for every op of the Graph IR.
#include "nexus/exec/cpu_backend.hpp"

#include <algorithm>
#include <unistd.h>
#include <atomic>
#ifdef NEXUS_CPU_STEP_TIMING
#include <chrono>
#include <cstdio>
#include <map>
#endif
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <type_traits>
#include <limits>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/model/graph.hpp"

#include "eigen_isa_begin.inc"
#include <Eigen/Core>

namespace nexus {

namespace {

using model::Node;
using model::OpType;
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
using ConstMatMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

constexpr std::int64_t kAlignFloats = 16;  // 64-byte slots in the arena

std::int64_t round_up(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }

// ---- thread pool -------------------------------------------------------------------------------

// A non-owning reference to a callable void(int): no allocation per parallel region (a
// std::function would allocate for the larger lambdas). The callable outlives the call.
class TaskRef {
 public:
  template <typename F>
  TaskRef(F&& f)  // NOLINT: implicit by design
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, int i) { (*static_cast<std::remove_reference_t<F>*>(o))(i); }) {}
  void operator()(int i) const { call_(obj_, i); }

 private:
  void* obj_;
  void (*call_)(void*, int);
};

// A fixed pool: run(tasks, fn) calls fn(0..tasks-1) on the workers and the caller, and returns
// when all calls are done. One caller at a time (the Backend's run() contract).
class ThreadPool {
 public:
  explicit ThreadPool(int threads) : size_(std::max(1, threads)) {
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return size_; }

  void run(int tasks, TaskRef fn) {
    if (tasks <= 0) return;
    if (tasks == 1 || workers_.empty()) {
      for (int i = 0; i < tasks; ++i) fn(i);
      return;
    }
    {
      std::lock_guard lk(mu_);
      job_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      done_ = 0;
      finished_ = false;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock lk(mu_);
    done_cv_.wait(lk, [&] { return done_ == tasks_ && active_ == 0; });
    finished_ = true;  // late wakers of this generation skip it
    job_ = nullptr;
  }

 private:
  void work() {
    int local = 0;
    for (int i; (i = next_.fetch_add(1)) < tasks_;) {
      (*job_)(i);
      ++local;
    }
    std::lock_guard lk(mu_);
    done_ += local;
    if (done_ == tasks_) done_cv_.notify_all();
  }
  void loop() {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lk(mu_);
        wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (finished_) continue;
        ++active_;
      }
      work();
      {
        std::lock_guard lk(mu_);
        --active_;
      }
      done_cv_.notify_all();
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_cv_;
  const TaskRef* job_ = nullptr;
  int tasks_ = 0;  // written under mu_ before next_ is reset; read after a fetch_add on next_
  std::atomic<int> next_{0};
  int done_ = 0, active_ = 0;
  bool finished_ = true, stop_ = false;
  std::uint64_t generation_ = 0;
};

// Splits [0, total) into at most pool.size() contiguous chunks of at least `grain` and runs
// fn(begin, end) on each.
template <typename F>
void parallel_range(ThreadPool& pool, std::int64_t total, std::int64_t grain, const F& fn) {
  if (total <= 0) return;
  const std::int64_t parts =
      std::clamp<std::int64_t>(total / std::max<std::int64_t>(grain, 1), 1, pool.size());
  if (parts == 1) {
    fn(0, total);
    return;
  }
  pool.run(static_cast<int>(parts), [&](int t) {
    const std::int64_t b = total * t / parts, e = total * (t + 1) / parts;
    if (b < e) fn(b, e);
  });
}

// ---- activations -------------------------------------------------------------------------------

enum class Act { kNone, kRelu, kRelu6, kLeaky };

inline void apply_bias_act(float* y, std::int64_t count, float bias, Act act, float alpha) {
  switch (act) {
    case Act::kNone:
      for (std::int64_t i = 0; i < count; ++i) y[i] += bias;
      break;
    case Act::kRelu:
      for (std::int64_t i = 0; i < count; ++i) y[i] = std::max(y[i] + bias, 0.0f);
      break;
    case Act::kRelu6:
      for (std::int64_t i = 0; i < count; ++i) y[i] = std::min(std::max(y[i] + bias, 0.0f), 6.0f);
      break;
    case Act::kLeaky:
      for (std::int64_t i = 0; i < count; ++i) {
        const float v = y[i] + bias;
        y[i] = v < 0.0f ? v * alpha : v;
      }
      break;
  }
}

// ---- per-node plan ---------------------------------------------------------------------------

enum class Storage { kArena, kInput, kConstant };

struct Step {
  const Node* node = nullptr;
  Act act = Act::kNone;  // fused activation (Conv2D, FullyConnected)
  float act_alpha = 0.0f;
  bool skip = false;     // alias or fused: nothing to run
  // Conv2D
  bool depthwise = false, direct_1x1 = false;
  std::int64_t k_rows = 0;  // rows of the im2col matrix per group (I/groups * KH * KW)
  // BatchNorm / ScaleOffset as y = x * k + t
  std::vector<float> k, t;
  // ResizeBilinear: per output row / column
  std::vector<std::int64_t> y0, y1, x0, x1;
  std::vector<float> ly, lx;
  // Binary ops with numpy broadcasting: output dims and each operand's element strides
  // (0 along broadcast axes), padded on the left to the same rank.
  bool general = false;
  std::vector<std::int64_t> dims, a_str, b_str;
  // Transpose / Slice / Pad: output dims, and per output axis the input stride and offset.
  std::vector<std::int64_t> in_str;
  std::int64_t in_off = 0;
};

// The IR's legacy per-channel right operand ([C] / [C, 1, ...] of lower rank, or a scalar).
bool per_channel(const Shape& sa, const Shape& sb) {
  if (sa.rank() < 1 || sb.rank() < 1 || sb.rank() >= sa.rank() || sb.numel() < 1) return false;
  bool trailing_ones = true;
  for (int i = 1; i < sb.rank(); ++i) trailing_ones = trailing_ones && sb[i] == 1;
  return trailing_ones && (sb[0] == sa[0] || sb.numel() == 1);
}

// Row-major element strides of `s`.
std::vector<std::int64_t> strides_of(const Shape& s) {
  std::vector<std::int64_t> st(static_cast<std::size_t>(s.rank()), 1);
  for (int i = s.rank() - 2; i >= 0; --i)
    st[static_cast<std::size_t>(i)] = st[static_cast<std::size_t>(i + 1)] * s[i + 1];
  return st;
}

// TensorFlow's compute_interpolation_weights (resize_bilinear_op.cc).
// `given`: an ONNX model's out/in scale (0: derive from the sizes).
void interpolation(std::int64_t in, std::int64_t out, const model::ResizeAttrs& a,
                   std::vector<std::int64_t>& lo, std::vector<std::int64_t>& hi,
                   std::vector<float>& lerp, float given = 0.0f) {
  // ONNX align_corners with a given scale divides by (in * scale - 1), unrounded.
  const float scale = (a.align_corners && given > 0.0f && in * given > 1.0f)
                          ? static_cast<float>(in - 1) / (static_cast<float>(in) * given - 1.0f)
                      : (a.align_corners && out > 1)
                          ? static_cast<float>(in - 1) / static_cast<float>(out - 1)
                      : given > 0.0f ? 1.0f / given
                                     : static_cast<float>(in) / static_cast<float>(out);
  lo.resize(static_cast<std::size_t>(out));
  hi.resize(static_cast<std::size_t>(out));
  lerp.resize(static_cast<std::size_t>(out));
  for (std::int64_t i = 0; i < out; ++i) {
    float src = a.half_pixel_centers ? (static_cast<float>(i) + 0.5f) * scale - 0.5f
                                     : static_cast<float>(i) * scale;
    if (a.coord == model::ResizeCoord::kPytorchHalfPixel && out == 1) src = 0.0f;
    const float f = std::floor(src);
    lo[static_cast<std::size_t>(i)] = std::max<std::int64_t>(static_cast<std::int64_t>(f), 0);
    hi[static_cast<std::size_t>(i)] =
        std::min<std::int64_t>(static_cast<std::int64_t>(std::ceil(src)), in - 1);
    lerp[static_cast<std::size_t>(i)] = src - f;
  }
}

// ONNX Resize (nearest): source index of each output index along one axis.
void nearest_index(std::int64_t in, std::int64_t out, const model::ResizeAttrs& a, float given,
                   std::vector<std::int64_t>& idx) {
  using model::NearestRound;
  using model::ResizeCoord;
  const double scale = given > 0.0f ? given : static_cast<double>(out) / static_cast<double>(in);
  idx.resize(static_cast<std::size_t>(out));
  for (std::int64_t i = 0; i < out; ++i) {
    const double x = static_cast<double>(i);
    double src = 0.0;
    switch (a.coord) {
      case ResizeCoord::kAsymmetric: src = x / scale; break;
      case ResizeCoord::kHalfPixel: src = (x + 0.5) / scale - 0.5; break;
      case ResizeCoord::kPytorchHalfPixel: src = out > 1 ? (x + 0.5) / scale - 0.5 : 0.0; break;
      case ResizeCoord::kAlignCorners:
        src = out > 1 ? x * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
        break;
      case ResizeCoord::kTfHalfPixelForNN: src = (x + 0.5) / scale; break;
    }
    double r = 0.0;
    switch (a.nearest) {
      case NearestRound::kRoundPreferFloor:
        r = src == std::floor(src) + 0.5 ? std::floor(src) : std::round(src);
        break;
      case NearestRound::kRoundPreferCeil: r = std::round(src); break;
      case NearestRound::kFloor: r = std::floor(src); break;
      case NearestRound::kCeil: r = std::ceil(src); break;
    }
    idx[static_cast<std::size_t>(i)] =
        std::clamp<std::int64_t>(static_cast<std::int64_t>(r), 0, in - 1);
  }
}

}  // namespace

// ---- Impl --------------------------------------------------------------------------------------

struct CpuBackend::Impl {
  explicit Impl(int threads) : pool(threads) {}

  ThreadPool pool;
  bool loaded = false;
  model::Graph graph;
  int max_batch = 0;
  std::vector<Step> steps;
  std::vector<model::NodeId> src;        // node -> node whose buffer holds its value
  std::vector<Storage> storage;          // of src nodes
  std::vector<std::int64_t> offset;      // arena offset (floats) of src nodes, max_batch layout
  std::vector<int> input_index;          // node -> graph input index (kInput)
  std::int64_t arena_item_floats = 0;    // peak arena per item
  std::int64_t scratch_floats = 0;       // im2col scratch per thread
  std::vector<float, Eigen::aligned_allocator<float>> arena;
  std::vector<std::vector<float, Eigen::aligned_allocator<float>>> scratch;
  // Bound per run.
  const std::vector<Tensor>* inputs = nullptr;

  void plan();
  const float* in_ptr(model::NodeId id, std::int64_t n) const;
  float* out_ptr(model::NodeId id, std::int64_t n);
  std::int64_t item_stride(model::NodeId id) const {
    return storage[static_cast<std::size_t>(src[static_cast<std::size_t>(id)])] ==
                   Storage::kConstant
               ? 0
               : graph.node(id).shape.numel();
  }

  void run_step(const Step& s, int n);
  void conv(const Step& s, int n);
  void conv_item(const Step& s, const float* x, float* y, float* cols, bool split);
  void depthwise(const Step& s, int n);
  void fully_connected(const Step& s, int n);
  void pool2d(const Step& s, int n);
  void global_avg_pool(const Step& s, int n);
  void elementwise(const Step& s, int n);
  void affine(const Step& s, int n);
  void binary(const Step& s, int n);
  void concat(const Step& s, int n);
  void softmax(const Step& s, int n);
  void resize(const Step& s, int n);
  void resize_nearest(const Step& s, int n);
  void conv_transpose(const Step& s, int n);
  void strided_copy(const Step& s, int n);  // Transpose, Slice, Pad
  void matmul(const Step& s, int n);
  void reduce_mean(const Step& s, int n);
};

const float* CpuBackend::Impl::in_ptr(model::NodeId id, std::int64_t n) const {
  const model::NodeId s = src[static_cast<std::size_t>(id)];
  const std::int64_t item = graph.node(id).shape.numel();
  switch (storage[static_cast<std::size_t>(s)]) {
    case Storage::kInput:
      return (*inputs)[static_cast<std::size_t>(input_index[static_cast<std::size_t>(s)])]
                 .data<float>() +
             n * item;
    case Storage::kConstant:
      return graph.node(s).weight.data<float>();
    case Storage::kArena:
      break;
  }
  return arena.data() + offset[static_cast<std::size_t>(s)] + n * item;
}

float* CpuBackend::Impl::out_ptr(model::NodeId id, std::int64_t n) {
  return arena.data() + offset[static_cast<std::size_t>(src[static_cast<std::size_t>(id)])] +
         n * graph.node(id).shape.numel();
}

void CpuBackend::Impl::plan() {
  const auto& nodes = graph.nodes();
  const std::size_t count = nodes.size();
  steps.assign(count, Step{});
  src.resize(count);
  storage.assign(count, Storage::kArena);
  offset.assign(count, 0);
  input_index.assign(count, -1);
  for (std::size_t i = 0; i < graph.inputs().size(); ++i)
    input_index[static_cast<std::size_t>(graph.inputs()[i])] = static_cast<int>(i);

  std::vector<int> consumers(count, 0);
  std::vector<char> is_output(count, 0);
  for (const Node& n : nodes)
    for (model::NodeId in : n.inputs) ++consumers[static_cast<std::size_t>(in)];
  for (model::NodeId o : graph.outputs()) is_output[static_cast<std::size_t>(o)] = 1;

  scratch_floats = 0;
  for (const Node& n : nodes) {
    const auto i = static_cast<std::size_t>(n.id);
    Step& s = steps[i];
    s.node = &n;
    src[i] = n.id;
    switch (n.op) {
      case OpType::kInput:
        storage[i] = Storage::kInput;
        s.skip = true;
        break;
      case OpType::kConstant:
        storage[i] = Storage::kConstant;
        s.skip = true;
        break;
      case OpType::kFlatten:
      case OpType::kReshape:
        src[i] = src[static_cast<std::size_t>(n.inputs[0])];
        s.skip = true;
        break;
      case OpType::kRelu:
      case OpType::kRelu6:
      case OpType::kLeakyRelu: {
        // Fuse into a Conv2D / FC whose only consumer this is.
        const Node& p = graph.node(n.inputs[0]);
        const auto pi = static_cast<std::size_t>(p.id);
        if ((p.op == OpType::kConv2D || p.op == OpType::kFullyConnected ||
             p.op == OpType::kAdd) &&
            consumers[pi] == 1 && !is_output[pi] && steps[pi].act == Act::kNone) {
          steps[pi].act = n.op == OpType::kRelu    ? Act::kRelu
                          : n.op == OpType::kRelu6 ? Act::kRelu6
                                                   : Act::kLeaky;
          steps[pi].act_alpha = n.alpha;
          src[i] = src[pi];
          s.skip = true;
        }
        break;
      }
      case OpType::kConv2D: {
        const auto& w = n.weight.shape();  // [O, I/g, KH, KW]
        const auto& a = n.conv;
        const std::int64_t c = graph.node(n.inputs[0]).shape[0];
        s.depthwise = a.groups > 1 && a.groups == c && w[1] == 1;
        s.direct_1x1 = w[2] == 1 && w[3] == 1 && a.stride_h == 1 && a.stride_w == 1 &&
                       a.pads == model::Pads{};
        s.k_rows = w[1] * w[2] * w[3];
        if (!s.depthwise && !s.direct_1x1)
          scratch_floats = std::max(scratch_floats, s.k_rows * n.shape[1] * n.shape[2]);
        break;
      }
      case OpType::kBatchNorm:
      case OpType::kScaleOffset: {
        const std::int64_t ch = n.shape[0];
        s.k.resize(static_cast<std::size_t>(ch));
        s.t.resize(static_cast<std::size_t>(ch));
        for (std::int64_t c = 0; c < ch; ++c) {
          const float scale = n.weight.data<float>()[c], off = n.bias.data<float>()[c];
          if (n.op == OpType::kBatchNorm) {
            const float k = scale / std::sqrt(n.variance.data<float>()[c] + n.alpha);
            s.k[static_cast<std::size_t>(c)] = k;
            s.t[static_cast<std::size_t>(c)] = off - n.mean.data<float>()[c] * k;
          } else {
            s.k[static_cast<std::size_t>(c)] = scale;
            s.t[static_cast<std::size_t>(c)] = off;
          }
        }
        break;
      }
      case OpType::kResizeBilinear: {
        const Shape& in = graph.node(n.inputs[0]).shape;
        interpolation(in[1], n.shape[1], n.resize, s.y0, s.y1, s.ly, n.resize.scale_h);
        interpolation(in[2], n.shape[2], n.resize, s.x0, s.x1, s.lx, n.resize.scale_w);
        break;
      }
      case OpType::kResizeNearest: {
        const Shape& in = graph.node(n.inputs[0]).shape;
        nearest_index(in[1], n.shape[1], n.resize, n.resize.scale_h, s.y0);
        nearest_index(in[2], n.shape[2], n.resize, n.resize.scale_w, s.x0);
        break;
      }
      case OpType::kConvTranspose: {
        const auto& w = n.weight.shape();  // [I, O/g, KH, KW]
        const Shape& in = graph.node(n.inputs[0]).shape;
        scratch_floats = std::max(scratch_floats, w[1] * w[2] * w[3] * in[1] * in[2]);
        break;
      }
      case OpType::kAdd: case OpType::kSub: case OpType::kMul: case OpType::kDiv: {
        const Shape& sa = graph.node(n.inputs[0]).shape;
        const Shape& sb = graph.node(n.inputs[1]).shape;
        if (!(sa == n.shape && (sb == sa || per_channel(sa, sb)))) {
          s.general = true;
          s.dims = n.shape.dims();
          const auto r = static_cast<std::size_t>(n.shape.rank());
          for (const Shape* sh : {&sa, &sb}) {
            std::vector<std::int64_t> d(r - static_cast<std::size_t>(sh->rank()), 1);
            d.insert(d.end(), sh->dims().begin(), sh->dims().end());  // numpy: align right
            const Shape ext(std::move(d));
            const auto st = strides_of(ext);
            auto& out = sh == &sa ? s.a_str : s.b_str;
            out.assign(r, 0);
            for (std::size_t k = 0; k < r; ++k) out[k] = ext[static_cast<int>(k)] == 1 ? 0 : st[k];
          }
        }
        break;
      }
      case OpType::kTranspose: {
        const Shape& in = graph.node(n.inputs[0]).shape;
        const auto st = strides_of(in);
        s.dims = n.shape.dims();
        for (int p : n.perm) s.in_str.push_back(st[static_cast<std::size_t>(p)]);
        break;
      }
      case OpType::kSlice: {
        const Shape& in = graph.node(n.inputs[0]).shape;
        const auto st = strides_of(in);
        s.dims = n.shape.dims();
        for (std::size_t k = 0; k < st.size(); ++k) {
          s.in_str.push_back(st[k] * n.step[k]);
          s.in_off += st[k] * n.begin[k];
        }
        break;
      }
      default:
        break;
    }
  }

  // Lifetimes: a buffer lives from its producer to the last consumer of any alias of it;
  // graph outputs live to the end.
  std::vector<std::size_t> last_use(count, 0);
  for (const Node& n : nodes) {
    const auto i = static_cast<std::size_t>(n.id);
    last_use[static_cast<std::size_t>(src[i])] =
        std::max(last_use[static_cast<std::size_t>(src[i])], i);
    for (model::NodeId in : n.inputs) {
      auto& lu = last_use[static_cast<std::size_t>(src[static_cast<std::size_t>(in)])];
      lu = std::max(lu, i);
    }
  }
  for (model::NodeId o : graph.outputs())
    last_use[static_cast<std::size_t>(src[static_cast<std::size_t>(o)])] = count;

  // In place: an elementwise op whose (first same-shaped) input buffer dies at this op writes
  // its output into that buffer (out[i] depends on in[i] only). Views of this op then follow.
  for (const Node& n : nodes) {
    const auto i = static_cast<std::size_t>(n.id);
    if (src[i] != n.id) {  // a view or fused op: re-resolve, its source may have moved in place
      src[i] = src[static_cast<std::size_t>(src[i])];
      continue;
    }
    bool elementwise = false;
    switch (n.op) {
      case OpType::kRelu: case OpType::kRelu6: case OpType::kLeakyRelu: case OpType::kSigmoid:
      case OpType::kTanh: case OpType::kBatchNorm: case OpType::kScaleOffset: case OpType::kAdd:
      case OpType::kMul: case OpType::kSub: case OpType::kDiv: case OpType::kClip:
      case OpType::kHardSigmoid: case OpType::kHardSwish: case OpType::kSqrt: case OpType::kPow:
        elementwise = true;
        break;
      default:
        break;
    }
    if (!elementwise) continue;
    for (model::NodeId in : n.inputs) {
      const auto s_in = static_cast<std::size_t>(src[static_cast<std::size_t>(in)]);
      if (storage[s_in] != Storage::kArena || last_use[s_in] != i ||
          graph.node(in).shape != n.shape)
        continue;
      src[i] = static_cast<model::NodeId>(s_in);
      last_use[s_in] = last_use[i];
      break;
    }
  }

  // Best-fit placement in a per-item arena; scaled by max_batch (linear, so no overlap appears).
  struct Block {
    std::int64_t off, size;
    std::size_t owner;
  };
  std::vector<Block> live;
  std::vector<std::int64_t> item_off(count, 0);
  std::int64_t peak = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (src[i] == static_cast<model::NodeId>(i) && storage[i] == Storage::kArena) {
      const std::int64_t size = round_up(nodes[i].shape.numel(), kAlignFloats);
      std::int64_t best = -1, best_gap = std::numeric_limits<std::int64_t>::max(), end = 0;
      for (const Block& b : live) {
        const std::int64_t gap = b.off - end;
        if (gap >= size && gap < best_gap) {
          best = end;
          best_gap = gap;
        }
        end = std::max(end, b.off + b.size);
      }
      if (best < 0) best = end;
      item_off[i] = best;
      peak = std::max(peak, best + size);
      live.push_back({best, size, i});
      std::sort(live.begin(), live.end(), [](const Block& a, const Block& b) { return a.off < b.off; });
    }
    std::erase_if(live, [&](const Block& b) { return last_use[b.owner] <= i; });
  }
  arena_item_floats = peak;
  for (std::size_t i = 0; i < count; ++i) offset[i] = item_off[i] * max_batch;
  arena.assign(static_cast<std::size_t>(peak * max_batch), 0.0f);
  scratch.assign(static_cast<std::size_t>(pool.size()),
                 std::vector<float, Eigen::aligned_allocator<float>>(
                     static_cast<std::size_t>(scratch_floats)));
}

// ---- kernels -----------------------------------------------------------------------------------

namespace {

// im2col rows [r0, r1) of one group: cols[(c, kh, kw), (oh, ow)].
void im2col(const float* x, std::int64_t h, std::int64_t w, const model::Conv2DAttrs& a,
            std::int64_t oh, std::int64_t ow, std::int64_t r0, std::int64_t r1, float* cols) {
  const std::int64_t kk = static_cast<std::int64_t>(a.kernel_h) * a.kernel_w;
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t c = r / kk, kh = (r % kk) / a.kernel_w, kw = r % a.kernel_w;
    const float* plane = x + c * h * w;
    float* row = cols + r * oh * ow;
    const std::int64_t dx = kw * a.dilation_w - a.pads.left;
    // Output columns whose input column ow*s + dx lies in [0, w).
    std::int64_t lo = dx >= 0 ? 0 : (-dx + a.stride_w - 1) / a.stride_w;
    std::int64_t hi = (w - 1 - dx) < 0 ? 0 : (w - 1 - dx) / a.stride_w + 1;
    lo = std::min(lo, ow);
    hi = std::clamp(hi, lo, ow);
    for (std::int64_t y = 0; y < oh; ++y) {
      float* out = row + y * ow;
      const std::int64_t iy = y * a.stride_h + kh * a.dilation_h - a.pads.top;
      if (iy < 0 || iy >= h) {
        std::fill(out, out + ow, 0.0f);
        continue;
      }
      const float* in = plane + iy * w;
      std::fill(out, out + lo, 0.0f);
      if (a.stride_w == 1) {
        std::memcpy(out + lo, in + lo + dx, static_cast<std::size_t>(hi - lo) * sizeof(float));
      } else {
        for (std::int64_t xo = lo; xo < hi; ++xo) out[xo] = in[xo * a.stride_w + dx];
      }
      std::fill(out + hi, out + ow, 0.0f);
    }
  }
}

// y[m, cols c0..c1) = A[m, k] * B[k, cols]; leading dimensions are the full row lengths.
void gemm_block(const float* a, const float* b, float* y, std::int64_t m, std::int64_t k,
                std::int64_t p, std::int64_t r0, std::int64_t r1, std::int64_t c0,
                std::int64_t c1) {
  ConstMatMap A(a + r0 * k, r1 - r0, k, Eigen::OuterStride<>(k));
  ConstMatMap B(b + c0, k, c1 - c0, Eigen::OuterStride<>(p));
  MatMap Y(y + r0 * p + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(p));
  Y.noalias() = A * B;
  (void)m;
}

struct DwTaps {
  std::vector<std::int64_t> dx, lo, hi;
};

// One output row of a depthwise conv: orow[x] += sum_kx k[kx] * irow[x * sw + dx[kx]], over
// the columns where each tap is inside the input. 3-wide kernels sum their taps in registers
// over the interior.
void dw_row(float* __restrict orow, const float* __restrict irow, const float* k,
            std::int64_t kw, int sw, const DwTaps& t) {
  if (kw == 3) {
    const std::int64_t a = std::max({t.lo[0], t.lo[1], t.lo[2]});
    const std::int64_t b = std::min({t.hi[0], t.hi[1], t.hi[2]});
    if (a < b) {
      const float k0 = k[0], k1 = k[1], k2 = k[2];
      const std::int64_t d0 = t.dx[0], d1 = t.dx[1], d2 = t.dx[2];
      if (sw == 1) {
        for (std::int64_t x = a; x < b; ++x)
          orow[x] += k0 * irow[x + d0] + k1 * irow[x + d1] + k2 * irow[x + d2];
      } else if (sw == 2) {
        for (std::int64_t x = a; x < b; ++x)
          orow[x] += k0 * irow[2 * x + d0] + k1 * irow[2 * x + d1] + k2 * irow[2 * x + d2];
      } else {
        for (std::int64_t x = a; x < b; ++x)
          orow[x] += k0 * irow[x * sw + d0] + k1 * irow[x * sw + d1] + k2 * irow[x * sw + d2];
      }
      for (int j = 0; j < 3; ++j) {  // borders, tap by tap
        for (std::int64_t x = t.lo[j]; x < a; ++x) orow[x] += k[j] * irow[x * sw + t.dx[j]];
        for (std::int64_t x = b; x < t.hi[j]; ++x) orow[x] += k[j] * irow[x * sw + t.dx[j]];
      }
      return;
    }
  }
  for (std::int64_t j = 0; j < kw; ++j) {
    const float kv = k[j];
    const std::int64_t d = t.dx[static_cast<std::size_t>(j)];
    const std::int64_t hi = t.hi[static_cast<std::size_t>(j)];
    if (sw == 1) {
      for (std::int64_t x = t.lo[static_cast<std::size_t>(j)]; x < hi; ++x) orow[x] += kv * irow[x + d];
    } else {
      for (std::int64_t x = t.lo[static_cast<std::size_t>(j)]; x < hi; ++x)
        orow[x] += kv * irow[x * sw + d];
    }
  }
}

}  // namespace

// One item of a (grouped) conv. split: divide im2col and the GEMM across the pool.
void CpuBackend::Impl::conv_item(const Step& s, const float* x, float* y, float* cols, bool split) {
  const Node& n = *s.node;
  const auto& a = n.conv;
  const Shape& in = graph.node(n.inputs[0]).shape;
  const std::int64_t c = in[0], h = in[1], w = in[2];
  const std::int64_t o = n.shape[0], oh = n.shape[1], ow = n.shape[2], p = oh * ow;
  const std::int64_t g = a.groups, og = o / g, cg = c / g, k = s.k_rows;
  const float* wt = n.weight.data<float>();
  const float* bias = n.bias.empty() ? nullptr : n.bias.data<float>();
  const int parts = split ? pool.size() : 1;
  for (std::int64_t gi = 0; gi < g; ++gi) {
    const float* xg = x + gi * cg * h * w;
    const float* b = xg;
    if (!s.direct_1x1) {
      if (parts > 1 && k >= parts) {
        pool.run(parts, [&](int t) {
          im2col(xg, h, w, a, oh, ow, k * t / parts, k * (t + 1) / parts, cols);
        });
      } else {
        im2col(xg, h, w, a, oh, ow, 0, k, cols);
      }
      b = cols;
    }
    const float* wg = wt + gi * og * k;
    float* yg = y + gi * og * p;
    auto epilogue = [&](std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
      for (std::int64_t r = r0; r < r1; ++r)
        apply_bias_act(yg + r * p + c0, c1 - c0, bias ? bias[gi * og + r] : 0.0f, s.act,
                       s.act_alpha);
    };
    // Split the GEMM along its longer side, so each thread packs the smaller operand whole.
    const bool by_cols = parts > 1 && p >= 32 * parts && (p >= og || og < 8 * parts);
    if (by_cols) {
      pool.run(parts, [&](int t) {
        const std::int64_t c0 = round_up(p * t / parts, 16), c1 = t + 1 == parts ? p : round_up(p * (t + 1) / parts, 16);
        if (c0 >= c1) return;
        gemm_block(wg, b, yg, og, k, p, 0, og, c0, c1);
        epilogue(0, og, c0, c1);
      });
    } else if (parts > 1 && og >= 8 * parts) {  // split rows
      pool.run(parts, [&](int t) {
        const std::int64_t r0 = og * t / parts, r1 = og * (t + 1) / parts;
        gemm_block(wg, b, yg, og, k, p, r0, r1, 0, p);
        epilogue(r0, r1, 0, p);
      });
    } else {
      gemm_block(wg, b, yg, og, k, p, 0, og, 0, p);
      epilogue(0, og, 0, p);
    }
  }
}

void CpuBackend::Impl::conv(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const int threads = pool.size();
  if (n >= threads) {  // items across threads, each with its own scratch
    pool.run(threads, [&](int t) {
      for (std::int64_t i = t; i < n; i += threads)
        conv_item(s, in_ptr(x, i * (item_stride(x) ? 1 : 0)), out_ptr(node.id, i),
                  scratch[static_cast<std::size_t>(t)].data(), false);
    });
  } else {
    for (std::int64_t i = 0; i < n; ++i)
      conv_item(s, in_ptr(x, item_stride(x) ? i : 0), out_ptr(node.id, i), scratch[0].data(),
                true);
  }
}

void CpuBackend::Impl::depthwise(const Step& s, int n) {
  const Node& node = *s.node;
  const auto& a = node.conv;
  const model::NodeId x = node.inputs[0];
  const Shape& in = graph.node(x).shape;
  const std::int64_t h = in[1], w = in[2];
  const std::int64_t o = node.shape[0], oh = node.shape[1], ow = node.shape[2];
  const std::int64_t mult = o / in[0], kh_n = a.kernel_h, kw_n = a.kernel_w;
  const float* wt = node.weight.data<float>();
  const float* bias = node.bias.empty() ? nullptr : node.bias.data<float>();
  const bool stride_x = item_stride(x) != 0;
  // Per kernel column: input offset and the output columns where that tap lies in the input.
  DwTaps taps;
  for (std::int64_t kx = 0; kx < kw_n; ++kx) {
    const std::int64_t dx = kx * a.dilation_w - a.pads.left;
    std::int64_t lo = dx >= 0 ? 0 : (-dx + a.stride_w - 1) / a.stride_w;
    std::int64_t hi = (w - 1 - dx) < 0 ? 0 : (w - 1 - dx) / a.stride_w + 1;
    lo = std::min(lo, ow);
    taps.dx.push_back(dx);
    taps.lo.push_back(lo);
    taps.hi.push_back(std::clamp(hi, lo, ow));
  }
  parallel_range(pool, n * o, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t item = job / o, oc = job % o, ic = oc / mult;
      const float* plane = in_ptr(x, stride_x ? item : 0) + ic * h * w;
      float* out = out_ptr(node.id, item) + oc * oh * ow;
      const float* k = wt + oc * kh_n * kw_n;
      const float b0 = bias ? bias[oc] : 0.0f;
      // Row by row so the output row stays in L1 while all taps are added.
      for (std::int64_t y = 0; y < oh; ++y) {
        float* orow = out + y * ow;
        std::fill(orow, orow + ow, b0);
        for (std::int64_t ky = 0; ky < kh_n; ++ky) {
          const std::int64_t iy = y * a.stride_h + ky * a.dilation_h - a.pads.top;
          if (iy < 0 || iy >= h) continue;
          dw_row(orow, plane + iy * w, k + ky * kw_n, kw_n, a.stride_w, taps);
        }
        apply_bias_act(orow, ow, 0.0f, s.act, s.act_alpha);
      }
    }
  });
}

void CpuBackend::Impl::fully_connected(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const std::int64_t in = node.weight.shape()[1], out = node.weight.shape()[0];
  const float* wt = node.weight.data<float>();
  const float* bias = node.bias.empty() ? nullptr : node.bias.data<float>();
  float* y = out_ptr(node.id, 0);
  const std::int64_t rows = item_stride(x) ? n : 1;  // a constant input: compute once, copy
  const float* xp = in_ptr(x, 0);
  parallel_range(pool, out, 64, [&](std::int64_t o0, std::int64_t o1) {
    ConstMatMap X(xp, rows, in, Eigen::OuterStride<>(in));
    ConstMatMap W(wt + o0 * in, o1 - o0, in, Eigen::OuterStride<>(in));
    MatMap Y(y + o0, rows, o1 - o0, Eigen::OuterStride<>(out));
    Y.noalias() = X * W.transpose();
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t o = o0; o < o1; ++o)
        apply_bias_act(y + r * out + o, 1, bias ? bias[o] : 0.0f, s.act, s.act_alpha);
  });
  for (std::int64_t r = rows; r < n; ++r) std::memcpy(y + r * out, y, sizeof(float) * out);
}

void CpuBackend::Impl::pool2d(const Step& s, int n) {
  const Node& node = *s.node;
  const auto& a = node.pool;
  const model::NodeId x = node.inputs[0];
  const Shape& in = graph.node(x).shape;
  const std::int64_t c = in[0], h = in[1], w = in[2], oh = node.shape[1], ow = node.shape[2];
  const bool is_max = node.op == OpType::kMaxPool;
  const bool stride_x = item_stride(x) != 0;
  parallel_range(pool, n * c, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t item = job / c, ch = job % c;
      const float* plane = in_ptr(x, stride_x ? item : 0) + ch * h * w;
      float* out = out_ptr(node.id, item) + ch * oh * ow;
      for (std::int64_t y = 0; y < oh; ++y) {
        const std::int64_t y0 = std::max<std::int64_t>(y * a.stride_h - a.pads.top, 0);
        const std::int64_t y1 = std::min<std::int64_t>(y * a.stride_h - a.pads.top + a.kernel_h, h);
        for (std::int64_t xo = 0; xo < ow; ++xo) {
          const std::int64_t x0 = std::max<std::int64_t>(xo * a.stride_w - a.pads.left, 0);
          const std::int64_t x1 =
              std::min<std::int64_t>(xo * a.stride_w - a.pads.left + a.kernel_w, w);
          // Padding is excluded: max over real pixels, average divided by their count.
          float acc = is_max ? -std::numeric_limits<float>::infinity() : 0.0f;
          for (std::int64_t yy = y0; yy < y1; ++yy)
            for (std::int64_t xx = x0; xx < x1; ++xx)
              acc = is_max ? std::max(acc, plane[yy * w + xx]) : acc + plane[yy * w + xx];
          std::int64_t count = (y1 - y0) * (x1 - x0);
          if (a.count_include_pad) {  // ONNX: the explicit pads count, not what lies beyond
            const std::int64_t ys = y * a.stride_h - a.pads.top, xs = xo * a.stride_w - a.pads.left;
            count = (std::min<std::int64_t>(ys + a.kernel_h, h + a.pads.bottom) - ys) *
                    (std::min<std::int64_t>(xs + a.kernel_w, w + a.pads.right) - xs);
          }
          out[y * ow + xo] = is_max ? acc : acc / static_cast<float>(count);
        }
      }
    }
  });
}

void CpuBackend::Impl::global_avg_pool(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const Shape& in = graph.node(x).shape;
  const std::int64_t c = in[0], hw = in[1] * in[2];
  const bool stride_x = item_stride(x) != 0;
  parallel_range(pool, n * c, 64, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t item = job / c, ch = job % c;
      const float* plane = in_ptr(x, stride_x ? item : 0) + ch * hw;
      float acc = 0.0f;
      for (std::int64_t i = 0; i < hw; ++i) acc += plane[i];
      out_ptr(node.id, item)[ch] = acc / static_cast<float>(hw);
    }
  });
}

void CpuBackend::Impl::elementwise(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const std::int64_t item = node.shape.numel();
  const bool stride_x = item_stride(x) != 0;
  const OpType op = node.op;
  const float alpha = node.alpha, beta = node.beta;
  parallel_range(pool, n * item, 16384, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e;) {
      const std::int64_t it = i / item, j0 = i % item, j1 = std::min(item, j0 + (e - i));
      const float* xp = in_ptr(x, stride_x ? it : 0);
      float* yp = out_ptr(node.id, it);
      // The op is chosen outside the loop so that each loop vectorizes.
      auto apply = [&](auto f) {
        for (std::int64_t j = j0; j < j1; ++j) yp[j] = f(xp[j]);
      };
      switch (op) {
        case OpType::kRelu: apply([](float v) { return std::max(v, 0.0f); }); break;
        case OpType::kRelu6: apply([](float v) { return std::min(std::max(v, 0.0f), 6.0f); }); break;
        case OpType::kLeakyRelu: apply([=](float v) { return v < 0.0f ? v * alpha : v; }); break;
        case OpType::kSigmoid: apply([](float v) { return 1.0f / (1.0f + std::exp(-v)); }); break;
        case OpType::kTanh: apply([](float v) { return std::tanh(v); }); break;
        case OpType::kClip: apply([=](float v) { return std::min(std::max(v, alpha), beta); }); break;
        case OpType::kHardSigmoid:
          apply([=](float v) { return std::max(0.0f, std::min(1.0f, alpha * v + beta)); });
          break;
        case OpType::kHardSwish:
          apply([](float v) { return v * std::max(0.0f, std::min(1.0f, v * (1.0f / 6.0f) + 0.5f)); });
          break;
        case OpType::kSqrt: apply([](float v) { return std::sqrt(v); }); break;
        case OpType::kPow:
          if (alpha == 2.0f) apply([](float v) { return v * v; });
          else apply([=](float v) { return std::pow(v, alpha); });
          break;
        default: break;
      }
      i += j1 - j0;
    }
  });
}

void CpuBackend::Impl::affine(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const std::int64_t c = node.shape[0], inner = node.shape.numel() / c;
  const bool stride_x = item_stride(x) != 0;
  parallel_range(pool, n * c, 8, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t item = job / c, ch = job % c;
      const float* xp = in_ptr(x, stride_x ? item : 0) + ch * inner;
      float* yp = out_ptr(node.id, item) + ch * inner;
      const float k = s.k[static_cast<std::size_t>(ch)], t = s.t[static_cast<std::size_t>(ch)];
      for (std::int64_t i = 0; i < inner; ++i) yp[i] = xp[i] * k + t;
    }
  });
}

namespace {
template <OpType Op>
inline float bin(float a, float b) {
  if constexpr (Op == OpType::kAdd) return a + b;
  else if constexpr (Op == OpType::kSub) return a - b;
  else if constexpr (Op == OpType::kMul) return a * b;
  else return a / b;
}

template <OpType Op>
void bin_span(const float* a, const float* b, float* y, std::int64_t len, bool b_scalar) {
  if (b_scalar) {
    const float v = b[0];
    for (std::int64_t i = 0; i < len; ++i) y[i] = bin<Op>(a[i], v);
  } else {
    for (std::int64_t i = 0; i < len; ++i) y[i] = bin<Op>(a[i], b[i]);
  }
}

void bin_dispatch(OpType op, const float* a, const float* b, float* y, std::int64_t len,
                  bool b_scalar) {
  switch (op) {
    case OpType::kAdd: bin_span<OpType::kAdd>(a, b, y, len, b_scalar); break;
    case OpType::kSub: bin_span<OpType::kSub>(a, b, y, len, b_scalar); break;
    case OpType::kMul: bin_span<OpType::kMul>(a, b, y, len, b_scalar); break;
    default: bin_span<OpType::kDiv>(a, b, y, len, b_scalar); break;
  }
}
}  // namespace

void CpuBackend::Impl::binary(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId a = node.inputs[0], b = node.inputs[1];
  const std::int64_t item = node.shape.numel();
  const bool sa = item_stride(a) != 0, sb = item_stride(b) != 0;
  const OpType op = node.op;
  if (s.general) {  // numpy broadcasting: one item per job; the last axis runs contiguous spans
    const std::int64_t last = s.dims.empty() ? 1 : s.dims.back();
    const std::int64_t as = s.dims.empty() ? 0 : s.a_str.back(), bs = s.dims.empty() ? 0 : s.b_str.back();
    std::vector<std::int64_t> outer(s.dims.begin(), s.dims.end() - (s.dims.empty() ? 0 : 1));
    std::vector<std::int64_t> oa(s.a_str.begin(), s.a_str.end() - (s.dims.empty() ? 0 : 1));
    std::vector<std::int64_t> ob(s.b_str.begin(), s.b_str.end() - (s.dims.empty() ? 0 : 1));
    parallel_range(pool, n, 1, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t it = lo; it < hi; ++it) {
        const float* ap = in_ptr(a, sa ? it : 0);
        const float* bp = in_ptr(b, sb ? it : 0);
        float* yp = out_ptr(node.id, it);
        // Offsets of the outer index in a and b, advanced like an odometer.
        std::vector<std::int64_t> idx(outer.size(), 0);
        std::int64_t offa = 0, offb = 0;
        for (std::int64_t o = 0; o < item; o += last) {
          for (std::int64_t j = 0; j < last; ++j) {
            const float x = ap[offa + j * as], v = bp[offb + j * bs];
            yp[o + j] = op == OpType::kAdd ? x + v : op == OpType::kSub ? x - v
                        : op == OpType::kMul ? x * v : x / v;
          }
          for (std::size_t k = outer.size(); k-- > 0;) {
            ++idx[k];
            offa += oa[k];
            offb += ob[k];
            if (idx[k] < outer[k]) break;
            offa -= oa[k] * outer[k];
            offb -= ob[k] * outer[k];
            idx[k] = 0;
          }
        }
        if (s.act != Act::kNone) apply_bias_act(yp, item, 0.0f, s.act, s.act_alpha);
      }
    });
    return;
  }
  const std::int64_t b_item = graph.node(b).shape.numel();
  const std::int64_t c = node.shape[0];
  // b broadcast: per element (same shape), per channel ([C] / [C,1,1]) or scalar.
  const std::int64_t inner = b_item == item ? 1 : (b_item == 1 ? item : item / c);
  const std::int64_t chunks = b_item == item ? 1 : (b_item == 1 ? 1 : c);
  parallel_range(pool, n * chunks, b_item == item ? 1 : 8, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t job = lo; job < hi; ++job) {
      const std::int64_t it = job / chunks, ch = job % chunks;
      const float* ap = in_ptr(a, sa ? it : 0);
      const float* bp = in_ptr(b, sb ? it : 0);
      float* yp = out_ptr(node.id, it);
      if (b_item == item) {
        bin_dispatch(op, ap, bp, yp, item, false);
      } else {
        const std::int64_t off = b_item == 1 ? 0 : ch * inner;
        bin_dispatch(op, ap + off, b_item == 1 ? bp : bp + ch, yp + off, inner, true);
      }
      if (s.act != Act::kNone) {
        const std::int64_t b0 = b_item == item || b_item == 1 ? 0 : ch * inner;
        const std::int64_t len = b_item == item || b_item == 1 ? item : inner;
        apply_bias_act(yp + b0, len, 0.0f, s.act, s.act_alpha);
      }
    }
  });
}

void CpuBackend::Impl::concat(const Step& s, int n) {
  const Node& node = *s.node;
  const int axis = node.axis;
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= node.shape[i];
  for (int i = axis + 1; i < node.shape.rank(); ++i) inner *= node.shape[i];
  const std::int64_t out_row = node.shape[axis] * inner;
  parallel_range(pool, n, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t it = b; it < e; ++it) {
      float* y = out_ptr(node.id, it);
      std::int64_t at = 0;
      for (model::NodeId x : node.inputs) {
        const std::int64_t row = graph.node(x).shape[axis] * inner;
        const float* xp = in_ptr(x, item_stride(x) ? it : 0);
        for (std::int64_t o = 0; o < outer; ++o)
          std::memcpy(y + o * out_row + at, xp + o * row, sizeof(float) * row);
        at += row;
      }
    }
  });
}

void CpuBackend::Impl::softmax(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const int axis = node.axis;
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= node.shape[i];
  for (int i = axis + 1; i < node.shape.rank(); ++i) inner *= node.shape[i];
  const std::int64_t len = node.shape[axis];
  const bool stride_x = item_stride(x) != 0;
  parallel_range(pool, n * outer, 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t it = job / outer, o = job % outer;
      const float* xp = in_ptr(x, stride_x ? it : 0) + o * len * inner;
      float* yp = out_ptr(node.id, it) + o * len * inner;
      for (std::int64_t in = 0; in < inner; ++in) {
        float m = -std::numeric_limits<float>::infinity();
        for (std::int64_t i = 0; i < len; ++i) m = std::max(m, xp[i * inner + in]);
        float sum = 0.0f;
        for (std::int64_t i = 0; i < len; ++i) {
          const float v = std::exp(xp[i * inner + in] - m);
          yp[i * inner + in] = v;
          sum += v;
        }
        for (std::int64_t i = 0; i < len; ++i) yp[i * inner + in] /= sum;
      }
    }
  });
}

void CpuBackend::Impl::resize(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const Shape& in = graph.node(x).shape;
  const std::int64_t c = in[0], h = in[1], w = in[2], oh = node.shape[1], ow = node.shape[2];
  const bool stride_x = item_stride(x) != 0;
  parallel_range(pool, n * c, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t it = job / c, ch = job % c;
      const float* plane = in_ptr(x, stride_x ? it : 0) + ch * h * w;
      float* out = out_ptr(node.id, it) + ch * oh * ow;
      for (std::int64_t y = 0; y < oh; ++y) {
        const auto yi = static_cast<std::size_t>(y);
        const float* top = plane + s.y0[yi] * w;
        const float* bot = plane + s.y1[yi] * w;
        const float ly = s.ly[yi];
        for (std::int64_t xo = 0; xo < ow; ++xo) {
          const auto xi = static_cast<std::size_t>(xo);
          const float lx = s.lx[xi];
          const float t = top[s.x0[xi]] + (top[s.x1[xi]] - top[s.x0[xi]]) * lx;
          const float bt = bot[s.x0[xi]] + (bot[s.x1[xi]] - bot[s.x0[xi]]) * lx;
          out[y * ow + xo] = t + (bt - t) * ly;
        }
      }
    }
  });
}

void CpuBackend::Impl::resize_nearest(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const Shape& in = graph.node(x).shape;
  const std::int64_t c = in[0], h = in[1], w = in[2], oh = node.shape[1], ow = node.shape[2];
  const bool stride_x = item_stride(x) != 0;
  parallel_range(pool, n * c, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t it = job / c, ch = job % c;
      const float* plane = in_ptr(x, stride_x ? it : 0) + ch * h * w;
      float* out = out_ptr(node.id, it) + ch * oh * ow;
      for (std::int64_t y = 0; y < oh; ++y) {
        const float* row = plane + s.y0[static_cast<std::size_t>(y)] * w;
        for (std::int64_t xo = 0; xo < ow; ++xo) out[y * ow + xo] = row[s.x0[static_cast<std::size_t>(xo)]];
      }
    }
  });
}

// y = col2im(W_g^T x_g) per group: cols[(o, ky, kx), (iy, ix)] scattered to
// y[o, iy*stride + ky*dilation - pad_top, ix*stride + kx*dilation - pad_left].
void CpuBackend::Impl::conv_transpose(const Step& s, int n) {
  const Node& node = *s.node;
  const auto& a = node.conv;
  const model::NodeId x = node.inputs[0];
  const Shape& in = graph.node(x).shape;
  const std::int64_t c = in[0], h = in[1], w = in[2], hw = h * w;
  const std::int64_t o = node.shape[0], oh = node.shape[1], ow = node.shape[2];
  const std::int64_t g = a.groups, cg = c / g, og = o / g, kh = a.kernel_h, kw = a.kernel_w;
  const std::int64_t rows = og * kh * kw;
  const float* wt = node.weight.data<float>();  // [C, O/g, KH, KW]
  const float* bias = node.bias.empty() ? nullptr : node.bias.data<float>();
  const bool stride_x = item_stride(x) != 0;
  const int threads = pool.size();
  pool.run(std::min<int>(threads, n), [&](int t) {
    float* cols = scratch[static_cast<std::size_t>(t)].data();
    for (std::int64_t it = t; it < n; it += std::min<int>(threads, n)) {
      const float* xp = in_ptr(x, stride_x ? it : 0);
      float* yp = out_ptr(node.id, it);
      for (std::int64_t oc = 0; oc < o; ++oc)
        std::fill(yp + oc * oh * ow, yp + (oc + 1) * oh * ow, bias ? bias[oc] : 0.0f);
      for (std::int64_t gi = 0; gi < g; ++gi) {
        ConstMatMap W(wt + gi * cg * rows, cg, rows, Eigen::OuterStride<>(rows));
        ConstMatMap X(xp + gi * cg * hw, cg, hw, Eigen::OuterStride<>(hw));
        MatMap C(cols, rows, hw, Eigen::OuterStride<>(hw));
        C.noalias() = W.transpose() * X;
        for (std::int64_t r = 0; r < rows; ++r) {
          const std::int64_t oc = gi * og + r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
          float* plane = yp + oc * oh * ow;
          const float* cr = cols + r * hw;
          for (std::int64_t iy = 0; iy < h; ++iy) {
            const std::int64_t y = iy * a.stride_h + ky * a.dilation_h - a.pads.top;
            if (y < 0 || y >= oh) continue;
            for (std::int64_t ix = 0; ix < w; ++ix) {
              const std::int64_t xx = ix * a.stride_w + kx * a.dilation_w - a.pads.left;
              if (xx >= 0 && xx < ow) plane[y * ow + xx] += cr[iy * w + ix];
            }
          }
        }
      }
      if (s.act != Act::kNone) apply_bias_act(yp, o * oh * ow, 0.0f, s.act, s.act_alpha);
    }
  });
}

// Transpose / Slice: y[i] = x[in_off + sum idx_k * in_str_k]; Pad: fill, then copy x inside.
void CpuBackend::Impl::strided_copy(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const bool stride_x = item_stride(x) != 0;
  const std::int64_t item = node.shape.numel();
  const Shape& in = graph.node(x).shape;
  if (node.op == OpType::kPad) {
    const auto ost = strides_of(node.shape);
    std::int64_t base = 0;
    for (std::size_t k = 0; k < ost.size(); ++k) base += node.begin[k] * ost[k];
    const std::int64_t last = in[in.rank() - 1];
    parallel_range(pool, n, 1, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t it = lo; it < hi; ++it) {
        const float* xp = in_ptr(x, stride_x ? it : 0);
        float* yp = out_ptr(node.id, it);
        std::fill(yp, yp + item, node.alpha);
        std::vector<std::int64_t> idx(static_cast<std::size_t>(in.rank() - 1), 0);
        std::int64_t off = base;
        for (std::int64_t i = 0; i < in.numel(); i += last) {
          std::memcpy(yp + off, xp + i, sizeof(float) * last);
          for (std::size_t k = idx.size(); k-- > 0;) {
            ++idx[k];
            off += ost[k];
            if (idx[k] < in[static_cast<int>(k)]) break;
            off -= ost[k] * in[static_cast<int>(k)];
            idx[k] = 0;
          }
        }
      }
    });
    return;
  }
  const auto& dims = s.dims;
  const std::int64_t last = dims.back(), last_str = s.in_str.back();
  parallel_range(pool, n, 1, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t it = lo; it < hi; ++it) {
      const float* xp = in_ptr(x, stride_x ? it : 0);
      float* yp = out_ptr(node.id, it);
      std::vector<std::int64_t> idx(dims.size() - 1, 0);
      std::int64_t off = s.in_off;
      for (std::int64_t o = 0; o < item; o += last) {
        for (std::int64_t j = 0; j < last; ++j) yp[o + j] = xp[off + j * last_str];
        for (std::size_t k = idx.size(); k-- > 0;) {
          ++idx[k];
          off += s.in_str[k];
          if (idx[k] < dims[k]) break;
          off -= s.in_str[k] * dims[k];
          idx[k] = 0;
        }
      }
    }
  });
}

// Per item: for each leading index, Y[M, N] = A[M, K] * B[K, N] (B's leading dims are A's
// trailing ones; a plain matrix B is shared by all).
void CpuBackend::Impl::matmul(const Step& s, int n) {
  const Node& node = *s.node;
  const model::NodeId a = node.inputs[0], b = node.inputs[1];
  const Shape& sa = graph.node(a).shape;
  const Shape& sb = graph.node(b).shape;
  const std::int64_t m = sa[sa.rank() - 2], k = sa[sa.rank() - 1], nn = sb[sb.rank() - 1];
  const std::int64_t lead_a = sa.numel() / (m * k), lead_b = sb.numel() / (k * nn);
  const bool stride_a = item_stride(a) != 0, stride_b = item_stride(b) != 0;
  parallel_range(pool, n * lead_a, 1, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t job = lo; job < hi; ++job) {
      const std::int64_t it = job / lead_a, l = job % lead_a;
      ConstMatMap A(in_ptr(a, stride_a ? it : 0) + l * m * k, m, k, Eigen::OuterStride<>(k));
      ConstMatMap B(in_ptr(b, stride_b ? it : 0) + (l % lead_b) * k * nn, k, nn,
                    Eigen::OuterStride<>(nn));
      MatMap Y(out_ptr(node.id, it) + l * m * nn, m, nn, Eigen::OuterStride<>(nn));
      Y.noalias() = A * B;
    }
  });
}

void CpuBackend::Impl::reduce_mean(const Step& s, int n) {
  (void)s;
  const Node& node = *s.node;
  const model::NodeId x = node.inputs[0];
  const Shape& in = graph.node(x).shape;
  std::int64_t outer = 1, len = 1, inner = 1;
  for (int i = 0; i < in.rank(); ++i) {
    if (i < node.axes.front()) outer *= in[i];
    else if (i <= node.axes.back()) len *= in[i];
    else inner *= in[i];
  }
  const bool stride_x = item_stride(x) != 0;
  parallel_range(pool, n * outer, 16, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t job = lo; job < hi; ++job) {
      const std::int64_t it = job / outer, o = job % outer;
      const float* xp = in_ptr(x, stride_x ? it : 0) + o * len * inner;
      float* yp = out_ptr(node.id, it) + o * inner;
      for (std::int64_t j = 0; j < inner; ++j) {
        float acc = 0.0f;
        for (std::int64_t i = 0; i < len; ++i) acc += xp[i * inner + j];
        yp[j] = acc / static_cast<float>(len);
      }
    }
  });
}

void CpuBackend::Impl::run_step(const Step& s, int n) {
  if (s.skip) return;
  switch (s.node->op) {
    case OpType::kConv2D: s.depthwise ? depthwise(s, n) : conv(s, n); break;
    case OpType::kFullyConnected: fully_connected(s, n); break;
    case OpType::kMaxPool:
    case OpType::kAvgPool: pool2d(s, n); break;
    case OpType::kGlobalAvgPool: global_avg_pool(s, n); break;
    case OpType::kRelu:
    case OpType::kRelu6:
    case OpType::kLeakyRelu:
    case OpType::kSigmoid:
    case OpType::kTanh:
    case OpType::kClip:
    case OpType::kHardSigmoid:
    case OpType::kHardSwish:
    case OpType::kSqrt:
    case OpType::kPow: elementwise(s, n); break;
    case OpType::kBatchNorm:
    case OpType::kScaleOffset: affine(s, n); break;
    case OpType::kSub:
    case OpType::kDiv:
    case OpType::kAdd:
    case OpType::kMul: binary(s, n); break;
    case OpType::kConcat: concat(s, n); break;
    case OpType::kSoftmax: softmax(s, n); break;
    case OpType::kResizeBilinear: resize(s, n); break;
    case OpType::kResizeNearest: resize_nearest(s, n); break;
    case OpType::kConvTranspose: conv_transpose(s, n); break;
    case OpType::kTranspose:
    case OpType::kSlice:
    case OpType::kPad: strided_copy(s, n); break;
    case OpType::kMatMul: matmul(s, n); break;
    case OpType::kReduceMean: reduce_mean(s, n); break;
    case OpType::kInput:
    case OpType::kConstant:
    case OpType::kFlatten:
    case OpType::kReshape: break;
  }
}

// ---- CpuBackend --------------------------------------------------------------------------------

CpuBackend::~CpuBackend() = default;

std::string CpuBackend::device_name() const { return "cpu"; }

int CpuBackend::threads() const { return impl_->pool.size(); }

void CpuBackend::load(const model::Graph& graph, int max_batch) {
  NEXUS_CHECK(max_batch >= 1, "CpuBackend::load('{}'): max_batch must be >= 1, got {}",
              graph.name(), max_batch);
  Impl& im = *impl_;
  im.loaded = false;
  im.graph = graph;  // shares the weight storage
  im.max_batch = max_batch;
  im.plan();
  im.loaded = true;
}

std::vector<Tensor> CpuBackend::run(const std::vector<Tensor>& inputs) {
  Impl& im = *impl_;
  NEXUS_CHECK(im.loaded, "CpuBackend::run: no model loaded (call load() first)");
  const auto& gin = im.graph.inputs();
  NEXUS_CHECK(inputs.size() == gin.size(), "model '{}': got {} input tensors, expected {}",
              im.graph.name(), inputs.size(), gin.size());
  std::int64_t n = -1;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const model::Node& in = im.graph.node(gin[i]);
    const Tensor& t = inputs[i];
    const std::string expected = fmt::format("[n, {}] with 1 <= n <= {}",
                                             fmt::join(in.shape.dims(), ", "), im.max_batch);
    NEXUS_CHECK(!t.empty(), "model '{}': input '{}' is empty, expected float32 {}",
                im.graph.name(), in.name, expected);
    NEXUS_CHECK(t.dtype() == DType::kFloat32, "model '{}': input '{}' has dtype {}, expected float32 {}",
                im.graph.name(), in.name, name_of(t.dtype()), expected);
    NEXUS_CHECK(t.shape().rank() == in.shape.rank() + 1 && t.shape().drop_front() == in.shape &&
                    t.shape()[0] >= 1 && t.shape()[0] <= im.max_batch,
                "model '{}': input '{}' has shape {}, expected {}", im.graph.name(), in.name,
                t.shape(), expected);
    NEXUS_CHECK(n < 0 || t.shape()[0] == n,
                "model '{}': input '{}' has batch {} but earlier inputs have batch {}",
                im.graph.name(), in.name, t.shape()[0], n);
    n = t.shape()[0];
  }
  im.inputs = &inputs;
#ifdef NEXUS_CPU_STEP_TIMING  // developer aid: per-op-type seconds, printed at exit
  static std::map<std::string, double> totals;
  static struct Dump { ~Dump() { for (auto& [k, v] : totals) std::fprintf(stderr, "%-16s %8.3f s\n", k.c_str(), v); } } dump;
  for (const Step& s : im.steps) {
    const auto t0 = std::chrono::steady_clock::now();
    im.run_step(s, static_cast<int>(n));
    std::string key = model::op_name(s.node->op);
    if (s.depthwise) key += "/dw";
    else if (s.node->op == OpType::kConv2D) key += s.direct_1x1 ? "/1x1" : "/im2col";
    totals[key] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
#else
  for (const Step& s : im.steps) im.run_step(s, static_cast<int>(n));
#endif
  std::vector<Tensor> outs;
  for (model::NodeId o : im.graph.outputs()) {
    const Shape& item = im.graph.node(o).shape;
    std::vector<std::int64_t> dims{n};
    dims.insert(dims.end(), item.dims().begin(), item.dims().end());
    Tensor t{Shape(std::move(dims))};
    const std::int64_t count = item.numel();
    const bool strided = im.item_stride(o) != 0;
    for (std::int64_t i = 0; i < n; ++i)
      std::memcpy(t.data<float>() + i * count, im.in_ptr(o, strided ? i : 0),
                  sizeof(float) * count);
    outs.push_back(std::move(t));
  }
  im.inputs = nullptr;
  return outs;
}

int CpuBackend::max_batch() const { return impl_->max_batch; }

Shape CpuBackend::input_shape(int i) const {
  const Impl& im = *impl_;
  NEXUS_CHECK(im.loaded, "CpuBackend::input_shape: no model loaded");
  NEXUS_CHECK(i >= 0 && i < static_cast<int>(im.graph.inputs().size()),
              "model '{}': input index {} out of range (the model has {} inputs)",
              im.graph.name(), i, im.graph.inputs().size());
  return im.graph.node(im.graph.inputs()[static_cast<std::size_t>(i)]).shape;
}

std::size_t CpuBackend::weights_bytes() const {
  return impl_->loaded ? impl_->graph.weights_bytes() : 0;
}

std::size_t CpuBackend::activation_bytes(int batch) const {
  const Impl& im = *impl_;
  if (!im.loaded) return 0;
  return static_cast<std::size_t>(im.arena_item_floats * batch + im.scratch_floats * im.pool.size()) *
         sizeof(float);
}

}  // namespace nexus

#include "eigen_isa_end.inc"

namespace nexus {

namespace {
int default_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}
}  // namespace

const char* exec::cpu_kernel_isa() {
#if defined(NEXUS_CPU_KERNELS_AVX2) || (defined(__AVX2__) && defined(__FMA__))
  return "avx2+fma";
#else
  return "baseline";
#endif
}

std::size_t CpuBackend::free_memory() const {
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<std::size_t>(std::clamp(memory_share_, 0.0, 1.0) * double(pages) * double(page));
}

CpuBackend::CpuBackend(CpuBackendOptions options) : memory_share_(options.memory_share) {
#if defined(NEXUS_CPU_KERNELS_AVX2)
  NEXUS_CHECK(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
              "CpuBackend: this build's kernels need AVX2 and FMA, which this CPU lacks "
              "(rebuild Nexus with -DNEXUS_CPU_GENERIC)");
#endif
  NEXUS_CHECK(options.threads >= 0, "CpuBackendOptions::threads must be >= 0, got {}",
              options.threads);
  impl_ = std::make_unique<Impl>(default_threads(options.threads));
}

}  // namespace nexus
