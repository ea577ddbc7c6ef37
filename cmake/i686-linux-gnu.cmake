# Cross-compiling tally for 32-bit x86 (i686) with Debian's cross compiler
# (gcc-i686-linux-gnu, libc6-dev-i386-cross), which installs beside the host
# compilers; gcc-multilib would remove them.  The binaries run natively on an
# x86-64 kernel (libc6-i386 provides /lib/ld-linux.so.2), so ctest runs them.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(CMAKE_C_COMPILER i686-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE i386-linux-gnu)

# Only i386 libraries: the cross sysroot, and Debian's multiarch directory
# (/usr/lib/i386-linux-gnu, from packages such as libcmocka-dev:i386) under
# /.  Never the host's x86-64 .pc files, whose libraries would not link.
set(CMAKE_FIND_ROOT_PATH /usr/i686-linux-gnu /)
set(ENV{PKG_CONFIG_LIBDIR}
  "/usr/lib/i386-linux-gnu/pkgconfig:/usr/i686-linux-gnu/lib/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
