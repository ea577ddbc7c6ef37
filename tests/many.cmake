# Many counters (issue 22): 10^5 counters of the packed backends (percpu's
# CPU-major arenas, the shared pool's lines) made from threads, added to
# from threads and forked processes, destroyed in random order; freed slots
# reused from zero; named counters of another host shape read or refused.
# Forks, so not labelled tsan; an ASan build runs it like every unit test.
add_executable(unit_many ${CMAKE_CURRENT_SOURCE_DIR}/unit_many.c)
target_link_libraries(unit_many PRIVATE tally tally_flags Threads::Threads
  PkgConfig::CMOCKA)
add_test(NAME unit_many COMMAND unit_many)
# It plants reshaped objects under /dev/shm/tally.*, as unit_named does.
set_tests_properties(unit_many PROPERTIES TIMEOUT 300 RESOURCE_LOCK dev_shm)

# The measurement program runs and checks its counts (never its speeds):
# every backend at 10^3 counters, private and shared; a count that is not
# exact prints NO, a run that fails says "failed" or "died".
add_test(NAME many_counters_runs COMMAND many_counters --counts 1000)
set_tests_properties(many_counters_runs PROPERTIES TIMEOUT 120 LABELS bench
  PASS_REGULAR_EXPRESSION "percpu +shared +1000 .* yes"
  FAIL_REGULAR_EXPRESSION " NO |failed|died")

# The queue locks' node pools: bounded adds behind a holder that does not
# unlock, more of them than the pool has nodes, each back within its bound.
# Threads only: the tsan preset runs it too.
add_executable(unit_qnodes ${CMAKE_CURRENT_SOURCE_DIR}/unit_qnodes.c)
target_link_libraries(unit_qnodes PRIVATE tally_watchdog tally tally_flags
  Threads::Threads PkgConfig::CMOCKA)
add_test(NAME unit_qnodes COMMAND unit_qnodes)
set_tests_properties(unit_qnodes PROPERTIES TIMEOUT 120 LABELS tsan)
