# `tally bench`: complete and correct results, oversubscription that ends on
# time and says so, bad input refused before any work, plots.  Never asserts
# absolute speeds.  The checks live in bench_check.py (python3).
find_program(TALLY_PYTHON3 python3)
find_program(TALLY_GNUPLOT gnuplot)
if(TALLY_PYTHON3)
  foreach(case json oversubscribed bad_input racy no_gnuplot)
    add_test(NAME bench_${case}
      COMMAND ${TALLY_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/bench_check.py
              ${case} ${TALLY_TEST_CLI})
    set_tests_properties(bench_${case} PROPERTIES TIMEOUT 60 LABELS bench
      SKIP_REGULAR_EXPRESSION "^skipped: ")
  endforeach()
  if(TALLY_GNUPLOT)
    add_test(NAME bench_plot
      COMMAND ${TALLY_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/bench_check.py
              plot ${TALLY_TEST_CLI} ${CMAKE_CURRENT_BINARY_DIR})
    set_tests_properties(bench_plot PROPERTIES TIMEOUT 60 LABELS bench)
  endif()
  # Several workers per CPU each: run them one at a time.
  set_tests_properties(bench_json bench_oversubscribed PROPERTIES
    RUN_SERIAL TRUE)
endif()
