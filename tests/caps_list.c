/* caps_list: what the capability X-macro in tally.h says, for
 * tests/docs_caps.cmake to hold `tally list` and the docs to.  Prints
 * "cap NAME name" for every entry of TALLY_CAPS_MAP, then "backend NAME caps"
 * for every backend, its caps spelled as `tally list --format csv` should. */
#include "tally.h"

#include <stdio.h>

static const struct {
	unsigned bit;
	const char *upper, *name;
} caps[] = {
#define CAP_ENTRY(name, bit, str, meaning) {TALLY_CAP_##name, #name, str},
	TALLY_CAPS_MAP(CAP_ENTRY)
#undef CAP_ENTRY
};

#define N_CAPS (sizeof(caps) / sizeof(caps[0]))

int main(void)
{
	unsigned all = 0;

	for (size_t i = 0; i < N_CAPS; i++) {
		printf("cap %s %s\n", caps[i].upper, caps[i].name);
		all |= caps[i].bit;
	}
	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info b;

		tally_backend_at(i, &b);
		/* A bit outside the list would vanish from every listing. */
		if (b.caps & ~all) {
			fprintf(stderr,
				"caps_list: %s has bits 0x%x that are not in TALLY_CAPS_MAP\n",
				b.name, b.caps & ~all);
			return 1;
		}
		printf("backend %s ", b.name);
		for (size_t c = 0, n = 0; c < N_CAPS; c++)
			if (b.caps & caps[c].bit)
				printf("%s%s", n++ ? " " : "", caps[c].name);
		printf("\n");
	}
	return 0;
}
