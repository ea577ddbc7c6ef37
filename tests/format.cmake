# clang-format --dry-run -Werror over every .c and .h file in the tree, with
# the root's .clang-format (STYLE 12).  Pinned to clang-format 14, Debian's,
# which tools/install-deps --test installs: other versions format some
# constructs differently, so the check would flap between machines.  Not
# installed: the test fails and says how to get it; another version: the
# test is skipped and says which it found.
find_program(TALLY_CLANG_FORMAT NAMES clang-format-14 clang-format)
if(NOT TALLY_CLANG_FORMAT)
  set(TALLY_CLANG_FORMAT clang-format)
endif()
add_test(NAME format
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/format_check.sh ${PROJECT_SOURCE_DIR}
          ${TALLY_CLANG_FORMAT})
set_tests_properties(format PROPERTIES TIMEOUT 120 LABELS format
  SKIP_RETURN_CODE 77)

# Usage and error texts are whole literals, so that grep finds a message
# (.clang-format leaves literals alone; strings_check.sh says what a split
# one looks like).
add_test(NAME strings
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/strings_check.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(strings PROPERTIES TIMEOUT 60 LABELS format)
