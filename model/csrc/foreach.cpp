// libtorch's multi-tensor ("foreach") and fused kernels that tch does not expose (it skips
// operators taking or returning tensor lists), behind a C ABI for model::runtime::foreach.
// Each call runs the same ATen operators, in the same order and with the same scalars, as the
// PyTorch code named above it, so results equal PyTorch's bit for bit on every device.
// Tensors arrive as tch's C_tensor pointers, which are `at::Tensor*`. Every C++ exception is
// caught here and returned as a message.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <vector>

namespace {
std::vector<at::Tensor> list(void** ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) v.push_back(*static_cast<at::Tensor*>(ts[i]));
  return v;
}

template <typename F>
int guard(char* err, size_t n, F&& f) {
  try {
    c10::AutoGradMode no_grad(false);
    f();
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, n, "%s", e.what());
  } catch (...) {
    std::snprintf(err, n, "unknown C++ exception");
  }
  return 1;
}
}  // namespace

extern "C" {

// dinov2 SSLMetaArch.update_teacher:
//   torch._foreach_mul_(teacher, m); torch._foreach_add_(teacher, student, alpha=1 - m)
int dinov2_foreach_ema(void** teacher, void** student, int n, double m, char* err, size_t en) {
  return guard(err, en, [&] {
    auto t = list(teacher, n);
    auto s = list(student, n);
    at::_foreach_mul_(t, m);
    at::_foreach_add_(t, s, 1.0 - m);
  });
}

// torch.optim.adam._multi_tensor_adam (foreach=True, capturable=False, amsgrad=False,
// maximize=False, decoupled_weight_decay=True: AdamW) for one parameter group of one device and
// dtype; `steps[i]` is parameter i's step count after this step's increment.
int dinov2_foreach_adamw(void** params, void** grads, void** exp_avgs, void** exp_avg_sqs,
                         const double* steps, int n, double lr, double weight_decay, double beta1,
                         double beta2, double eps, char* err, size_t en) {
  return guard(err, en, [&] {
    auto p = list(params, n);
    auto g = list(grads, n);
    auto m = list(exp_avgs, n);
    auto v = list(exp_avg_sqs, n);
    if (weight_decay != 0) at::_foreach_mul_(p, 1 - lr * weight_decay);
    at::_foreach_lerp_(m, g, 1 - beta1);
    at::_foreach_mul_(v, beta2);
    at::_foreach_addcmul_(v, g, g, 1 - beta2);
    std::vector<at::Scalar> step_size, bc2_sqrt;
    for (int i = 0; i < n; ++i) {
      double bc1 = 1 - std::pow(beta1, steps[i]);
      double bc2 = 1 - std::pow(beta2, steps[i]);
      step_size.emplace_back((lr / bc1) * -1);
      bc2_sqrt.emplace_back(std::pow(bc2, 0.5));
    }
    auto denom = at::_foreach_sqrt(v);
    at::_foreach_div_(denom, bc2_sqrt);
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(p, m, denom, step_size);
  });
}

// torch.optim.adam._fused_adam with decoupled weight decay (AdamW(fused=True)): one kernel per
// tensor (CPU and CUDA). `state_steps` are float32 tensors on the parameters' device holding
// the step count before this step; the kernel increments them.
int dinov2_fused_adamw(void** params, void** grads, void** exp_avgs, void** exp_avg_sqs,
                       void** state_steps, int n, double lr, double weight_decay, double beta1,
                       double beta2, double eps, char* err, size_t en) {
  return guard(err, en, [&] {
    auto p = list(params, n);
    auto g = list(grads, n);
    auto m = list(exp_avgs, n);
    auto v = list(exp_avg_sqs, n);
    auto s = list(state_steps, n);
    at::_foreach_add_(s, 1);
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, false, false,
                      std::nullopt, std::nullopt);
  });
}

// torch._foreach_norm(tensors, 2): one 0-dim norm per tensor, written to `out`.
int dinov2_foreach_norm(void** tensors, int n, void** out, char* err, size_t en) {
  return guard(err, en, [&] {
    auto norms = at::_foreach_norm(list(tensors, n), 2);
    for (int i = 0; i < n; ++i) out[i] = new at::Tensor(std::move(norms[i]));
  });
}

// torch._foreach_mul_(tensors, scalar_tensor) (clip_grad_norm_'s last step).
int dinov2_foreach_mul_tensor(void** tensors, int n, void* factor, char* err, size_t en) {
  return guard(err, en, [&] {
    auto ts = list(tensors, n);
    at::_foreach_mul_(ts, *static_cast<at::Tensor*>(factor));
  });
}

// GradScaler.unscale_: torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf,
// inv_scale): grads *= inv_scale; found_inf = 1 where any is inf/NaN (one device and dtype).
int dinov2_amp_unscale(void** grads, int n, void* found_inf, void* inv_scale, char* err,
                       size_t en) {
  return guard(err, en, [&] {
    auto g = list(grads, n);
    at::_amp_foreach_non_finite_check_and_unscale_(g, *static_cast<at::Tensor*>(found_inf),
                                                   *static_cast<at::Tensor*>(inv_scale));
  });
}

}  // extern "C"
