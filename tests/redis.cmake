# The redis backend against a private server on loopback, started and
# stopped around these tests (a CTest fixture).  Without redis-server (or a
# tally built without hiredis) they are not registered, and say so.
find_program(TALLY_REDIS_SERVER redis-server)
find_program(TALLY_REDIS_CLI redis-cli)
if(NOT HIREDIS_FOUND OR NOT TALLY_REDIS_SERVER OR NOT TALLY_REDIS_CLI)
  message(STATUS "redis tests: not registered (need hiredis and redis-server)")
  return()
endif()

# One port per build tree, so that build trees tested one after another (or
# at once) do not share a server.
string(MD5 _tally_hash "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${_tally_hash}" 0 3 _tally_hash)
math(EXPR TALLY_REDIS_PORT "20000 + 0x${_tally_hash}" OUTPUT_FORMAT DECIMAL)
set(_dir ${CMAKE_CURRENT_BINARY_DIR}/redis)
set(_script ${CMAKE_CURRENT_SOURCE_DIR}/redis_server.sh)

add_test(NAME redis_start COMMAND ${_script} start ${TALLY_REDIS_PORT} ${_dir})
add_test(NAME redis_stop COMMAND ${_script} stop ${TALLY_REDIS_PORT} ${_dir})
set_tests_properties(redis_start PROPERTIES FIXTURES_SETUP redis)
set_tests_properties(redis_stop PROPERTIES FIXTURES_CLEANUP redis)

set(_url "redis://127.0.0.1:${TALLY_REDIS_PORT}")
add_executable(unit_redis ${CMAKE_CURRENT_SOURCE_DIR}/unit_redis.c)
target_link_libraries(unit_redis PRIVATE tally_harness tally PkgConfig::CMOCKA
  PkgConfig::HIREDIS Threads::Threads)
add_test(NAME unit_redis COMMAND unit_redis)
add_test(NAME cli_redis COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh
  ${TALLY_TEST_CLI} redis)
# unit_redis also runs in the ThreadSanitizer suite: combining adds from
# many threads is concurrent code (its fixture comes along).
set_tests_properties(unit_redis PROPERTIES LABELS tsan)
set_tests_properties(unit_redis cli_redis PROPERTIES FIXTURES_REQUIRED redis
  ENVIRONMENT "TALLY_TEST_REDIS_URL=${_url};TALLY_TEST_REDIS_PIDFILE=${_dir}/pid"
  TIMEOUT 300)

# Two client hosts and a server in network namespaces joined by veth pairs:
# joined runs, a link that goes down, a server killed and restarted.  Needs
# root (CI runs as root); skipped, with the reason, otherwise.
add_test(NAME redis_netns COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/redis_netns.sh
  ${TALLY_TEST_CLI})
set_tests_properties(redis_netns PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS netns
  RUN_SERIAL TRUE)
