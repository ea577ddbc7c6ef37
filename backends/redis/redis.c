/* redis: a counter in a Redis server, shared across machines -- the one
 * ops object of the backend, and the counter's lifecycle.  What the
 * backend promises, and where each part lives: options.c. */
#include "redis_int.h"

#ifdef TALLY_HAVE_HIREDIS
#include <stdatomic.h>
#include <unistd.h>

static _Atomic uint64_t next_id = 1;

/* The options alone, for tally_backend_check(): no connection is made. */
static int redis_check(const char *options)
{
	struct redis_state s;
	const char *mode = "set";

	return tally__redis_parse(&s, options, &mode);
}

static int redis_init(void *state, int64_t initial, unsigned flags,
		      const char *options)
{
	struct redis_state *s = state;
	const char *mode = "set";
	int rc;

	(void)flags; /* the server is shared already; clients are per
			process and made on first use */
	rc = tally__redis_parse(s, options, &mode);
	if (rc != 0)
		return rc;
	s->id = ((uint64_t)getpid() << 32) ^ atomic_fetch_add(&next_id, 1);
	/* Creating never waits out a whole deadline for a server that is not
	 * there: one attempt per timeout, as a plain connect would. */
	int deadline = s->deadline_ms;
	s->deadline_ms = s->timeout_ms;
	struct client *cl = tally__redis_client_of(s);
	if (cl == NULL)
		return TALLY_ENOMEM;
	pthread_mutex_lock(&cl->io);
	cl->creating = 1;
	rc = tally__redis_initialize(cl, initial, mode);
	cl->creating = 0;
	pthread_mutex_unlock(&cl->io);
	s->deadline_ms = deadline;
	if (rc != 0)
		tally__redis_forget(s);
	return rc;
}

static int redis_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k; /* no lock: its own deadlines bound it */
	int64_t after;

	return tally__redis_add_fetch(state, delta, &after);
}

static int redis_get(void *state, int64_t *value)
{
	struct redis_state *s = state;
	struct client *cl = tally__redis_client_of(s);
	const char *argv[] = {"GET", s->key};
	int rc = 0, sent = 0;

	if (cl == NULL)
		return TALLY_ENOMEM;
	pthread_mutex_lock(&cl->io);
	redisReply *r = tally__redis_until_deadline(
		cl, 2, argv, tally__redis_now_ms() + (uint64_t)s->deadline_ms,
		&sent, &rc);
	if (r == NULL) {
		/* A read changes nothing: not unknown. */
		rc = tally__redis_give_up(cl, TALLY_EREMOTE);
	} else if (r->type == REDIS_REPLY_NIL) {
		*value = 0; /* as INCRBY treats a missing key */
	} else if (tally__redis_type_error(r) ||
		   (r->type == REDIS_REPLY_STRING &&
		    tally__redis_parse_i64(r->str, value))) {
		rc = tally__redis_wrong_type(
			cl, r->type == REDIS_REPLY_STRING ? "string" : NULL);
	} else if (r->type != REDIS_REPLY_STRING) {
		rc = tally__redis_remote_error(cl, r);
	}
	freeReplyObject(r);
	pthread_mutex_unlock(&cl->io);
	return rc;
}

/* The key stays on the server: it is the shared counter.  Only this
 * process's client of it goes; its record expires by itself. */
static void redis_destroy(void *state)
{
	tally__redis_forget(state);
}
#endif /* TALLY_HAVE_HIREDIS */

const struct tally_backend tally_backend_redis = {
	.name = "redis",
	.summary =
		"Redis through hiredis: exactly-once adds, shared across machines",
	.caps = TALLY_CAP_REMOTE | TALLY_CAP_PSHARED,
	.takes_options = 1,
#ifdef TALLY_HAVE_HIREDIS
	.state_size = sizeof(struct redis_state),
	.state_align = _Alignof(struct redis_state),
	.init = redis_init,
	.add = redis_add,
	.get = redis_get,
	.add_fetch = tally__redis_add_fetch,
	.destroy = redis_destroy,
	.check = redis_check,
#endif
};
