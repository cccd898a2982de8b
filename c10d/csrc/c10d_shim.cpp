// A C ABI over libtorch's c10d: TCPStore rendezvous, ProcessGroupGloo (CPU) and, when built
// with DINOV2_C10D_NCCL, ProcessGroupNCCL (CUDA); all-reduce (coalesced), broadcast,
// all-gather and barrier, and a gradient reducer that all-reduces gradient buckets while the
// backward pass runs (as PyTorch DDP's Reducer). Every C++ exception is caught here and handed
// to Rust as a message. Tensors arrive as tch's C_tensor pointers, which are `torch::Tensor*`.
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef DINOV2_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

template <typename F>
int guard(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    if (err) *err = dup(e.what());
  } catch (...) {
    if (err) *err = dup("unknown C++ exception in c10d");
  }
  return -1;
}

std::vector<at::Tensor> tensors(void** ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) v.push_back(*static_cast<at::Tensor*>(ts[i]));
  return v;
}

void finish(Group* g, const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work->wait(g->timeout)) throw std::runtime_error("c10d collective did not complete");
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0: return c10d::ReduceOp::SUM;
    case 1: return c10d::ReduceOp::MAX;
    case 2: return c10d::ReduceOp::MIN;
    default: throw std::invalid_argument("unknown reduce op " + std::to_string(op));
  }
}


// Gradient buckets all-reduced during the backward pass. A hook on each parameter (for a leaf,
// autograd also runs it on gradients that `torch::autograd::grad` captures, i.e. tch's
// `run_backward` with inputs) copies the gradient into its slot of its bucket's flat buffer and
// returns a view of that slot, so the gradient handed back IS the slot. When a bucket's last
// gradient has arrived, the bucket and every complete bucket after it are launched in bucket
// order (the same order on every rank, whatever order the gradients come in) as asynchronous
// SUM all-reduces. `finish` launches what is left (slots of parameters that got no gradient
// are zero-filled), waits for every work in launch order and divides by the world size.
// Hooks run on autograd's threads (its device threads on CUDA): the state sits behind a mutex.
struct Reducer {
  struct Slot {
    int bucket = -1;  // -1: not bucketed (no gradient required, or no elements)
    int64_t offset = 0;
    int64_t numel = 0;
  };
  struct Bucket {
    std::vector<int> params;
    int64_t numel = 0;
    at::TensorOptions options;
    at::Tensor flat;
    int pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  int world = 1;
  std::vector<at::Tensor> params;
  std::vector<unsigned> hooks;  // handle of params[i]'s hook (when bucketed)
  std::mutex mu;
  bool armed = false;
  std::vector<Slot> slots;
  std::vector<char> filled;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  std::vector<int> launches;  // bucket indices in launch order (this step)
  std::vector<int> arrivals;  // parameter indices in the order their hooks ran (this step)
  std::string error;          // the first failure inside a hook

  // mu held
  void launch(size_t b) {
    auto& k = buckets[b];
    std::vector<at::Tensor> v{k.flat};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    k.work = backend->allreduce(v, o);
    launches.push_back(static_cast<int>(b));
  }

  // mu held: launch every bucket, in order, that is complete and whose predecessors are out
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) launch(next_launch++);
  }

  at::Tensor hook(int i, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || !error.empty() || !grad.defined()) return grad;
    try {
      const auto& s = slots[i];
      auto& k = buckets[s.bucket];
      if (filled[i]) throw std::runtime_error("a second gradient in one backward pass");
      if (grad.numel() != s.numel || grad.scalar_type() != k.flat.scalar_type() ||
          grad.device() != k.flat.device())
        throw std::runtime_error("gradient " + grad.toString() + " " +
                                 c10::str(grad.sizes()) + " does not fit its bucket slot");
      at::NoGradGuard no_grad;
      auto slot = k.flat.narrow(0, s.offset, s.numel).view(params[i].sizes());
      slot.copy_(grad);
      filled[i] = 1;
      arrivals.push_back(i);
      if (--k.pending == 0) launch_ready();
      return slot;
    } catch (const std::exception& e) {
      error = "gradient hook of parameter " + std::to_string(i) + ": " + e.what();
    } catch (...) {
      error = "gradient hook of parameter " + std::to_string(i) + ": unknown C++ exception";
    }
    return grad;
  }

  void arm() {
    std::lock_guard<std::mutex> lock(mu);
    // fresh buffers: last step's gradients (views of them) may still be alive
    for (auto& k : buckets) {
      k.flat = at::empty({k.numel}, k.options);
      k.pending = static_cast<int>(k.params.size());
      k.work.reset();
    }
    std::fill(filled.begin(), filled.end(), 0);
    next_launch = 0;
    launches.clear();
    arrivals.clear();
    error.clear();
    armed = true;
  }

  // grads[i]: what the backward pass returned for params[i] (may be undefined)
  void finish(const std::vector<const at::Tensor*>& grads) {
    std::vector<std::pair<c10::intrusive_ptr<c10d::Work>, at::Tensor>> works;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!armed) throw std::runtime_error("finish without arm");
      armed = false;
      if (!error.empty()) throw std::runtime_error(error);
      for (size_t i = 0; i < params.size(); ++i) {
        const auto& s = slots[i];
        const at::Tensor* g = grads[i];
        if (s.bucket < 0 || !g || !g->defined()) continue;
        // a gradient that did not pass through its hook would be missing from the sum
        if (!filled[i] || !g->is_alias_of(buckets[s.bucket].flat))
          throw std::runtime_error("the gradient of parameter " + std::to_string(i) +
                                   " did not pass through its all-reduce hook");
      }
      at::NoGradGuard no_grad;
      for (size_t b = next_launch; b < buckets.size(); ++b) {
        auto& k = buckets[b];
        for (int i : k.params)
          if (!filled[i]) k.flat.narrow(0, slots[i].offset, slots[i].numel).zero_();
        k.pending = 0;
      }
      launch_ready();
      for (int b : launches) works.emplace_back(buckets[b].work, buckets[b].flat);
    }
    at::NoGradGuard no_grad;
    for (auto& [work, flat] : works) {
      if (!work->wait(timeout)) throw std::runtime_error("c10d collective did not complete");
      flat.div_(static_cast<double>(world));
    }
  }

  ~Reducer() {
    std::lock_guard<std::mutex> lock(mu);
    armed = false;
    for (size_t i = 0; i < params.size(); ++i)
      if (slots[i].bucket >= 0) params[i].remove_hook(hooks[i]);
  }
};

}  // namespace

extern "C" {

void dv2_c10d_free_str(char* s) { std::free(s); }

int dv2_c10d_has_nccl() {
#ifdef DINOV2_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

// backend: 0 = gloo, 1 = nccl. Rank 0 hosts the TCPStore at host:port.
int dv2_c10d_new(const char* host, int port, int rank, int world, int backend, long timeout_ms,
                 void** out, char** err) {
  return guard(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = world;
    so.waitWorkers = true;
    so.timeout = timeout;
    auto g = std::make_unique<Group>();
    g->timeout = timeout;
    g->store = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    if (backend == 0) {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, opts);
    } else if (backend == 1) {
#ifdef DINOV2_C10D_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, rank, world, opts);
#else
      throw std::runtime_error("this build has no NCCL support (c10d shim built without NCCL headers)");
#endif
    } else {
      throw std::invalid_argument("unknown backend " + std::to_string(backend));
    }
    *out = g.release();
  });
}

void dv2_c10d_free(void* g) { delete static_cast<Group*>(g); }

int dv2_c10d_allreduce(void* gp, void** ts, int n, int op, char** err) {
  return guard(err, [&] {
    auto* g = static_cast<Group*>(gp);
    auto v = tensors(ts, n);
    if (v.size() == 1) {
      c10d::AllreduceOptions o;
      o.reduceOp = reduce_op(op);
      finish(g, g->backend->allreduce(v, o));
    } else {
      c10d::AllreduceCoalescedOptions o;
      o.reduceOp = reduce_op(op);
      finish(g, g->backend->allreduce_coalesced(v, o));
    }
  });
}

int dv2_c10d_broadcast(void* gp, void** ts, int n, int root, char** err) {
  return guard(err, [&] {
    auto* g = static_cast<Group*>(gp);
    for (int i = 0; i < n; ++i) {
      std::vector<at::Tensor> v{*static_cast<at::Tensor*>(ts[i])};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      finish(g, g->backend->broadcast(v, o));
    }
  });
}

// outs: `world` tensors shaped like `input`.
int dv2_c10d_allgather(void* gp, void** outs, int world, void* input, char** err) {
  return guard(err, [&] {
    auto* g = static_cast<Group*>(gp);
    std::vector<std::vector<at::Tensor>> o{tensors(outs, world)};
    std::vector<at::Tensor> in{*static_cast<at::Tensor*>(input)};
    finish(g, g->backend->allgather(o, in));
  });
}

int dv2_c10d_barrier(void* gp, char** err) {
  return guard(err, [&] {
    auto* g = static_cast<Group*>(gp);
    finish(g, g->backend->barrier(c10d::BarrierOptions()));
  });
}


// A gradient reducer for the n parameters `ps` of group `gp`: bucketed in `order` (a
// permutation of 0..n: parameter indices, the first to be bucketed first), grouped by (dtype,
// device) in order of first appearance, about `bucket_bytes` per bucket. Parameters that need
// no gradient or have no elements are left out. The hooks stay registered until it is freed.
int dv2_c10d_reducer_new(void* gp, void** ps, int n, const int* order, long bucket_bytes,
                         void** out, char** err) {
  return guard(err, [&] {
    auto* g = static_cast<Group*>(gp);
    auto r = std::make_shared<Reducer>();
    r->backend = g->backend;
    r->timeout = g->timeout;
    r->world = g->backend->getSize();
    r->params = tensors(ps, n);
    r->slots.resize(n);
    r->filled.assign(n, 0);
    r->hooks.assign(n, 0);
    std::vector<char> seen(n, 0);
    // (dtype, device) groups in order of first appearance, each in `order`
    std::vector<std::pair<at::TensorOptions, std::vector<int>>> groups;
    for (int j = 0; j < n; ++j) {
      int i = order[j];
      if (i < 0 || i >= n || seen[i]) throw std::invalid_argument("bucket order is not a permutation");
      seen[i] = 1;
      const auto& p = r->params[i];
      if (!p.defined() || !p.requires_grad() || p.numel() == 0) continue;
      auto opts = at::TensorOptions().dtype(p.scalar_type()).device(p.device());
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& x) {
        return x.first.dtype() == opts.dtype() && x.first.device() == opts.device();
      });
      if (it == groups.end()) groups.push_back({opts, {i}});
      else it->second.push_back(i);
    }
    for (auto& [opts, members] : groups) {
      int64_t bytes = 0;
      for (int i : members) {
        const auto& p = r->params[i];
        int64_t b = p.numel() * static_cast<int64_t>(p.element_size());
        if (r->buckets.empty() || r->buckets.back().options.dtype() != opts.dtype() ||
            r->buckets.back().options.device() != opts.device() ||
            (bytes > 0 && bytes + b > bucket_bytes)) {
          r->buckets.emplace_back();
          r->buckets.back().options = opts;
          bytes = 0;
        }
        auto& k = r->buckets.back();
        r->slots[i] = {static_cast<int>(r->buckets.size() - 1), k.numel, p.numel()};
        k.params.push_back(i);
        k.numel += p.numel();
        bytes += b;
      }
    }
    std::weak_ptr<Reducer> weak = r;
    for (int i = 0; i < n; ++i) {
      if (r->slots[i].bucket < 0) continue;
      r->hooks[i] = r->params[i].register_hook([weak, i](const at::Tensor& grad) -> at::Tensor {
        auto r = weak.lock();
        return r ? r->hook(i, grad) : grad;
      });
    }
    *out = new std::shared_ptr<Reducer>(std::move(r));
  });
}

void dv2_c10d_reducer_free(void* rp) { delete static_cast<std::shared_ptr<Reducer>*>(rp); }

int dv2_c10d_reducer_arm(void* rp, char** err) {
  return guard(err, [&] { (*static_cast<std::shared_ptr<Reducer>*>(rp))->arm(); });
}

// grads: n tensors (null for none), as `run_backward` returned them for the n parameters
int dv2_c10d_reducer_finish(void* rp, void** grads, int n, char** err) {
  return guard(err, [&] {
    auto& r = *static_cast<std::shared_ptr<Reducer>*>(rp);
    if (n != static_cast<int>(r->params.size()))
      throw std::invalid_argument("finish got " + std::to_string(n) + " gradients for " +
                                  std::to_string(r->params.size()) + " parameters");
    std::vector<const at::Tensor*> g(n);
    for (int i = 0; i < n; ++i) g[i] = static_cast<const at::Tensor*>(grads[i]);
    r->finish(g);
  });
}

// what: 0 = each parameter's bucket (n entries, -1 for none), 1 = bucket indices in launch
// order of the last step, 2 = parameter indices in the order their hooks ran in the last step.
// Writes up to cap entries; returns how many there are.
int dv2_c10d_reducer_log(void* rp, int what, int* out, int cap) {
  try {
    auto& r = *static_cast<std::shared_ptr<Reducer>*>(rp);
    std::lock_guard<std::mutex> lock(r->mu);
    std::vector<int> v;
    if (what == 0)
      for (const auto& s : r->slots) v.push_back(s.bucket);
    else
      v = what == 1 ? r->launches : r->arrivals;
    for (int i = 0; i < cap && i < static_cast<int>(v.size()); ++i) out[i] = v[i];
    return static_cast<int>(v.size());
  } catch (...) {
    return 0;
  }
}

}  // extern "C"
