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
	if (s->nseeds != 0)
		tally__redis_spread(s);
	s->id = ((uint64_t)getpid() << 32) ^ atomic_fetch_add(&next_id, 1);
	/* Creating never waits out a whole deadline for a server that is not
	 * there: one attempt per timeout, as a plain connect would. */
	int deadline = s->deadline_ms;
	s->deadline_ms = s->timeout_ms;
	struct client *cl = tally__redis_client_of(s);
	if (cl == NULL)
		return TALLY_ENOMEM;
	tally__redis_take_io(cl);
	cl->creating = 1;
	rc = tally__redis_initialize(cl, initial, mode);
	cl->creating = 0;
	tally__redis_give_io(cl);
	s->deadline_ms = deadline;
	if (rc != 0)
		tally__redis_forget(s);
	return rc;
}

static int redis_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k; /* no lock: its own deadlines bound it */
	struct client *cl = tally__redis_client_of(state);

	return cl != NULL ? tally__redis_engine_add(cl, delta) : TALLY_ENOMEM;
}

static int redis_add_fetch(void *state, int64_t delta, int64_t *after)
{
	const struct redis_state *s = state;

	if (s->shards > 1) {
		tally__explain_set(
			TALLY_EUNSUPPORTED,
			"redis counter '%s' is %d shards: a fetch-and-add over them would not be atomic (two calls could see one value); tickets need shards=1",
			s->key, s->shards);
		return TALLY_EUNSUPPORTED;
	}
	struct client *cl = tally__redis_client_of(state);

	return cl != NULL ? tally__redis_engine_fetch(cl, delta, after)
			  : TALLY_ENOMEM;
}

static int redis_get(void *state, int64_t *value)
{
	struct client *cl = tally__redis_client_of(state);

	return cl != NULL ? tally__redis_engine_get(cl, value) : TALLY_ENOMEM;
}

/* Every connection of this process to the counter: what each still holds
 * (async, write-behind) goes out, and the first failure is told. */
static int redis_flush(void *state)
{
	struct client *all[64];
	unsigned n = tally__redis_clients_of(state, all, 64);
	int rc = 0;

	for (unsigned i = 0; i < n; i++) {
		int r = tally__redis_engine_flush(all[i]);
		if (r != 0 && rc == 0)
			rc = r;
	}
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
	.add_fetch = redis_add_fetch,
	.destroy = redis_destroy,
	.check = redis_check,
	.flush = redis_flush,
#endif
};
