# The Python package (src/python), when it is built: its pytest suite
# (tests/python, Debian: python3-pytest), the lesson's programs and the job
# counter under examples/python, mypy --strict over them (python3-mypy), and
# `pip install .` and `python3 -m build` from the source tree
# (tests/python/package_check.sh), all run by the interpreter the package was
# built for, with the build tree's package on PYTHONPATH.
if(NOT TARGET tally_python)
  return()
endif()
set(_py_env "PYTHONPATH=${TALLY_PYTHON_PATH}" "PYTHONDONTWRITEBYTECODE=1")
# An AddressSanitizer build: the interpreter is not instrumented, so the
# runtime is preloaded (src/python/CMakeLists.txt finds it), and leak
# checking is off: CPython deliberately leaves objects allocated at exit,
# which LeakSanitizer would report as leaks that are not tally's.  The
# module and the library are still checked for every other error.
if(TALLY_PYTHON_PRELOAD)
  list(APPEND _py_env "LD_PRELOAD=${TALLY_PYTHON_PRELOAD}"
    "ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1")
endif()
# The suite's held-lock tests run tests/shm_holder.c (tests/cli.cmake builds
# it) to hold a named counter's lock from another program, and kill it there.
set(_py_suite_env ${_py_env})
if(TARGET shm_holder)
  list(APPEND _py_suite_env "TALLY_SHM_HOLDER=${TALLY_TEST_SHM_HOLDER}")
endif()
set(_pytest ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider)
add_test(NAME python_module COMMAND ${_pytest}
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/python)
set_tests_properties(python_module PROPERTIES ENVIRONMENT "${_py_suite_env}")

# The must-fail run: the same module built to drop every 1000th add
# (TALLY_PY_BUSTED_ADD in src/python/tallymodule.c), under the exact-count
# tests of every start method's first pattern; it passes only if they say
# what was lost.
Python3_add_library(tally_python_busted MODULE WITH_SOABI
  ${PROJECT_SOURCE_DIR}/src/python/tallymodule.c)
set_target_properties(tally_python_busted PROPERTIES OUTPUT_NAME _tally
  C_VISIBILITY_PRESET hidden
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/busted/tally)
target_compile_definitions(tally_python_busted PRIVATE TALLY_PY_BUSTED_ADD=1)
target_link_libraries(tally_python_busted PRIVATE tally_static tally_flags
  "-Wl,--exclude-libs,ALL")
foreach(f ${TALLY_PYTHON_FILES})
  configure_file(${PROJECT_SOURCE_DIR}/src/python/tally/${f}
    ${CMAKE_CURRENT_BINARY_DIR}/busted/tally/${f} COPYONLY)
endforeach()
set(_py_busted_env ${_py_env})
list(TRANSFORM _py_busted_env REPLACE "^PYTHONPATH=.*"
  "PYTHONPATH=${CMAKE_CURRENT_BINARY_DIR}/busted")
add_test(NAME python_busted_add COMMAND ${_pytest} test_start_methods.py
  -k processes WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/python)
set_tests_properties(python_busted_add PROPERTIES
  ENVIRONMENT "${_py_busted_env}"
  PASS_REGULAR_EXPRESSION "counted [0-9]+, expected [0-9]+ \\(lost [0-9]+\\)")

# The lesson's programs print their final count: exact on a lock, under
# each start method; the job counter counts every job of a pool.
set(_py_ex ${PROJECT_SOURCE_DIR}/examples/python)
add_test(NAME python_example_addsub
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/addsub.py mutex)
add_test(NAME python_example_inc
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/inc.py atomic)
add_test(NAME python_example_inc_spawn
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/inc.py mutex --spawn)
# A spinning lock that can be named (forkserver pickles the counter by its
# name): spin, where Concurrency Kit was found; else adaptive, which spins
# first.
if(CK_FOUND)
  set(_py_spinner spin)
else()
  set(_py_spinner adaptive)
endif()
add_test(NAME python_example_inc_forkserver
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/inc.py ${_py_spinner} --start forkserver)
add_test(NAME python_example_jobs
  COMMAND ${Python3_EXECUTABLE} ${_py_ex}/jobs.py forkserver)
set_tests_properties(python_example_addsub PROPERTIES
  PASS_REGULAR_EXPRESSION "^500\n$")
set_tests_properties(python_example_inc python_example_inc_spawn
  python_example_inc_forkserver PROPERTIES
  PASS_REGULAR_EXPRESSION "^3000000\n$")
set_tests_properties(python_example_jobs PROPERTIES
  PASS_REGULAR_EXPRESSION "^100 of 100 jobs done\n$")
set(_py_examples python_example_addsub python_example_inc
  python_example_inc_spawn python_example_inc_forkserver python_example_jobs)
set_tests_properties(${_py_examples} PROPERTIES ENVIRONMENT "${_py_env}")

# The examples and the package, as a user's type checker sees them.
add_test(NAME python_mypy COMMAND ${Python3_EXECUTABLE} -m mypy --strict
  --cache-dir ${CMAKE_CURRENT_BINARY_DIR}/mypy-cache
  ${_py_ex}/addsub.py ${_py_ex}/inc.py ${_py_ex}/jobs.py
  ${PROJECT_SOURCE_DIR}/src/python/tally)
set_tests_properties(python_mypy PROPERTIES
  ENVIRONMENT "MYPYPATH=${PROJECT_SOURCE_DIR}/src/python")

# pip install . and python3 -m build, into a scratch directory of the build.
add_test(NAME python_package
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/python/package_check.sh
    ${PROJECT_SOURCE_DIR} ${Python3_EXECUTABLE}
    ${CMAKE_CURRENT_BINARY_DIR}/python-package)

set(_py_tests python_module python_busted_add ${_py_examples} python_mypy
  python_package)
set_tests_properties(${_py_tests} PROPERTIES LABELS python TIMEOUT 300)
# Two builds of the library in it (pip's, and the wheel from the sdist):
# labelled apart, so that `ctest -L python` stays quick.
set_tests_properties(python_package PROPERTIES LABELS package)
# Named counters (shared=True ones too) live in /dev/shm, like the shm CLI
# group's.
set_tests_properties(python_module python_busted_add ${_py_examples}
  PROPERTIES RESOURCE_LOCK dev_shm)
# A ThreadSanitizer runtime cannot be preloaded into the interpreter for
# tests that fork and spawn: such a build lists them, disabled, with why.
# The package check builds its own (plain) copy: a sanitizer build skips it.
if("thread" IN_LIST TALLY_PYTHON_SANITIZER)
  message(STATUS "Python tests: disabled in a ThreadSanitizer build (its "
    "runtime cannot be loaded into an uninstrumented python3)")
  set_tests_properties(${_py_tests} PROPERTIES DISABLED TRUE)
elseif(TALLY_PYTHON_SANITIZER)
  set_tests_properties(python_package PROPERTIES DISABLED TRUE)
endif()
