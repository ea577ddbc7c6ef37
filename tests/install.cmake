# Installing tally and embedding it from outside: `cmake --install` into a
# temporary prefix, moved elsewhere, then the examples built through
# pkg-config and find_package (shared and static) and run on every backend.
# The build's own C flags go along, so that a sanitizer build's consumers are
# instrumented like the library they link.
# With the Python module built, its installed copy is imported and the
# lesson's programs run on it, from the moved prefix too.
set(_inst_python "")
set(_inst_pydir "")
if(TARGET tally_python AND NOT "thread" IN_LIST TALLY_PYTHON_SANITIZER)
  set(_inst_python ${Python3_EXECUTABLE})
  set(_inst_pydir ${TALLY_PYTHON_INSTALL_DIR})
endif()
# It runs what it installed as a user would, so not in a cross build whose
# programs need an emulator (the unit and CLI tests run them through it).
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  add_test(NAME install_outside
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/install_outside.sh
      ${CMAKE_BINARY_DIR} ${PROJECT_SOURCE_DIR}/examples ${CMAKE_COMMAND}
      ${CMAKE_C_COMPILER} "${CMAKE_C_FLAGS}" "${_inst_python}" "${_inst_pydir}")
  set_tests_properties(install_outside PROPERTIES LABELS "install;embed"
    TIMEOUT 300)
endif()
# A sanitizer build's Python module needs its runtime preloaded into
# python3 (only there: see tests/python.cmake).
if(TALLY_PYTHON_PRELOAD AND NOT CMAKE_CROSSCOMPILING_EMULATOR)
  set_property(TEST install_outside APPEND PROPERTY ENVIRONMENT
    "TALLY_TEST_PY_PRELOAD=${TALLY_PYTHON_PRELOAD}")
endif()


# The man pages render without a single groff warning.
find_program(TALLY_GROFF groff)
if(TALLY_GROFF)
  foreach(page ${PROJECT_SOURCE_DIR}/src/tally.3 ${PROJECT_SOURCE_DIR}/tools/tally.1)
    get_filename_component(_name ${page} NAME)
    add_test(NAME install_man_${_name}
      COMMAND ${TALLY_GROFF} -man -Tutf8 -ww -z ${page})
    set_tests_properties(install_man_${_name} PROPERTIES LABELS install
      FAIL_REGULAR_EXPRESSION "warning|error")
  endforeach()
endif()

# Only tally_* leaves libtally.so (the install test checks the installed
# copy too; this one needs no install).
find_program(TALLY_NM nm)
if(TALLY_NM)
  add_test(NAME install_exports COMMAND sh -c
    "bad=$(\"$0\" -D --defined-only \"$1\" | awk '{print $3}' | grep -v '^tally_'); [ -z \"$bad\" ] || { echo \"exported, not tally_*: $bad\"; exit 1; }"
    ${TALLY_NM} $<TARGET_FILE:tally>)
  set_tests_properties(install_exports PROPERTIES LABELS install)
endif()
