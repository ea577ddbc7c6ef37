/* redis: the counter lives in a Redis server, so processes on different
 * machines share it -- the lesson's Manager.  This file: its options, and
 * what the backend promises; backends/redis/redis.c has the ops object. */
#include "redis_int.h"

#ifdef TALLY_HAVE_HIREDIS
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Options, after "redis:", comma-separated:
 *   url=redis://[[USER][:PASSWORD]@]HOST[:PORT][/DB]
 *                                  default redis://127.0.0.1:6379/0; with
 *                                  a password, each connection sends AUTH
 *                                  (AUTH USER PASSWORD for an ACL user);
 *                                  %XX in USER and PASSWORD is a byte
 *                                  (%2C a comma).  No message shows the
 *                                  password (tally_backend_redact()).
 *   key=NAME                       default "tally"
 *   timeout_ms=N                   connect and reply timeout of one
 *                                  attempt, default 2000
 *   deadline_ms=N                  how long an add keeps retrying a lost
 *                                  reply before it answers TALLY_EUNKNOWN,
 *                                  default 10000 (at least timeout_ms)
 *   connections=N                  per process, 1 to 64, default
 *                                  DEFAULT_CONNECTIONS: threads take them
 *                                  in turn
 *   keep                           join an existing counter: set it to the
 *                                  initial value only if the key is absent
 *   reset                          overwrite the key even when it holds
 *                                  something other than an integer
 * Without `keep`, creating the counter sets the key to the initial value, as
 * every backend starts from it -- but never over a key of another type or a
 * non-integer string, unless `reset` says so.
 *
 * Exactly once.  Each process talks to the server through its own clients
 * (one per connection and counter), each with a random 128-bit id and a
 * sequence number that grows by one per request.  A request runs ADD_SCRIPT,
 * which applies the delta and records "SEQ VALUE" under KEY.tally-id.ID
 * (expiring after RECORD_TTL_MS) in one atomic step, unless that record already
 * held SEQ or later: then nothing changes, and it answers the recorded value.
 * A request whose reply is lost (timeout, reset connection, restarted server)
 * is sent again with the same SEQ until deadline_ms has passed since it was
 * first sent, so it is applied once; past the deadline the add answers
 * TALLY_EUNKNOWN (applied at most once, maybe not at all).  An add that never
 * reached the server (it was unreachable) answers TALLY_EREMOTE: not applied.
 * What a server loses by itself (a restart without appendonly/appendfsync
 * always) is lost.
 *
 * Combining.  While the client's request is in flight, adds from other
 * threads of the process queue up; the next request carries their sum, and
 * each add returns once the request that carried it was applied.  A client
 * is one connection; a process has `connections` clients per counter, each
 * with its own id, and its threads take them in turn.
 *
 * The state holds only this configuration (struct redis_state, in
 * redis_int.h), so it can sit in shared memory; each process makes its own
 * client (a hiredis context is neither thread-safe nor shareable across
 * fork) on first use.
 *
 * Where each part lives: this file parses the options; conn.c keeps each
 * process's clients and talks to the server (connect, retry until the
 * deadline); once.c is the exactly-once protocol, over the server scripts in
 * scripts/ (embedded at build time by cmake/embed.cmake, see scripts.c);
 * combine.c joins concurrent adds into one request; redis.c is the ops
 * object and the counter's lifecycle.
 */

/* A URL's user or password, %XX decoded (so that one may hold a comma,
 * which would end the option): 0, or TALLY_EOPTION when it does not fit or
 * a % is not followed by two hex digits. */
static int decode(char *out, size_t size, const char *in)
{
	size_t n = 0;

	for (; *in != '\0'; in++) {
		int c = (unsigned char)*in;
		if (c == '%') {
			if (!isxdigit((unsigned char)in[1]) ||
			    !isxdigit((unsigned char)in[2]))
				return TALLY_EOPTION;
			char hex[3] = {in[1], in[2], '\0'};
			c = (int)strtol(hex, NULL, 16);
			if (c == 0)
				return TALLY_EOPTION;
			in += 2;
		}
		if (n + 1 >= size)
			return TALLY_EOPTION;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* redis://[[USER][:PASSWORD]@]HOST[:PORT][/DB].  What comes before the last
 * '@' is USER:PASSWORD (split at its first ':'), so a password may hold
 * ':', '/' and '@' as they are. */
static int parse_url(struct redis_state *s, const char *url, size_t len)
{
	char buf[600], *host, *colon, *slash, *end, *at;

	if (len >= sizeof(buf) || len < 8 || strncmp(url, "redis://", 8) != 0)
		return TALLY_EOPTION;
	memcpy(buf, url + 8, len - 8);
	buf[len - 8] = '\0';
	host = buf;
	at = strrchr(buf, '@');
	if (at != NULL) {
		*at = '\0';
		host = at + 1;
		colon = strchr(buf, ':');
		if (colon != NULL)
			*colon = '\0';
		if (decode(s->user, sizeof(s->user), buf) != 0 ||
		    (colon != NULL &&
		     decode(s->password, sizeof(s->password), colon + 1) != 0))
			return TALLY_EOPTION;
	}
	slash = strchr(host, '/');
	if (slash != NULL) {
		*slash = '\0';
		errno = 0;
		long db = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno || db < 0 ||
		    db > 65535)
			return TALLY_EOPTION;
		s->db = (int)db;
	}
	colon = strrchr(host, ':');
	if (colon != NULL) {
		*colon = '\0';
		errno = 0;
		long port = strtol(colon + 1, &end, 10);
		if (colon[1] == '\0' || *end != '\0' || errno || port < 1 ||
		    port > 65535)
			return TALLY_EOPTION;
		s->port = (int)port;
	}
	size_t n = strlen(host);
	if (n == 0 || n >= sizeof(s->host))
		return TALLY_EOPTION;
	memcpy(s->host, host, n + 1);
	return 0;
}

/* A number option: 1 to 9999999. */
static int parse_ms(const char *v, size_t vlen, int *out)
{
	if (v == NULL || vlen == 0 || vlen > 7 ||
	    strspn(v, "0123456789") < vlen)
		return TALLY_EOPTION;
	*out = atoi(v);
	return *out > 0 ? 0 : TALLY_EOPTION;
}

static int is(const char *opt, size_t klen, const char *name)
{
	return klen == strlen(name) && strncmp(opt, name, klen) == 0;
}

/* `keep` joins a key and `reset` overwrites it: one or the other.  (The core
 * has refused either one given twice.) */
static int set_mode(const char **mode, const char *word)
{
	if (strcmp(*mode, "set") != 0) {
		tally__explain_set(
			TALLY_EOPTION,
			"invalid backend option: keep and reset contradict each other (keep joins the key's value, reset overwrites it)");
		return TALLY_EOPTION;
	}
	*mode = word;
	return 0;
}

/* Parse "k=v,k=v,flag" into s; *mode set by `keep` and `reset`. */
static int parse_options(struct redis_state *s, const char *opt,
			 const char **mode)
{
	while (opt != NULL && *opt != '\0') {
		size_t len = strcspn(opt, ",");
		const char *eq = memchr(opt, '=', len);
		size_t klen = eq ? (size_t)(eq - opt) : len;
		const char *v = eq ? eq + 1 : NULL;
		size_t vlen = eq ? len - klen - 1 : 0;
		int rc = 0;

		if (is(opt, klen, "url") && v)
			rc = parse_url(s, v, vlen);
		else if (is(opt, klen, "key") && v && vlen > 0 &&
			 vlen < sizeof(s->key) - 64)
			snprintf(s->key, sizeof(s->key), "%.*s", (int)vlen, v);
		else if (is(opt, klen, "timeout_ms"))
			rc = parse_ms(v, vlen, &s->timeout_ms);
		else if (is(opt, klen, "deadline_ms"))
			rc = parse_ms(v, vlen, &s->deadline_ms);
		else if (is(opt, klen, "connections"))
			rc = parse_ms(v, vlen, &s->connections) == 0 &&
					     s->connections <= 64
				     ? 0
				     : TALLY_EOPTION;
		else if (len == 4 && strncmp(opt, "keep", 4) == 0)
			rc = set_mode(mode, "keep");
		else if (len == 5 && strncmp(opt, "reset", 5) == 0)
			rc = set_mode(mode, "reset");
		else
			rc = TALLY_EOPTION;
		if (rc != 0)
			return TALLY_EOPTION;
		opt += len;
		if (*opt == ',')
			opt++;
	}
	if (s->deadline_ms < s->timeout_ms)
		s->deadline_ms = s->timeout_ms;
	return 0;
}

int tally__redis_parse(struct redis_state *s, const char *options,
		       const char **mode)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->host, sizeof(s->host), "127.0.0.1");
	snprintf(s->key, sizeof(s->key), "tally");
	s->port = 6379;
	s->timeout_ms = 2000;
	s->deadline_ms = 10000;
	s->connections = DEFAULT_CONNECTIONS;
	return parse_options(s, options, mode);
}

#endif /* TALLY_HAVE_HIREDIS */
