# Holds a named counter's lock for a while, for the shm group.
add_executable(shm_holder ${CMAKE_CURRENT_SOURCE_DIR}/shm_holder.c)
target_link_libraries(shm_holder PRIVATE tally tally_flags)

# The command line, driven as a user would: one CTest test per group.
foreach(group basic input processes faults shm trust demo)
  add_test(NAME cli_${group}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh ${TALLY_TEST_CLI} ${group}
      ${TALLY_TEST_SHM_HOLDER})
  set_tests_properties(cli_${group} PROPERTIES TIMEOUT 300)
endforeach()
set_tests_properties(cli_shm cli_trust PROPERTIES RESOURCE_LOCK dev_shm)
# The demo runs twice (table and JSON), each ~20 s, and much longer in the
# sanitizer builds.
set_tests_properties(cli_demo PROPERTIES TIMEOUT 600)

# A build without Concurrency Kit still builds, knows the CK backends by name
# and refuses them as "not built in" (exit 2), which is not "unknown".  It is
# built with this build's toolchain (the i386 preset's cross compiler), and
# not where its programs need an emulator (the aarch64 preset).
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  add_test(NAME cli_without_ck
    COMMAND ${CMAKE_COMMAND}
      -DSOURCE=${PROJECT_SOURCE_DIR} -DBINARY=${CMAKE_CURRENT_BINARY_DIR}/without-ck
      -DTOOLCHAIN=${CMAKE_TOOLCHAIN_FILE}
      -P ${CMAKE_CURRENT_SOURCE_DIR}/cli_without_ck.cmake)
  set_tests_properties(cli_without_ck PROPERTIES TIMEOUT 300)
endif()

# The capabilities are spelled once, in TALLY_CAPS_MAP: `tally list`, tally(1),
# tally(3) and the README must name every one of them (STYLE 16).
add_executable(caps_list ${CMAKE_CURRENT_SOURCE_DIR}/caps_list.c)
target_link_libraries(caps_list PRIVATE tally tally_flags)
add_test(NAME cli_docs_caps
  COMMAND ${CMAKE_COMMAND} -DCAPS_LIST=${TALLY_TEST_CAPS_LIST}
    -DTALLY=${TALLY_TEST_CLI} -DSOURCE=${PROJECT_SOURCE_DIR}
    -P ${CMAKE_CURRENT_SOURCE_DIR}/docs_caps.cmake)
set_tests_properties(cli_docs_caps PROPERTIES TIMEOUT 60)
