# ctest build_fingerprint_script: cmake/build_fingerprint.cmake (nexus::build_fingerprint()) on a
# scratch source tree: the fingerprint changes when a hashed file's content or the build
# configuration changes, comes back when the edit is undone, does not depend on where the tree
# is, and an unchanged fingerprint leaves the header untouched (nothing recompiles). Then the
# build's own list: it names the backends, kernels, model code and Profiler and not the scheduler.
#   cmake -DNEXUS_SOURCE_DIR=... -DNEXUS_BINARY_DIR=... -P tests/core/build_fingerprint_test.cmake
cmake_minimum_required(VERSION 3.25)
set(_script ${NEXUS_SOURCE_DIR}/cmake/build_fingerprint.cmake)
set(_work ${NEXUS_BINARY_DIR}/build_fingerprint_test)
file(REMOVE_RECURSE ${_work})

function(fingerprint tree config out)
  file(WRITE ${_work}/${tree}.list "${config}\nRelease, test\nsrc/exec/a.cpp\nsrc/model/b.cpp\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -DNEXUS_FP_SOURCE_DIR=${_work}/${tree}
                          -DNEXUS_FP_LIST=${_work}/${tree}.list -DNEXUS_FP_OUTPUT=${_work}/${tree}.inc
                          -P ${_script}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "build_fingerprint.cmake failed (${rc}): ${o}${e}")
  endif()
  file(STRINGS ${_work}/${tree}.inc line REGEX "#define NEXUS_BUILD_FINGERPRINT")
  if(NOT line MATCHES "\"([0-9a-f]+) \\(Release, test\\)\"$")
    message(FATAL_ERROR "unexpected header line: ${line}")
  endif()
  string(LENGTH "${CMAKE_MATCH_1}" n)
  if(NOT n EQUAL 16)
    message(FATAL_ERROR "fingerprint ${CMAKE_MATCH_1} has ${n} hex digits, expected 16")
  endif()
  set(${out} ${CMAKE_MATCH_1} PARENT_SCOPE)
endfunction()

function(expect what a op b)
  if(op STREQUAL "same" AND NOT a STREQUAL b)
    message(FATAL_ERROR "${what}: expected the same fingerprint, got ${a} and ${b}")
  elseif(op STREQUAL "differ" AND a STREQUAL b)
    message(FATAL_ERROR "${what}: expected a different fingerprint, both are ${a}")
  endif()
  message(STATUS "ok: ${what} (${a} ${op} ${b})")
endfunction()

file(WRITE ${_work}/t1/src/exec/a.cpp "int kernel() { return 1; }\n")
file(WRITE ${_work}/t1/src/model/b.cpp "int rewrite() { return 2; }\n")
fingerprint(t1 "build=Release flags=-O3" fp1)
file(TIMESTAMP ${_work}/t1.inc t_first "%s")

execute_process(COMMAND ${CMAKE_COMMAND} -E sleep 1.1)
fingerprint(t1 "build=Release flags=-O3" fp_again)
expect("nothing changed" ${fp1} same ${fp_again})
file(TIMESTAMP ${_work}/t1.inc t_again "%s")
if(NOT t_first STREQUAL t_again)
  message(FATAL_ERROR "the header was rewritten although the fingerprint did not change")
endif()

file(WRITE ${_work}/t1/src/exec/a.cpp "int kernel() { return 3; }\n")
fingerprint(t1 "build=Release flags=-O3" fp_edit)
expect("a kernel edited" ${fp1} differ ${fp_edit})
file(WRITE ${_work}/t1/src/exec/a.cpp "int kernel() { return 1; }\n")
fingerprint(t1 "build=Release flags=-O3" fp_undo)
expect("the edit undone" ${fp1} same ${fp_undo})

fingerprint(t1 "build=Release flags=-O2" fp_flags)
expect("compiler flags changed" ${fp1} differ ${fp_flags})

file(RENAME ${_work}/t1/src/model/b.cpp ${_work}/t1/src/model/c.cpp)
file(WRITE ${_work}/t1/src/model/b.cpp "int rewrite() { return 2; }  // same code, reformatted\n")
fingerprint(t1 "build=Release flags=-O3" fp_model)
expect("model code edited" ${fp1} differ ${fp_model})
file(REMOVE ${_work}/t1/src/model/b.cpp)
fingerprint(t1 "build=Release flags=-O3" fp_removed)
expect("a listed file removed" ${fp1} differ ${fp_removed})

file(WRITE ${_work}/elsewhere/t2/src/exec/a.cpp "int kernel() { return 1; }\n")
file(WRITE ${_work}/elsewhere/t2/src/model/b.cpp "int rewrite() { return 2; }\n")
file(RENAME ${_work}/elsewhere/t2 ${_work}/t2)
fingerprint(t2 "build=Release flags=-O3" fp_copy)
expect("the same code in another checkout" ${fp1} same ${fp_copy})

# The build's own list (written at configure time by CMakeLists.txt).
file(STRINGS ${NEXUS_BINARY_DIR}/generated/build_fingerprint_sources.txt listed)
foreach(f src/exec/cpu_backend.cpp src/exec/cpu_kernels.inc src/cuda/kernels.cu
          src/model/graph.cpp src/model/zoo_face_detector.cpp src/profile/profiler.cpp
          include/nexus/exec/backend.hpp)
  if(NOT f IN_LIST listed)
    message(FATAL_ERROR "the build fingerprint does not cover ${f}")
  endif()
endforeach()
foreach(f src/runtime/engine.cpp src/schedule/squishy_bin_packer.cpp src/core/version.cpp)
  if(f IN_LIST listed)
    message(FATAL_ERROR "the build fingerprint covers ${f}, which does not decide model speed")
  endif()
endforeach()
file(REMOVE_RECURSE ${_work})
