# The redis backend's server scripts, embedded at build time: scripts/*.lua
# become redis_scripts.h (one C array each) in the build tree, which
# scripts.c includes.  Included by src/CMakeLists.txt, after tally_objects.
set(_redis_dir ${PROJECT_SOURCE_DIR}/backends/redis)
set(_redis_out ${CMAKE_CURRENT_BINARY_DIR}/generated/redis_scripts.h)
add_custom_command(OUTPUT ${_redis_out}
  COMMAND ${CMAKE_COMMAND} -P ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    ${_redis_out} add_lua ${_redis_dir}/scripts/add.lua
    init_lua ${_redis_dir}/scripts/init.lua
  DEPENDS ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    ${_redis_dir}/scripts/add.lua ${_redis_dir}/scripts/init.lua
  COMMENT "Embedding the redis backend's server scripts" VERBATIM)
# A target of its own rather than a source of tally_objects, so that the
# tests' copies of the library's sources (tests/percpu.cmake) need no rule
# for it: they build without hiredis, where scripts.c includes nothing.
add_custom_target(tally_redis_scripts DEPENDS ${_redis_out})
add_dependencies(tally_objects tally_redis_scripts)
target_include_directories(tally_objects PRIVATE
  ${CMAKE_CURRENT_BINARY_DIR}/generated)
