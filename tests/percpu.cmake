# percpu (issue 12): storms that would catch a broken restartable sequence.
# Each runs ~2 s: 8 workers per online CPU, moved between CPUs by
# sched_setaffinity while they add, each interrupted 10000 times a second (while it runs) by
# a timer signal whose handler adds too; the count must be exact.
#   rseq path: the workers must take it (exit 77, skipped, where this system
#     registers no rseq); fallback: the same under
#     GLIBC_TUNABLES=glibc.pthread.rseq=0, and the workers must take the
#     atomic path; named: separate programs on one named counter, every
#     other one with rseq turned off, so both paths add at once; fold: a
#     library built with one slot, so that CPU 1 has none of its own and
#     adds atomically into the line where CPU 0 adds by rseq.
# ThreadSanitizer builds always take the atomic path (TSan cannot see the
# sequence): there only the thread storms run, labelled tsan, expecting it.
include(CheckSymbolExists)
check_symbol_exists(timer_create "time.h" PERCPU_TIMER_IN_LIBC)
set(percpu_rt "")
if(NOT PERCPU_TIMER_IN_LIBC)
  set(percpu_rt rt)
endif()

add_executable(percpu_storm ${CMAKE_CURRENT_SOURCE_DIR}/percpu_storm.c)
target_link_libraries(percpu_storm PRIVATE tally_harness tally tally_flags
  Threads::Threads ${percpu_rt})

set(percpu_off "GLIBC_TUNABLES=glibc.pthread.rseq=0")
if(CMAKE_C_FLAGS MATCHES "-fsanitize=[^ ]*thread")
  add_test(NAME percpu_storm_threads COMMAND percpu_storm threads atomic 2)
  add_test(NAME percpu_storm_threads_fallback
    COMMAND percpu_storm threads atomic 2)
  set_tests_properties(percpu_storm_threads_fallback PROPERTIES
    ENVIRONMENT "${percpu_off}")
  set_tests_properties(percpu_storm_threads percpu_storm_threads_fallback
    PROPERTIES LABELS tsan RUN_SERIAL TRUE TIMEOUT 120
    FAIL_REGULAR_EXPRESSION "ThreadSanitizer")
  return()
endif()

foreach(mode threads processes named)
  add_test(NAME percpu_storm_${mode} COMMAND percpu_storm ${mode} rseq 2)
  add_test(NAME percpu_storm_${mode}_fallback
    COMMAND percpu_storm ${mode} atomic 2)
  set_tests_properties(percpu_storm_${mode}_fallback PROPERTIES
    ENVIRONMENT "${percpu_off}")
  set_tests_properties(percpu_storm_${mode} percpu_storm_${mode}_fallback
    PROPERTIES LABELS stress RUN_SERIAL TRUE TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
set_tests_properties(percpu_storm_named percpu_storm_named_fallback
  PROPERTIES RESOURCE_LOCK dev_shm)

# The fold: the library's own sources again, with TALLY_PERCPU_SLOTS=1.
get_target_property(percpu_sources tally_objects SOURCES)
set(percpu_fold_sources)
foreach(src ${percpu_sources})
  if(NOT IS_ABSOLUTE "${src}")
    set(src ${PROJECT_SOURCE_DIR}/src/${src})
  endif()
  list(APPEND percpu_fold_sources ${src})
endforeach()
list(APPEND percpu_fold_sources ${PROJECT_SOURCE_DIR}/src/registry.c)
add_library(tally_percpu_fold STATIC ${percpu_fold_sources})
target_include_directories(tally_percpu_fold PUBLIC ${PROJECT_SOURCE_DIR}/include
  PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_compile_definitions(tally_percpu_fold PRIVATE TALLY_PERCPU_SLOTS=1
  PUBLIC TALLY_STATIC_DEFINE)
target_link_libraries(tally_percpu_fold PRIVATE tally_flags
  PUBLIC Threads::Threads)
add_executable(percpu_storm_fold ${CMAKE_CURRENT_SOURCE_DIR}/percpu_storm.c)
target_link_libraries(percpu_storm_fold PRIVATE tally_harness tally_percpu_fold
  tally_flags ${percpu_rt})
add_test(NAME percpu_storm_fold COMMAND percpu_storm_fold threads any 2)
set_tests_properties(percpu_storm_fold PROPERTIES LABELS stress
  RUN_SERIAL TRUE TIMEOUT 120)
