# Locks shared across programs never wedge: killed holders, waiters that give
# up, in other PID namespaces and with their pids reused (tests/liveness.sh;
# root only, skipped elsewhere).
add_executable(lock_peer ${CMAKE_CURRENT_SOURCE_DIR}/lock_peer.c)
target_link_libraries(lock_peer PRIVATE tally tally_flags)
add_test(NAME lock_liveness
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/liveness.sh ${TALLY_TEST_CLI}
    ${TALLY_TEST_LOCK_PEER})
set_tests_properties(lock_liveness PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
  RESOURCE_LOCK dev_shm)
