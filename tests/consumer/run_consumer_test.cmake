# The installed package is usable and relocatable:
#   1. installs the built tree into a scratch prefix;
#   2. no installed CMake file names a path of this machine (build or source tree, the prefix,
#      the CUDA toolkit's directory);
#   3. moves the prefix elsewhere, then configures, builds and runs a consumer project against it
#      (find_package(nexus CONFIG REQUIRED));
#   4. a package built without CUDA must not look for the CUDA toolkit: the consumer is configured
#      with find_package(CUDAToolkit) disabled. A package built with CUDA (where the toolkit is
#      present) must provide nexus::nexus_cuda and find cuDNN as nexus::cudnn.
set(root ${NEXUS_BINARY_DIR}/consumer-test)
set(prefix ${root}/prefix)
set(moved ${root}/elsewhere/nexus)
set(build ${root}/build)
file(REMOVE_RECURSE ${root})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${NEXUS_BINARY_DIR} --prefix ${prefix}
                OUTPUT_QUIET RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()

file(GLOB_RECURSE cmake_files ${prefix}/*.cmake)
if(NOT cmake_files)
  message(FATAL_ERROR "no CMake package files installed under ${prefix}")
endif()
set(machine_paths ${NEXUS_BINARY_DIR} ${NEXUS_SOURCE_DIR} ${prefix} /usr/local/cuda)
foreach(f ${cmake_files})
  file(READ ${f} text)
  foreach(p ${machine_paths})
    string(FIND "${text}" "${p}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "not relocatable: ${f} names the absolute path ${p}")
    endif()
  endforeach()
endforeach()

get_filename_component(parent ${moved} DIRECTORY)
file(MAKE_DIRECTORY ${parent})
file(RENAME ${prefix} ${moved})

file(GLOB_RECURSE config_file ${moved}/*/nexusConfig.cmake)
file(READ ${config_file} config)
get_filename_component(config_dir ${config_file} DIRECTORY)
string(REGEX MATCH "set\\(nexus_WITH_CUDA ([01])\\)" _ "${config}")
set(with_cuda ${CMAKE_MATCH_1})
set(extra)
if(NOT with_cuda)
  list(APPEND extra -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON)
endif()
message(STATUS "package built with CUDA: ${with_cuda}")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${NEXUS_SOURCE_DIR}/tests/consumer/project -B ${build}
                -DCMAKE_PREFIX_PATH=${moved} ${extra} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer configure failed: ${rc}")
endif()
if(with_cuda)
  file(READ ${config_dir}/nexusTargets.cmake targets)
  string(FIND "${targets}" "nexus::nexus_cuda" has_cuda)
  string(FIND "${targets}" "nexus::cudnn" has_cudnn)
  if(has_cuda EQUAL -1 OR has_cudnn EQUAL -1)
    message(FATAL_ERROR "a CUDA package must export nexus::nexus_cuda and link nexus::cudnn")
  endif()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer build failed: ${rc}")
endif()
execute_process(COMMAND ${build}/consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer run failed: ${rc}")
endif()
