# cmocka unit tests: the API, and the workloads over every backend.
foreach(name unit_api unit_workload unit_named unit_harness unit_describe)
  add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/${name}.c)
  target_link_libraries(${name} PRIVATE tally_harness tally PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300)
endforeach()
# unit_named plants foreign objects under /dev/shm/tally.* on purpose;
# `tally shm list` (cli_shm) must not run at the same time.  unit_describe
# makes named counters too.
set_tests_properties(unit_named unit_describe PROPERTIES RESOURCE_LOCK dev_shm)
# unit_api starts threads but never forks: the tsan preset runs it too
# (tally_add_cs's callback under every lock is a race TSan would see).
set_tests_properties(unit_api PROPERTIES LABELS tsan)
# unit_inline: a program built with TALLY_INLINE (include/tally.h), against
# the shared library as an outside program would be.  Threads only, no fork:
# the tsan preset runs it too (the inline atomic add is compiled, and
# checked, in the program itself).
add_executable(unit_inline ${CMAKE_CURRENT_SOURCE_DIR}/unit_inline.c)
target_link_libraries(unit_inline PRIVATE tally tally_flags Threads::Threads
  PkgConfig::CMOCKA)
add_test(NAME unit_inline COMMAND unit_inline)
set_tests_properties(unit_inline PROPERTIES TIMEOUT 300 LABELS tsan
  RESOURCE_LOCK dev_shm)

# The unit tests follow the build: configured without Concurrency Kit, the
# quick ones pass there too (tests/unit_without_ck.cmake).  They make named
# counters, as unit_named does.
# Not where the programs need an emulator (a cross build run under qemu).
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  add_test(NAME unit_without_ck
    COMMAND ${CMAKE_COMMAND}
      -DSOURCE=${PROJECT_SOURCE_DIR} -DBINARY=${CMAKE_CURRENT_BINARY_DIR}/unit-without-ck
      -P ${CMAKE_CURRENT_SOURCE_DIR}/unit_without_ck.cmake)
  set_tests_properties(unit_without_ck PROPERTIES TIMEOUT 300
    RESOURCE_LOCK dev_shm)
endif()

# The must-fail runs.  tally_busted is a test-only copy of the library: the
# same objects, with src/registry.c compiled again to list one more backend,
# tests/busted.c, which claims TALLY_CAP_LOCKED and takes no lock (as
# locktorture's lock_busted).  The exclusion tests run on it alone
# ($TALLY_TEST_BACKEND) and pass only if they report it, with the words they
# use for a lock that does not exclude: proof that they can catch one.
# Not labelled tsan: there the broken lock is ThreadSanitizer's finding.
add_library(tally_busted STATIC $<TARGET_OBJECTS:tally_objects>
  ${PROJECT_SOURCE_DIR}/src/registry.c ${CMAKE_CURRENT_SOURCE_DIR}/busted.c
  ${CMAKE_CURRENT_SOURCE_DIR}/relaxed.c)
target_compile_definitions(tally_busted PRIVATE TALLY_TEST_BUSTED=1)
target_include_directories(tally_busted
  PUBLIC ${PROJECT_SOURCE_DIR}/include PRIVATE ${PROJECT_SOURCE_DIR}/src)
get_property(_busted_deps GLOBAL PROPERTY TALLY_LINK_DEPS)
target_link_libraries(tally_busted PUBLIC ${_busted_deps}
  PRIVATE tally_flags)
# unit_inline's two adders count, with no probe: a lock that is missing
# loses their updates only when the scheduler lets them overlap, so it has
# no must-fail run (a test that fails only sometimes proves nothing).
add_executable(unit_api_busted ${CMAKE_CURRENT_SOURCE_DIR}/unit_api.c)
target_link_libraries(unit_api_busted PRIVATE tally_busted tally_flags
  PkgConfig::CMOCKA)
# The stress rounds (tools/harness/stress_round.c), as `tally stress` runs
# them, on the copy with busted: the harness's objects, in front of it.
add_executable(unit_harness_busted ${CMAKE_CURRENT_SOURCE_DIR}/unit_harness.c)
target_link_libraries(unit_harness_busted PRIVATE tally_harness tally_busted
  PkgConfig::CMOCKA)
# TEST  PROGRAM  CMOCKA-FILTER  WHAT-IT-MUST-SAY
set(_must_fail
  "busted_add_cs\;unit_api\;test_add_cs_runs_inside_the_lock\;busted: [0-9]+ times a worker found the critical section occupied"
  "busted_stress_round\;unit_harness\;test_stress_round_finds_no_overlap\;busted \\(threads\\): [0-9]+ times a worker found the critical section occupied")
foreach(case ${_must_fail})
  list(GET case 0 test)
  list(GET case 1 prog)
  list(GET case 2 filter)
  list(GET case 3 says)
  add_test(NAME ${test} COMMAND ${prog}_busted ${filter})
  set_tests_properties(${test} PROPERTIES TIMEOUT 120
    ENVIRONMENT TALLY_TEST_BACKEND=busted PASS_REGULAR_EXPRESSION "${says}")
endforeach()
# Everything else about busted is sound: it is created, placed at its
# state_align (a page, wider than a cache line: see tests/busted.c) in private
# and shared memory, and wraps as every backend does.
add_test(NAME busted_is_placed COMMAND unit_api_busted
  test_every_backend_wraps_alike)
set_tests_properties(busted_is_placed PROPERTIES TIMEOUT 60
  ENVIRONMENT TALLY_TEST_BACKEND=busted)
