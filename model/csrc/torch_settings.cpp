// Process-wide libtorch settings that tch does not expose, behind a C ABI for
// model::runtime::settings. Every C++ exception is caught here and returned as a message.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

namespace {
int fail(const std::exception& e, char* err, size_t n) {
  std::snprintf(err, n, "%s", e.what());
  return 1;
}
// 0: CPU, 1: CUDA (c10::DeviceType's values); anything else throws.
at::DeviceType autocast_device(int device_type) {
  switch (device_type) {
    case 0:
      return at::kCPU;
    case 1:
      return at::kCUDA;
    default:
      throw std::invalid_argument("autocast: device type " + std::to_string(device_type) +
                                  " is neither CPU (0) nor CUDA (1)");
  }
}
// fp16, bf16 or fp32 (c10::ScalarType's values, as tch's Kind); anything else throws.
at::ScalarType autocast_dtype(int dtype) {
  auto t = static_cast<at::ScalarType>(dtype);
  if (t != at::kHalf && t != at::kBFloat16 && t != at::kFloat) {
    throw std::invalid_argument("autocast: dtype " + std::to_string(dtype) +
                                " is not Half (5), Float (6) or BFloat16 (15)");
  }
  return t;
}
at::Float32Precision precision(int tf32) {
  return tf32 ? at::Float32Precision::TF32 : at::Float32Precision::IEEE;
}
}  // namespace

extern "C" {

// TF32 for CUDA fp32 matrix products (cuBLAS) and convolutions (cuDNN). libtorch's defaults,
// as PyTorch's: matmul off, convolutions on.
int dinov2_set_cuda_tf32(int matmul, int conv, char* err, size_t n) {
  try {
    auto& ctx = at::globalContext();
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, precision(matmul));
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, precision(conv));
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, n);
  }
}

// The current settings: 1 where TF32 is allowed.
int dinov2_get_cuda_tf32(int* matmul, int* conv, char* err, size_t n) {
  try {
    auto& ctx = at::globalContext();
    *matmul = ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
              at::Float32Precision::TF32;
    *conv = ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV) ==
            at::Float32Precision::TF32;
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, n);
  }
}

// Autocast of one device type (0 CPU, 1 CUDA): whether it is on and its dtype (a
// c10::ScalarType value). Per thread, as libtorch keeps them.
int dinov2_get_autocast(int device_type, int* enabled, int* dtype, char* err, size_t n) {
  try {
    auto d = autocast_device(device_type);
    *enabled = at::autocast::is_autocast_enabled(d);
    *dtype = static_cast<int>(at::autocast::get_autocast_dtype(d));
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, n);
  }
}

int dinov2_set_autocast(int device_type, int enabled, int dtype, char* err, size_t n) {
  try {
    auto d = autocast_device(device_type);
    auto t = autocast_dtype(dtype);
    at::autocast::set_autocast_enabled(d, enabled != 0);
    at::autocast::set_autocast_dtype(d, t);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, n);
  }
}

// torch.autocast.__enter__ for one device type: remember the previous state (into prev_*),
// set `enabled` and `dtype` (a negative dtype keeps the current one, as autocast(enabled=False)
// does), count one more nesting level. The cache of casted weights stays as it is (enabled,
// libtorch's default).
int dinov2_autocast_enter(int device_type, int enabled, int dtype, int* prev_enabled,
                          int* prev_dtype, char* err, size_t n) {
  try {
    auto d = autocast_device(device_type);
    auto prev = at::autocast::get_autocast_dtype(d);
    auto t = dtype < 0 ? prev : autocast_dtype(dtype);
    *prev_enabled = at::autocast::is_autocast_enabled(d);
    *prev_dtype = static_cast<int>(prev);
    at::autocast::set_autocast_enabled(d, enabled != 0);
    at::autocast::set_autocast_dtype(d, t);
    at::autocast::increment_nesting();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, n);
  }
}

// torch.autocast.__exit__: one nesting level less, the cache of casted weights cleared when
// the outermost level ends, the previous state restored.
int dinov2_autocast_exit(int device_type, int prev_enabled, int prev_dtype, char* err,
                         size_t n) {
  try {
    auto d = autocast_device(device_type);
    // (prev_dtype comes from dinov2_autocast_enter: whatever it was, it is put back)
    auto t = static_cast<at::ScalarType>(prev_dtype);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(d, prev_enabled != 0);
    at::autocast::set_autocast_dtype(d, t);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, n);
  }
}

}  // extern "C"
