/* libFuzzer: the command line's strict parsers (numbers, seconds, formats,
 * comma lists) and the escaping of names found in /dev/shm.  Each parser
 * either accepts a value within its bounds or refuses and leaves its output
 * untouched. */
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *items[8];
	char esc[4 * 64 + 1];
	uint64_t u = 7;
	int64_t i = 7;
	double d = 7;
	enum cli_format f = FORMAT_TABLE;
	unsigned n;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (cli_parse_u64("fuzz", "u", s, 3, 1000, &u) == 0 ? u < 3 || u > 1000
							    : u != 7)
		abort();
	if (cli_parse_i64("fuzz", "i", s, -5, 5, &i) == 0 ? i < -5 || i > 5
							  : i != 7)
		abort();
	if (cli_parse_i64("fuzz", "i", s, INT64_MIN, INT64_MAX, &i) != 0 &&
	    i != 7 && (i < -5 || i > 5))
		abort();
	if (cli_parse_seconds("fuzz", "d", s, 0.1, 3600, &d) == 0
		    ? !(d >= 0.1 && d <= 3600)
		    : d != 7)
		abort();
	if (cli_parse_format("fuzz", s, &f) != 0 && f != FORMAT_TABLE)
		abort();
	if (cli_split_list("fuzz", "list", s, items, 8, &n) == 0) {
		if (n < 1 || n > 8)
			abort();
		for (unsigned k = 0; k < n; k++)
			if (items[k][0] == '\0' || strchr(items[k], ','))
				abort();
	}
	memcpy(s, data, size); /* split wrote NULs into it */
	s[size] = '\0';
	if (strlen(s) < 64) {
		cli_escape(esc, sizeof(esc), s);
		for (const char *p = esc; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				abort();
	}
	free(s);
	return 0;
}
