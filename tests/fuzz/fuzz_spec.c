/* libFuzzer: a backend spec, "NAME[:OPTIONS]", through every backend's
 * option parser.  tally_backend_check() never contacts a server, so the
 * redis parser is fuzzed too; where it says yes, a counter that needs no
 * server is created, used and destroyed as tally_create() would make it. */
#include "tally.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *spec = malloc(size + 1);
	tally_backend_info info;
	tally *t;

	if (spec == NULL)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0'; /* a NUL inside ends the spec early: also fine */
	for (unsigned flags = 0; flags <= TALLY_PSHARED; flags++) {
		int rc = tally_backend_check(spec, flags);
		if (rc > 0 || tally_strerror(rc) == NULL ||
		    tally_explain(rc) == NULL)
			abort();
		if (rc != 0)
			continue;
		/* The name is valid: remote backends stop here (no server). */
		size_t len = strcspn(spec, ":");
		char name[64];
		if (len >= sizeof(name))
			abort(); /* check accepted an impossible name */
		memcpy(name, spec, len);
		name[len] = '\0';
		if (tally_backend_find(name, &info) != 0)
			abort();
		if (info.caps & TALLY_CAP_REMOTE)
			continue;
		rc = tally_create(&t, spec, 41, flags);
		if (rc != 0)
			abort(); /* check said yes, create must agree */
		/* The racy backend's window option makes an add as slow as
		 * a second: only its parser is fuzzed. */
		int64_t v;
		if (!(info.caps & TALLY_CAP_RACY) &&
		    (tally_add(t, 1) < 0 || tally_get(t, &v) != 0 || v != 42))
			abort();
		tally_destroy(t);
	}
	free(spec);
	return 0;
}
