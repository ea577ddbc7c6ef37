/* redis: the server scripts, scripts/add.lua and scripts/init.lua, which say
 * what each takes and answers.  Embedded at build time (cmake/embed.cmake
 * writes redis_scripts.h from them, less their comment lines), so that the
 * Lua is read and edited as Lua, not as C string literals. */
#include "redis_int.h"

#ifdef TALLY_HAVE_HIREDIS
#include "redis_scripts.h"

const char *const tally__redis_add_script = add_lua;
const char *const tally__redis_init_script = init_lua;
#endif /* TALLY_HAVE_HIREDIS */
