# Redis Cluster's slot routing (backends/redis/slots.c): unit_slots checks
# it offline, and `unit_slots live` against a private three-primary cluster
# on loopback, started and stopped around it (a CTest fixture, as
# tests/redis.cmake does for the single server).  Without hiredis nothing
# is registered; without redis-server, the live test is not.
if(NOT HIREDIS_FOUND)
  message(STATUS "redis cluster tests: not registered (need hiredis)")
  return()
endif()

# slots.c compiled into the test itself: its functions are hidden in the
# library, as every internal one is.
add_executable(unit_slots ${CMAKE_CURRENT_SOURCE_DIR}/unit_slots.c
  ${PROJECT_SOURCE_DIR}/backends/redis/slots.c)
target_compile_definitions(unit_slots PRIVATE TALLY_HAVE_HIREDIS=1)
target_include_directories(unit_slots PRIVATE
  ${PROJECT_SOURCE_DIR}/backends/redis ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(unit_slots PRIVATE tally_flags PkgConfig::CMOCKA
  PkgConfig::HIREDIS)
add_test(NAME unit_slots COMMAND unit_slots)
set_tests_properties(unit_slots PROPERTIES TIMEOUT 60)

find_program(TALLY_REDIS_SERVER redis-server)
find_program(TALLY_REDIS_CLI redis-cli)
if(NOT TALLY_REDIS_SERVER OR NOT TALLY_REDIS_CLI)
  message(STATUS "redis cluster live test: not registered (need redis-server)")
  return()
endif()

# Six ports per build tree (three primaries and, for failover tests, a
# replica each), from its path as tests/redis.cmake derives its one:
# 14100..19985, whose cluster bus ports (+10000) are 24100..29995.  Both
# stay clear of the single server's 20000..24095 and below Linux's
# ephemeral ports (32768..60999), where an outgoing connection could hold
# a bus port the moment a node binds it.
string(MD5 _tally_hash "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${_tally_hash}" 0 3 _tally_hash)
math(EXPR TALLY_CLUSTER_PORT "14100 + (0x${_tally_hash} % 980) * 6"
  OUTPUT_FORMAT DECIMAL)
set(_dir ${CMAKE_CURRENT_BINARY_DIR}/redis-cluster)
set(_script ${CMAKE_CURRENT_SOURCE_DIR}/redis_cluster.sh)

add_test(NAME redis_cluster_start
  COMMAND ${_script} start ${_dir} ${TALLY_CLUSTER_PORT} 3 0)
add_test(NAME redis_cluster_stop COMMAND ${_script} stop ${_dir})
set_tests_properties(redis_cluster_start PROPERTIES
  FIXTURES_SETUP redis_cluster TIMEOUT 60)
set_tests_properties(redis_cluster_stop PROPERTIES
  FIXTURES_CLEANUP redis_cluster TIMEOUT 60)
add_test(NAME unit_slots_live COMMAND unit_slots live)
set_tests_properties(unit_slots_live PROPERTIES FIXTURES_REQUIRED redis_cluster
  ENVIRONMENT "TALLY_TEST_CLUSTER_PORT=${TALLY_CLUSTER_PORT}" TIMEOUT 60)

# The backend over a cluster, end to end through the command line
# (redis_cluster_test.sh: sharded counters in every mode, a slot migrated,
# the cluster stopped, failovers with and without durability=replicas:1).
# It starts its own clusters, three primaries then three plus three
# replicas, on a second block of six ports (the same derivation, half the
# range further on), and stops them on exit.  Run in the release build
# only (the label keeps it out of the other presets, which would run the
# same cases again on the same code paths; unit_cluster runs in all).
math(EXPR TALLY_CLUSTER_PORT2 "14100 + ((0x${_tally_hash} + 490) % 980) * 6"
  OUTPUT_FORMAT DECIMAL)
add_test(NAME redis_cluster_cli
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/redis_cluster_test.sh ${TALLY_TEST_CLI}
          ${TALLY_CLUSTER_PORT2} ${CMAKE_CURRENT_BINARY_DIR}/redis-cluster-cli)
set_tests_properties(redis_cluster_cli PROPERTIES LABELS cluster TIMEOUT 300
  SKIP_RETURN_CODE 77)

# The backend over the fixture's cluster through the public API: threads
# in every contract (under ThreadSanitizer too), tickets, a shard of
# another type, keep, replicas that are not there.
add_executable(unit_cluster ${CMAKE_CURRENT_SOURCE_DIR}/unit_cluster.c)
target_link_libraries(unit_cluster PRIVATE tally PkgConfig::CMOCKA
  PkgConfig::HIREDIS Threads::Threads)
add_test(NAME unit_cluster COMMAND unit_cluster)
set_tests_properties(unit_cluster PROPERTIES FIXTURES_REQUIRED redis_cluster
  ENVIRONMENT "TALLY_TEST_CLUSTER_PORT=${TALLY_CLUSTER_PORT}" TIMEOUT 120
  LABELS tsan)
