# Cross-compiling tally for IBM Z (s390x), big-endian, with Debian's cross compiler
# (gcc-s390x-linux-gnu, libc6-dev-s390x-cross), which installs beside the
# host compilers.  Tests run under qemu-user (qemu-s390x), which CMake puts
# in front of every test command that names one of its targets; tests that
# start programs by path read TALLY_TEST_EMULATOR (tests/CMakeLists.txt).
# Libraries come from Debian's multiarch arm64 packages (libcmocka-dev:s390x);
# they co-install with the host's; Concurrency Kit's
# do not (libck-dev:s390x removes the host's libck-dev), so this build goes
# without it (-DTALLY_WITH_CK=OFF in the s390x preset).
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
