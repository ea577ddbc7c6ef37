# Installing tally and embedding it from outside: `cmake --install` into a
# temporary prefix, moved elsewhere, then the examples built through
# pkg-config and find_package (shared and static) and run on every backend.
# The build's own C flags go along, so that a sanitizer build's consumers are
# instrumented like the library they link.
add_test(NAME install_outside
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/install_outside.sh
    ${CMAKE_BINARY_DIR} ${PROJECT_SOURCE_DIR}/examples ${CMAKE_COMMAND}
    ${CMAKE_C_COMPILER} "${CMAKE_C_FLAGS}")
set_tests_properties(install_outside PROPERTIES LABELS "install;embed"
  TIMEOUT 300)
