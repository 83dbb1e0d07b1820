# nexus_cuda: the CudaBackend (cuDNN 9 + cuBLAS/cuBLASLt from the CUDA toolkit), included by the
# top CMakeLists.txt when NEXUS_WITH_CUDA is ON (after enable_language(CUDA) and
# find_package(CUDAToolkit)). Builds and links without a GPU; its tests skip where none is found.

# Hopper first (the target of the benchmarks); 80 keeps A100s working. Override with
# -DNEXUS_CUDA_ARCHITECTURES="90;100" for newer parts.
set(NEXUS_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures of nexus_cuda")

# cuDNN ships inside the toolkit here (/usr/local/cuda/{include,lib64}); CUDNN_ROOT overrides.
find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES include)
find_library(CUDNN_LIBRARY cudnn
  HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR}
  PATH_SUFFIXES lib64 lib)
if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
  message(FATAL_ERROR "NEXUS_WITH_CUDA: cuDNN not found (cudnn.h: ${CUDNN_INCLUDE_DIR}, "
                      "libcudnn: ${CUDNN_LIBRARY}); set CUDNN_ROOT or -DNEXUS_WITH_CUDA=OFF")
endif()
message(STATUS "nexus_cuda: cuDNN ${CUDNN_LIBRARY}, architectures ${NEXUS_CUDA_ARCHITECTURES}")

file(GLOB NEXUS_CUDA_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/*.cu ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/*.cpp)
add_library(nexus_cuda STATIC ${NEXUS_CUDA_SOURCES})
add_library(nexus::nexus_cuda ALIAS nexus_cuda)
set_target_properties(nexus_cuda PROPERTIES
  CUDA_ARCHITECTURES "${NEXUS_CUDA_ARCHITECTURES}"
  CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON)
target_include_directories(nexus_cuda PRIVATE ${CUDNN_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
# The installed package names no path of this machine: consumers get cuDNN as nexus::cudnn,
# which nexusConfig.cmake finds beside their CUDA toolkit.
target_link_libraries(nexus_cuda PUBLIC nexus
  PRIVATE CUDA::cudart CUDA::cublas CUDA::cublasLt
          $<BUILD_INTERFACE:${CUDNN_LIBRARY}> $<INSTALL_INTERFACE:nexus::cudnn>)
target_compile_definitions(nexus_cuda PUBLIC NEXUS_HAVE_CUDA=1)
# The legacy cuDNN API (descriptors, FindConvolutionForwardAlgorithmEx) is deprecated in v9 but
# supported; it keeps the backend small.
target_compile_options(nexus_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-deprecated-declarations>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wno-deprecated-declarations>)

# nexus itself learns that the real factory lives in nexus_cuda (src/exec/cuda_stub.cpp is empty).
target_compile_definitions(nexus PUBLIC NEXUS_WITH_CUDA=1)

install(TARGETS nexus_cuda EXPORT nexusTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

# Whoever links nexus gets the CudaBackend too (examples, benchmarks, an Engine creating GPU
# executors): static libraries may depend on each other in a cycle.
target_link_libraries(nexus INTERFACE nexus_cuda)
