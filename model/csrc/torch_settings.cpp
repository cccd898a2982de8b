// Process-wide libtorch settings that tch does not expose, behind a C ABI for
// model::runtime::settings. Every C++ exception is caught here and returned as a message.
#include <ATen/Context.h>

#include <cstdio>
#include <exception>

namespace {
int fail(const std::exception& e, char* err, size_t n) {
  std::snprintf(err, n, "%s", e.what());
  return 1;
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

}  // extern "C"
