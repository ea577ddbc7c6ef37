# .ci/run runs exactly the README's second command (the one that installs,
# builds and runs every test): the last line of .ci/run is the README's one
# line that starts "tools/install-deps --test".
# cmake -DSOURCE=... -P ci_command.cmake
file(STRINGS ${SOURCE}/README.md second REGEX "^tools/install-deps --test ")
file(STRINGS ${SOURCE}/.ci/run lines)
list(GET lines -1 ci)
list(LENGTH second n)
if(NOT n EQUAL 1 OR NOT second STREQUAL ci)
  message(FATAL_ERROR ".ci/run does not run the README's second command:\n"
    "  README (${n} such lines): ${second}\n  .ci/run: ${ci}")
endif()
