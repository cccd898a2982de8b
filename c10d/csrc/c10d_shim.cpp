// A C ABI over libtorch's c10d: TCPStore rendezvous, ProcessGroupGloo (CPU) and, when built
// with DINOV2_C10D_NCCL, ProcessGroupNCCL (CUDA); all-reduce (coalesced), broadcast,
// all-gather and barrier. Every C++ exception is caught here and handed to Rust as a message.
// Tensors arrive as tch's C_tensor pointers, which are `torch::Tensor*`.
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef DINOV2_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
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

}  // extern "C"
