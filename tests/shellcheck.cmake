# shellcheck over every shell script in the tree (tests/shell_check.sh
# finds them: *.sh and files that start #!...sh), at its default severity:
# any finding fails.  tools/install-deps --test installs Debian's
# shellcheck; without one the test is skipped and says how to get it.
find_program(TALLY_SHELLCHECK NAMES shellcheck)
if(NOT TALLY_SHELLCHECK)
  set(TALLY_SHELLCHECK shellcheck)
endif()
add_test(NAME shellcheck
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/shell_check.sh ${PROJECT_SOURCE_DIR}
          ${TALLY_SHELLCHECK})
set_tests_properties(shellcheck PROPERTIES TIMEOUT 120 LABELS format
  SKIP_RETURN_CODE 77)
