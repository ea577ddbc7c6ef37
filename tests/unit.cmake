# cmocka unit tests: the API, and the workloads over every backend.
foreach(name unit_api unit_workload unit_named)
  add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/${name}.c)
  target_link_libraries(${name} PRIVATE tally_tool PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300)
endforeach()
# unit_named plants foreign objects under /dev/shm/tally.* on purpose;
# `tally shm list` (cli_shm) must not run at the same time.
set_tests_properties(unit_named PROPERTIES RESOURCE_LOCK dev_shm)
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
