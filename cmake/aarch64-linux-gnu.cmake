# Cross-compiling tally for 64-bit Arm (aarch64) with Debian's cross compiler
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross), which installs beside the
# host compilers.  Tests run under qemu-user (qemu-aarch64), which CMake puts
# in front of every test command that names one of its targets; tests that
# start programs by path read TALLY_TEST_EMULATOR (tests/CMakeLists.txt).
# Libraries come from Debian's multiarch arm64 packages (libcmocka-dev:arm64,
# libhiredis-dev:arm64), which co-install with the host's; Concurrency Kit's
# do not (libck-dev:arm64 removes the host's libck-dev), so this build goes
# without it (-DTALLY_WITH_CK=OFF in the aarch64 preset).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# By its full path: some tests run programs with a PATH of their own.
find_program(TALLY_QEMU_AARCH64 qemu-aarch64 REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${TALLY_QEMU_AARCH64})

# Only arm64 libraries: the cross sysroot and Debian's multiarch directory.
# Never the host's x86-64 .pc files, whose libraries would not link.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(ENV{PKG_CONFIG_LIBDIR}
  "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/aarch64-linux-gnu/lib/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
