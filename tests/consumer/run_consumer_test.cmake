# Installs the built tree into a scratch prefix, then configures, builds and runs a tiny
# consumer project that does find_package(nexus CONFIG REQUIRED).
set(prefix ${NEXUS_BINARY_DIR}/consumer-test/prefix)
set(build ${NEXUS_BINARY_DIR}/consumer-test/build)
file(REMOVE_RECURSE ${NEXUS_BINARY_DIR}/consumer-test)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${NEXUS_BINARY_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${NEXUS_SOURCE_DIR}/tests/consumer/project -B ${build}
                -DCMAKE_PREFIX_PATH=${prefix} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer configure failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer build failed: ${rc}")
endif()
execute_process(COMMAND ${build}/consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer run failed: ${rc}")
endif()
