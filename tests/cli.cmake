# The command line, driven as a user would: one CTest test per group.
foreach(group basic input processes faults shm demo)
  add_test(NAME cli_${group}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh $<TARGET_FILE:tally_cli> ${group})
  set_tests_properties(cli_${group} PROPERTIES TIMEOUT 300)
endforeach()
