# The Python module (src/python), when it is built: its unittest suite and
# the lesson's two programs under examples/python, run by the interpreter
# it was built for, with the module's build directory on PYTHONPATH.
if(NOT TARGET tally_python)
  return()
endif()
set(_py_env "PYTHONPATH=$<TARGET_FILE_DIR:tally_python>"
  "PYTHONDONTWRITEBYTECODE=1")
# An AddressSanitizer build: the interpreter is not instrumented, so the
# runtime is preloaded (src/python/CMakeLists.txt finds it), and leak
# checking is off: CPython deliberately leaves objects allocated at exit,
# which LeakSanitizer would report as leaks that are not tally's.  The
# module and the library are still checked for every other error.
if(TALLY_PYTHON_PRELOAD)
  list(APPEND _py_env "LD_PRELOAD=${TALLY_PYTHON_PRELOAD}"
    "ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1")
endif()
add_test(NAME python_module
  COMMAND ${Python3_EXECUTABLE} -m unittest -v test_tally
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/python)
# The lesson's programs print their final count: exact on a lock, in fork
# and in spawn (by name).
set(_py_ex ${PROJECT_SOURCE_DIR}/examples/python)
add_test(NAME python_example_addsub
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/addsub.py mutex)
add_test(NAME python_example_inc
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/inc.py atomic)
add_test(NAME python_example_inc_spawn
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/inc.py mutex --spawn)
set_tests_properties(python_example_addsub PROPERTIES
  PASS_REGULAR_EXPRESSION "^500\n$")
set_tests_properties(python_example_inc python_example_inc_spawn PROPERTIES
  PASS_REGULAR_EXPRESSION "^3000000\n$")
set_tests_properties(python_module python_example_addsub python_example_inc
  python_example_inc_spawn PROPERTIES LABELS python TIMEOUT 300
  ENVIRONMENT "${_py_env}")
# The suite's held-lock tests run tests/shm_holder.c (tests/cli.cmake builds
# it) to hold a named counter's lock from another program, and kill it there.
if(TARGET shm_holder)
  set_tests_properties(python_module PROPERTIES ENVIRONMENT
    "${_py_env};TALLY_SHM_HOLDER=$<TARGET_FILE:shm_holder>")
endif()
# Named counters live in /dev/shm, like the shm CLI group's.
set_tests_properties(python_module python_example_inc_spawn PROPERTIES
  RESOURCE_LOCK dev_shm)
# A ThreadSanitizer runtime cannot be preloaded into the interpreter for
# tests that fork and spawn: such a build lists them, disabled, with why.
if("thread" IN_LIST TALLY_PYTHON_SANITIZER)
  message(STATUS "Python tests: disabled in a ThreadSanitizer build (its "
    "runtime cannot be loaded into an uninstrumented python3)")
  set_tests_properties(python_module python_example_addsub python_example_inc
    python_example_inc_spawn PROPERTIES DISABLED TRUE)
endif()
