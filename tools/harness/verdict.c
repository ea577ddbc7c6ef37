/* The harness's verdicts (verdict.h). */
#include "verdict.h"

const char *harness_verdict_name(enum harness_verdict v)
{
	static const char *const names[] = {[HARNESS_EXACT] = "exact",
					    [HARNESS_LOST] = "lost",
					    [HARNESS_OVERLAP] = "overlap",
					    [HARNESS_FAULT] = "fault",
					    [HARNESS_ERROR] = "error"};

	return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

enum harness_verdict harness_say(char *reason, enum harness_verdict v,
				 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, HARNESS_REASON_SIZE, fmt, ap);
	va_end(ap);
	return v;
}
