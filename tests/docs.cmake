# The docs agree with the command on options: `tally CMD --help`, tally(1)
# and every `tally ...` line in the READMEs (docs_check.py says exactly
# what); both man pages render without a warning where man(1) is installed.
find_program(TALLY_PYTHON3 python3)
if(TALLY_PYTHON3)
  add_test(NAME docs
    COMMAND ${TALLY_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/docs_check.py
            ${TALLY_TEST_CLI} ${PROJECT_SOURCE_DIR})
  set_tests_properties(docs PROPERTIES TIMEOUT 60 LABELS docs)
endif()

# .ci/run is the README's second command, word for word.
add_test(NAME docs_ci_command
  COMMAND ${CMAKE_COMMAND} -DSOURCE=${PROJECT_SOURCE_DIR}
    -P ${CMAKE_CURRENT_SOURCE_DIR}/ci_command.cmake)
set_tests_properties(docs_ci_command PROPERTIES TIMEOUT 30 LABELS docs)
