# cmake -DCAPS_LIST=... -DTALLY=... -DSOURCE=... -P docs_caps.cmake
#
# The capabilities are spelled once, in TALLY_CAPS_MAP (include/tally.h); this
# holds everything else to it (STYLE 16), so that a capability added there
# and forgotten elsewhere fails here:
#   - `tally list --format csv` names each backend's bits as the list does;
#   - tally(1) has a .TP entry for every name, in its list of capabilities;
#   - tally(3) has a .TP entry for every TALLY_CAP_NAME;
#   - README.md names every capability (`name`); the bits are tally(3)'s.
# Every failure is collected and reported at once.
set(failures "")
macro(fail what)
  string(APPEND failures "\n  ${what}")
endmacro()

execute_process(COMMAND ${CAPS_LIST} OUTPUT_VARIABLE spec RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "caps_list failed (${rc})")
endif()
string(REGEX MATCHALL "cap [A-Z_0-9]+ [a-z0-9-]+" cap_lines "${spec}")
list(LENGTH cap_lines n_caps)
if(n_caps LESS 1)
  message(FATAL_ERROR "caps_list named no capabilities:\n${spec}")
endif()

# tally list --format csv: backend,built,caps (space-separated),summary.
execute_process(COMMAND ${TALLY} list --format csv OUTPUT_VARIABLE csv
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "tally list --format csv failed (${rc})")
endif()
string(REGEX MATCHALL "backend [^\n]*" backend_lines "${spec}")
foreach(line IN LISTS backend_lines)
  string(REGEX REPLACE "^backend ([^ ]+) ?(.*)$" "\\1" name "${line}")
  string(REGEX REPLACE "^backend ([^ ]+) ?(.*)$" "\\2" want "${line}")
  if(NOT csv MATCHES "\n${name},[a-z]+,([^,\n]*),")
    fail("tally list --format csv has no row for backend '${name}'")
  elseif(NOT CMAKE_MATCH_1 STREQUAL want)
    fail("tally list --format csv: ${name} has '${CMAKE_MATCH_1}', TALLY_CAPS_MAP says '${want}'")
  endif()
endforeach()

# tally(1): the .TP entries between "its capabilities:" and the next section.
file(READ ${SOURCE}/tools/tally.1 man1)
if(NOT man1 MATCHES "its capabilities:\n(.*)")
  message(FATAL_ERROR "tools/tally.1: no list of capabilities ('its capabilities:')")
endif()
string(REGEX REPLACE "\n\\.(SH|SS|PP)[ \n].*" "" man1 "\n${CMAKE_MATCH_1}")
file(READ ${SOURCE}/src/tally.3 man3)
file(READ ${SOURCE}/README.md readme)

foreach(line IN LISTS cap_lines)
  string(REGEX REPLACE "^cap ([^ ]+) (.*)$" "\\1" upper "${line}")
  string(REGEX REPLACE "^cap ([^ ]+) (.*)$" "\\2" name "${line}")
  # Roff writes a hyphen as \-, and a .TP entry is .B name or .BR a ", " b.
  string(REPLACE "-" "\\\\-" roff "${name}")
  if(NOT man1 MATCHES "\n\\.TP\n\\.BR?( [^\n]*)? \"?${roff}\"?( [^\n]*)?\n")
    fail("tools/tally.1 lists no capability '${name}' (.TP, then .B ${name})")
  endif()
  if(NOT man3 MATCHES "\n\\.TP\n\\.BR?( [^\n]*)? \"?TALLY_CAP_${upper}\"?( [^\n]*)?\n")
    fail("src/tally.3 lists no TALLY_CAP_${upper} (.TP, then .B TALLY_CAP_${upper})")
  endif()
  string(FIND "${readme}" "`${name}`" at)
  if(at LESS 0)
    fail("README.md never names capability `${name}`")
  endif()
endforeach()

if(failures)
  message(FATAL_ERROR "capabilities drifted from TALLY_CAPS_MAP:${failures}")
endif()
message(STATUS "${n_caps} capabilities: list, tally(1), tally(3) and README agree")
