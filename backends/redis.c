/* redis: the counter lives in a Redis server (INCRBY through hiredis), so
 * processes on different machines share it -- the lesson's Manager. */
#include "backend.h"

#ifdef TALLY_HAVE_HIREDIS
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/*
 * Options, after "redis:", comma-separated:
 *   url=redis://HOST[:PORT][/DB]   default redis://127.0.0.1:6379/0
 *   key=NAME                       default "tally"
 *   timeout_ms=N                   connect and command timeout, default 2000
 *   keep                           join an existing counter: set it to the
 *                                  initial value only if the key is absent
 * Without `keep`, creating the counter sets the key to the initial value, as
 * every backend starts from it.
 *
 * The state holds only this configuration, so it can sit in shared memory.
 * Connections are per thread and per process (a hiredis context is neither
 * thread-safe nor shareable across fork), made on first use.
 */
struct redis_state {
	char host[256];
	char key[256];
	int port, db, timeout_ms;
	uint64_t id; /* tells this counter from an earlier one at its address */
};

/* This thread's connection, for the counter it last used. */
static _Thread_local struct {
	uint64_t id;
	pid_t pid;
	redisContext *c;
} conn;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static _Atomic uint64_t next_id = 1;

/* A thread that ends closes its connection (if made in this process). */
static void close_at_exit(void *unused)
{
	(void)unused;
	if (conn.c != NULL && conn.pid == getpid())
		redisFree(conn.c);
	conn.c = NULL;
}

static void make_key(void)
{
	pthread_key_create(&exit_key, close_at_exit);
}

static void drop_connection(void)
{
	/* A context inherited through fork is the parent's: free only the
	 * memory, which redisFree would do after closing the parent's socket
	 * in this process -- harmless, since the parent keeps its own fd. */
	if (conn.c != NULL)
		redisFree(conn.c);
	conn.c = NULL;
	conn.id = 0;
}

static redisContext *connection(const struct redis_state *s)
{
	pid_t pid = getpid();

	if (conn.c != NULL && conn.id == s->id && conn.pid == pid)
		return conn.c;
	drop_connection();
	pthread_once(&key_once, make_key);
	pthread_setspecific(exit_key, &conn); /* non-NULL: run at exit */

	struct timeval tv = {.tv_sec = s->timeout_ms / 1000,
			     .tv_usec = (s->timeout_ms % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
	if (c == NULL || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	if (s->db != 0) {
		char db[16];
		snprintf(db, sizeof(db), "%d", s->db);
		redisReply *r = redisCommand(c, "SELECT %s", db);
		int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
		freeReplyObject(r);
		if (!ok) {
			redisFree(c);
			return NULL;
		}
	}
	conn.c = c;
	conn.id = s->id;
	conn.pid = pid;
	return c;
}

/* Run a command on this thread's connection; NULL when the server is gone
 * (the connection is then dropped and the next call reconnects). */
static redisReply *command(const struct redis_state *s, int argc,
			   const char **argv)
{
	redisContext *c = connection(s);
	redisReply *r;

	if (c == NULL)
		return NULL;
	r = redisCommandArgv(c, argc, argv, NULL);
	if (r == NULL)
		drop_connection();
	return r;
}

static int parse_url(struct redis_state *s, const char *url, size_t len)
{
	char buf[300], *host, *colon, *slash, *end;

	if (len >= sizeof(buf) || len < 8 || strncmp(url, "redis://", 8) != 0)
		return TALLY_EOPTION;
	memcpy(buf, url + 8, len - 8);
	buf[len - 8] = '\0';
	host = buf;
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

/* Parse "k=v,k=v,flag" into s; *keep set by the `keep` flag. */
static int parse_options(struct redis_state *s, const char *opt, int *keep)
{
	while (opt != NULL && *opt != '\0') {
		size_t len = strcspn(opt, ",");
		const char *eq = memchr(opt, '=', len);
		size_t klen = eq ? (size_t)(eq - opt) : len;
		const char *v = eq ? eq + 1 : NULL;
		size_t vlen = eq ? len - klen - 1 : 0;
		int rc = 0;

		if (klen == 3 && strncmp(opt, "url", 3) == 0 && v)
			rc = parse_url(s, v, vlen);
		else if (klen == 3 && strncmp(opt, "key", 3) == 0 && v &&
			 vlen > 0 && vlen < sizeof(s->key))
			snprintf(s->key, sizeof(s->key), "%.*s", (int)vlen, v);
		else if (klen == 10 && strncmp(opt, "timeout_ms", 10) == 0 &&
			 v && vlen > 0 && vlen < 8 &&
			 strspn(v, "0123456789") == vlen)
			s->timeout_ms = atoi(v);
		else if (len == 4 && strncmp(opt, "keep", 4) == 0)
			*keep = 1;
		else
			rc = TALLY_EOPTION;
		if (rc != 0 || s->timeout_ms <= 0)
			return TALLY_EOPTION;
		opt += len;
		if (*opt == ',')
			opt++;
	}
	return 0;
}

static int parse_with_defaults(struct redis_state *s, const char *options,
			       int *keep)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->host, sizeof(s->host), "127.0.0.1");
	snprintf(s->key, sizeof(s->key), "tally");
	s->port = 6379;
	s->timeout_ms = 2000;
	return parse_options(s, options, keep);
}

/* The options alone: no connection is made. */
static int redis_check(const char *options)
{
	struct redis_state s;
	int keep = 0;

	return parse_with_defaults(&s, options, &keep);
}

static int redis_init(void *state, int64_t initial, unsigned flags,
		      const char *options)
{
	struct redis_state *s = state;
	char value[24];
	int keep = 0, rc;

	(void)flags; /* the server is shared already; connections are per
			process and made on first use */
	rc = parse_with_defaults(s, options, &keep);
	if (rc != 0)
		return rc;
	s->id = ((uint64_t)getpid() << 32) ^ atomic_fetch_add(&next_id, 1);

	snprintf(value, sizeof(value), "%lld", (long long)initial);
	const char *argv[] = {"SET", s->key, value, "NX"};
	redisReply *r = command(s, keep ? 4 : 3, argv);
	/* NX on an existing key answers nil: the counter is joined as is. */
	int ok = r != NULL && (r->type == REDIS_REPLY_STATUS ||
			       (keep && r->type == REDIS_REPLY_NIL));
	freeReplyObject(r);
	if (!ok)
		drop_connection();
	return ok ? 0 : TALLY_EREMOTE;
}

static int parse_value(const redisReply *r, int64_t *value)
{
	if (r->type == REDIS_REPLY_NIL) {
		*value = 0; /* as INCRBY treats a missing key */
		return 0;
	}
	if (r->type != REDIS_REPLY_STRING)
		return TALLY_EREMOTE;
	errno = 0;
	char *end;
	long long v = strtoll(r->str, &end, 10);
	if (errno || *end != '\0' || end == r->str)
		return TALLY_EREMOTE;
	*value = v;
	return 0;
}

/*
 * INCRBY refuses to overflow; every tally backend wraps modulo 2^64 instead.
 * So on that refusal compute the wrapped value here and write it back with
 * optimistic locking (WATCH ... MULTI/SET/EXEC), retrying when another
 * client changed the key in between.  Only this rare path pays for it.
 */
static int add_wrapping(struct redis_state *s, int64_t delta)
{
	for (int attempt = 0; attempt < 1000; attempt++) {
		const char *watch[] = {"WATCH", s->key};
		const char *get[] = {"GET", s->key};
		const char *multi[] = {"MULTI"};
		const char *exec[] = {"EXEC"};
		redisReply *r;
		int64_t v;
		char next[24];

		freeReplyObject(command(s, 2, watch));
		r = command(s, 2, get);
		if (r == NULL || parse_value(r, &v) != 0) {
			freeReplyObject(r);
			return TALLY_EREMOTE;
		}
		freeReplyObject(r);
		snprintf(next, sizeof(next), "%lld",
			 (long long)tally__wrap_add(v, delta));
		const char *set[] = {"SET", s->key, next};
		freeReplyObject(command(s, 1, multi));
		freeReplyObject(command(s, 3, set));
		r = command(s, 1, exec);
		if (r == NULL)
			return TALLY_EREMOTE;
		int done = r->type == REDIS_REPLY_ARRAY;
		freeReplyObject(r);
		if (done)
			return 0;
	}
	return TALLY_EREMOTE;
}

static int redis_add(void *state, int64_t delta)
{
	struct redis_state *s = state;
	char d[24];
	const char *argv[] = {"INCRBY", s->key, d};

	snprintf(d, sizeof(d), "%lld", (long long)delta);
	redisReply *r = command(s, 3, argv);
	if (r == NULL)
		return TALLY_EREMOTE;
	int rc = r->type == REDIS_REPLY_INTEGER ? 0
		 : r->type == REDIS_REPLY_ERROR && strstr(r->str, "overflow")
			 ? 1
			 : TALLY_EREMOTE;
	freeReplyObject(r);
	return rc == 1 ? add_wrapping(s, delta) : rc;
}

static int redis_get(void *state, int64_t *value)
{
	struct redis_state *s = state;
	const char *argv[] = {"GET", s->key};
	redisReply *r = command(s, 2, argv);

	if (r == NULL)
		return TALLY_EREMOTE;
	int rc = parse_value(r, value);
	freeReplyObject(r);
	return rc;
}

/* The key stays on the server: it is the shared counter.  Only this
 * thread's connection to it goes. */
static void redis_destroy(void *state)
{
	if (conn.id == ((struct redis_state *)state)->id &&
	    conn.pid == getpid())
		drop_connection();
}
#endif /* TALLY_HAVE_HIREDIS */

const struct tally_backend tally_backend_redis = {
	.name = "redis",
	.summary = "Redis INCRBY through hiredis; shared across machines",
	.caps = TALLY_CAP_REMOTE | TALLY_CAP_PSHARED,
	.takes_options = 1,
#ifdef TALLY_HAVE_HIREDIS
	.state_size = sizeof(struct redis_state),
	.state_align = _Alignof(struct redis_state),
	.init = redis_init,
	.add = redis_add,
	.get = redis_get,
	.destroy = redis_destroy,
	.check = redis_check,
#endif
};
