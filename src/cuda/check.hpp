#pragma once
// NEXUS_CUDA_CHECK / NEXUS_CUDNN_CHECK / NEXUS_CUBLAS_CHECK: turn a failing CUDA, cuDNN or
// cuBLAS call into a nexus::Error carrying the call, the status name and the layer:
//   "cudnnConvolutionForward(...) failed: CUDNN_STATUS_BAD_PARAM (layer 'conv1', cuda:0,
//    src/cuda/cuda_backend.cpp:412)".
// `layer` is any expression convertible to std::string_view ("" when no layer is involved).

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <string_view>

#include "nexus/core/error.hpp"

namespace nexus::cuda {

[[noreturn]] inline void fail_call(const char* call, std::string_view status,
                                   std::string_view detail, std::string_view layer,
                                   const char* file, int line) {
  throw_error("{} failed: {}{}{} (layer '{}', {}:{})", call, status, detail.empty() ? "" : ": ",
              detail, layer, file, line);
}

}  // namespace nexus::cuda

#define NEXUS_CUDA_CHECK(call, layer)                                                           \
  do {                                                                                          \
    const cudaError_t nexus_status_ = (call);                                                   \
    if (nexus_status_ != cudaSuccess) {                                                         \
      (void)cudaGetLastError(); /* clear a non-sticky error so later calls work */              \
      ::nexus::cuda::fail_call(#call, cudaGetErrorName(nexus_status_),                          \
                               cudaGetErrorString(nexus_status_), (layer), __FILE__, __LINE__); \
    }                                                                                           \
  } while (0)

#define NEXUS_CUDNN_CHECK(call, layer)                                                           \
  do {                                                                                           \
    const cudnnStatus_t nexus_status_ = (call);                                                  \
    if (nexus_status_ != CUDNN_STATUS_SUCCESS)                                                   \
      ::nexus::cuda::fail_call(#call, cudnnGetErrorString(nexus_status_), "", (layer), __FILE__, \
                               __LINE__);                                                        \
  } while (0)

#define NEXUS_CUBLAS_CHECK(call, layer)                                                            \
  do {                                                                                             \
    const cublasStatus_t nexus_status_ = (call);                                                   \
    if (nexus_status_ != CUBLAS_STATUS_SUCCESS)                                                    \
      ::nexus::cuda::fail_call(#call, cublasGetStatusName(nexus_status_),                          \
                               cublasGetStatusString(nexus_status_), (layer), __FILE__, __LINE__); \
  } while (0)
