# Cross-compiling tally for IBM Z (s390x, big-endian) with Debian's cross
# compiler
# (gcc-s390x-linux-gnu, libc6-dev-s390x-cross), which installs beside the
# host compilers.  Tests run under qemu-user (qemu-s390x), which CMake puts
# in front of every test command that names one of its targets; tests that
# start programs by path read TALLY_TEST_EMULATOR (tests/CMakeLists.txt).
# cmocka comes from Debian's multiarch s390x package (libcmocka-dev:s390x),
# which co-installs with the host's (hiredis is not needed: without it the
# redis backend is not built); Concurrency Kit's does not (libck-dev:s390x
# removes the host's libck-dev), so this build goes without it
# (-DTALLY_WITH_CK=OFF in the s390x preset).  Not in tools/install-deps
# (the s390x suite is run by hand):
#   dpkg --add-architecture s390x && apt-get update &&
#   apt-get install gcc-s390x-linux-gnu libc6-dev-s390x-cross qemu-user \
#     libc6:s390x libcmocka-dev:s390x
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR s390x)
set(CMAKE_C_COMPILER s390x-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE s390x-linux-gnu)
# By its full path: some tests run programs with a PATH of their own.
find_program(TALLY_QEMU_S390X qemu-s390x REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${TALLY_QEMU_S390X})

# Only s390x libraries: the cross sysroot and Debian's multiarch directory.
# Never the host's x86-64 .pc files, whose libraries would not link.
set(CMAKE_FIND_ROOT_PATH /usr/s390x-linux-gnu)
set(ENV{PKG_CONFIG_LIBDIR}
  "/usr/lib/s390x-linux-gnu/pkgconfig:/usr/s390x-linux-gnu/lib/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
