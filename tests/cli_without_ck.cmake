# cmake -DSOURCE=... -DBINARY=... [-DTOOLCHAIN=file] -P cli_without_ck.cmake
set(toolchain)
if(TOOLCHAIN)
  set(toolchain -DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE} -B ${BINARY} ${toolchain}
    -DTALLY_WITH_CK=OFF -DTALLY_BUILD_TESTS=OFF -DTALLY_BUILD_EXAMPLES=OFF
    -DCMAKE_BUILD_TYPE=Release -DTALLY_WERROR=ON
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "configure without CK failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY} --target tally_cli -j2
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "build without CK failed")
endif()
set(T ${BINARY}/tools/tally)

execute_process(COMMAND ${T} list --format csv OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(rc OR NOT out MATCHES "\nspin,no," OR NOT out MATCHES "\nticket,no,"
   OR NOT out MATCHES "\nmutex,yes,")
  message(FATAL_ERROR "list without CK is wrong (${rc}):\n${out}")
endif()

execute_process(COMMAND ${T} run --backend ticket --workload inc
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 2 OR NOT out STREQUAL "" OR NOT err MATCHES "known but was not built")
  message(FATAL_ERROR "ticket without CK: exit ${rc}, stdout '${out}', stderr '${err}'")
endif()

execute_process(COMMAND ${T} run --backend atomic --workload inc --iters 1000
  OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "atomic without CK failed: ${rc}")
endif()
