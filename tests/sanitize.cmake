# Stress and sanitizer tests (issue 4).  What is registered depends on how
# this tree is built, read from CMAKE_C_FLAGS:
#   ThreadSanitizer (cmake --preset tsan): label "tsan".  Every synchronized
#     backend must run with no report; 'none' must be reported, which proves
#     the setup can fail.  Processes are not tested here: TSan does not see
#     races between processes.
#   any other build (release, debug, asan): label "stress".  `tally stress`
#     in threads and in processes, exact totals every round; 'none' must lose
#     updates.  Without a sanitizer, also label "valgrind": memcheck on list,
#     run (every backend, threads and processes) and stress.
# Spinning backends must never get more workers than CPUs under TSan (a FIFO
# spinlock then takes minutes): `tally stress` caps them at the online CPU
# count and stops a round after 2 s, and the `run` tests use 2 workers.
set(san_tally ${TALLY_TEST_CLI})

# Every backend compiled into the library (backends/NAME.c) has its own
# tests, but 'none' (deliberately racy, tested apart) and 'redis' (it needs a
# server).  One whose library was missing at build time is known but not
# built in, and one that cannot be shared has no processes mode: those tests
# are skipped on the message that says so.
get_target_property(san_sources tally_objects SOURCES)
set(san_backends)
foreach(src ${san_sources})
  if(src MATCHES "backends/([a-z0-9_]+)\\.c$")
    list(APPEND san_backends ${CMAKE_MATCH_1})
  endif()
endforeach()
list(REMOVE_ITEM san_backends none redis)
set(san_skip "is known but was not built into|cannot be used with --mode processes")

if(CMAKE_C_FLAGS MATCHES "-fsanitize=[^ ]*thread")
  set(san_tsan_env "TSAN_OPTIONS=halt_on_error=1:atexit_sleep_ms=0")
  set(san_race "WARNING: ThreadSanitizer: data race.*#0 none_add ")
  foreach(b ${san_backends})
    add_test(NAME tsan_inc_${b} COMMAND ${san_tally} run --backend ${b}
      --workload inc --workers 2 --iters 200000)
    add_test(NAME tsan_stress_${b} COMMAND ${san_tally} stress --backend ${b}
      --mode threads --duration 4)
    set_tests_properties(tsan_inc_${b} tsan_stress_${b} PROPERTIES
      FAIL_REGULAR_EXPRESSION "ThreadSanitizer"
      SKIP_REGULAR_EXPRESSION "${san_skip}")
  endforeach()
  add_test(NAME tsan_stress_all COMMAND ${san_tally} stress --backend all
    --mode threads --duration 4)
  set_tests_properties(tsan_stress_all PROPERTIES
    FAIL_REGULAR_EXPRESSION "ThreadSanitizer")
  # The harness can fail: the unsynchronized backend must be reported, in
  # none.c.  (A pass regular expression ignores the exit status, which is
  # TSan's 66.)
  add_test(NAME tsan_inc_none_races COMMAND ${san_tally} run --backend none
    --workload inc --workers 2 --iters 200000)
  add_test(NAME tsan_stress_none_races COMMAND ${san_tally} stress
    --backend none --mode threads --rounds 200 --seed 1)
  set_tests_properties(tsan_inc_none_races tsan_stress_none_races PROPERTIES
    PASS_REGULAR_EXPRESSION "${san_race}")
  get_property(san_tests DIRECTORY PROPERTY TESTS)
  list(FILTER san_tests INCLUDE REGEX "^tsan_")
  set_tests_properties(${san_tests} PROPERTIES LABELS "tsan" RUN_SERIAL TRUE
    TIMEOUT 300 ENVIRONMENT "${san_tsan_env}")
  # ThreadSanitizer itself finds a broken lock, not only the count check:
  # the stress rounds write a plain word inside every critical section
  # (tools/harness/stress_round.c), so a lock that does not exclude
  # (busted) and a C11 lock whose unlock is relaxed instead of release
  # (tests/relaxed.c: on x86-64 its counts are exact) must both be
  # reported as a data race in the stack of the backend's add.
  foreach(b busted relaxed)
    add_test(NAME tsan_${b}_is_reported COMMAND unit_harness_busted
      test_stress_round_finds_no_overlap)
    set_tests_properties(tsan_${b}_is_reported PROPERTIES LABELS "tsan"
      RUN_SERIAL TRUE TIMEOUT 300
      ENVIRONMENT "${san_tsan_env};TALLY_TEST_BACKEND=${b}"
      PASS_REGULAR_EXPRESSION
        "WARNING: ThreadSanitizer: data race.*${b}_add_cs")
  endforeach()
  return()
endif()

foreach(mode threads processes)
  add_test(NAME stress_${mode} COMMAND ${san_tally} stress --backend all
    --mode ${mode} --duration 5)
  # The harness can fail: 'none' must lose updates (exit status 1).
  add_test(NAME stress_${mode}_none_loses COMMAND ${san_tally} stress
    --backend none --mode ${mode} --rounds 500 --seed 1)
  set_tests_properties(stress_${mode}_none_loses PROPERTIES
    PASS_REGULAR_EXPRESSION "LOST UPDATES in round")
  set_tests_properties(stress_${mode} stress_${mode}_none_loses PROPERTIES
    LABELS "stress" RUN_SERIAL TRUE TIMEOUT 300)
endforeach()

# Memcheck cannot run a binary built with ASan or TSan, or one for another
# architecture (a cross build, run under its emulator).
find_program(SAN_VALGRIND valgrind)
if(NOT SAN_VALGRIND OR CMAKE_C_FLAGS MATCHES "-fsanitize=" OR CMAKE_CROSSCOMPILING_EMULATOR)
  return()
endif()
# Leaks of every kind but "still reachable" are errors, and so is any invalid
# access; forked workers are checked too.  Not `tally demo` itself: memcheck
# runs one thread at a time, so a million contended adds per worker on a
# queue spinlock (mcs, clh) take far too long.  The run tests below go
# through the same code for every backend and mode, with small counts.
set(san_vg ${SAN_VALGRIND} -q --error-exitcode=99 --leak-check=full
  --show-leak-kinds=definite,indirect,possible
  --errors-for-leak-kinds=definite,indirect,possible)
add_test(NAME san_valgrind_list COMMAND ${san_vg} ${san_tally} list)
add_test(NAME san_valgrind_list_json COMMAND ${san_vg} ${san_tally} list
  --format json)
add_test(NAME san_valgrind_demo_help COMMAND ${san_vg} ${san_tally} demo
  --help)
add_test(NAME san_valgrind_stress COMMAND ${san_vg} ${san_tally} stress
  --backend all --rounds 20 --seed 1 --max-workers 4)
add_test(NAME san_valgrind_run_bad_input COMMAND ${san_vg} ${san_tally} run
  --workload inc --backend nosuch)
set_tests_properties(san_valgrind_run_bad_input PROPERTIES
  PASS_REGULAR_EXPRESSION "unknown backend 'nosuch'"
  FAIL_REGULAR_EXPRESSION "==[0-9]+== ")
foreach(b none ${san_backends})
  set(w 2)
  if(b STREQUAL "none")
    set(w 1) # its lost updates would fail the run: not what is tested here
  endif()
  foreach(mode threads processes)
    add_test(NAME san_valgrind_run_${b}_${mode} COMMAND ${san_vg} ${san_tally}
      run --backend ${b} --mode ${mode} --workload inc --workers ${w}
      --iters 2000)
  endforeach()
  add_test(NAME san_valgrind_run_${b}_addsub COMMAND ${san_vg} ${san_tally}
    run --backend ${b} --workload addsub --workers ${w} --iters 50
    --sleep-us 100 --format json)
  set_tests_properties(san_valgrind_run_${b}_threads
    san_valgrind_run_${b}_processes san_valgrind_run_${b}_addsub PROPERTIES
    SKIP_REGULAR_EXPRESSION "${san_skip}")
endforeach()
get_property(san_tests DIRECTORY PROPERTY TESTS)
list(FILTER san_tests INCLUDE REGEX "^san_valgrind_")
set_tests_properties(${san_tests} PROPERTIES LABELS "valgrind" TIMEOUT 300)
