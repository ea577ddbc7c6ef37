/* redis: each process's clients of a counter, and how one talks to the
 * server -- connect, one command, retries until the deadline. */
#include "redis_int.h"

#ifdef TALLY_HAVE_HIREDIS
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* This process's clients; a forked child starts with none (atfork). */
static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct client *clients;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Threads take the process's connections to a counter in turn. */
static _Atomic unsigned next_lane;
static _Thread_local int lane_hint = -1;

/* Forks this process has been through (counted in the child, from the
 * first client on): tells a forked child's copy of `last` from its own. */
static unsigned forks;

/* This thread's client, last used: no registry lookup (and no getpid()
 * system call) on the hot path.  A counter made later at the same address
 * has another id; a forked child another count of forks. */
static _Thread_local struct {
	const struct redis_state *s;
	uint64_t state_id;
	unsigned forks;
	struct client *cl;
} last;

static void registry_lock(void)
{
	pthread_mutex_lock(&registry);
}

static void registry_unlock(void)
{
	pthread_mutex_unlock(&registry);
}

/* The child forgets the parent's clients: their connections, locks and
 * sequence numbers are the parent's (their memory is leaked, once). */
static void registry_child(void)
{
	forks++;
	clients = NULL;
	pthread_mutex_init(&registry, NULL);
}

static void install_atfork(void)
{
	pthread_atfork(registry_lock, registry_unlock, registry_child);
}

uint64_t tally__redis_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* This thread's client of s (one of s->connections per process, taken in
 * turn by threads), made on first use; NULL when out of memory. */
struct client *tally__redis_client_of(const struct redis_state *s)
{
	struct client *cl;

	if (last.s == s && last.state_id == s->id && last.forks == forks)
		return last.cl;
	/* From here on, a fork counts (before any client is cached). */
	pthread_once(&atfork_once, install_atfork);
	if (lane_hint < 0)
		lane_hint = (int)(atomic_fetch_add(&next_lane, 1) & 0xffff);
	unsigned lane = (unsigned)lane_hint % (unsigned)s->connections;
	registry_lock();
	for (cl = clients; cl != NULL; cl = cl->next)
		if (cl->s == s && cl->state_id == s->id && cl->lane == lane)
			break;
	if (cl == NULL) {
		cl = tally__redis_client_new(s, lane);
		if (cl != NULL) {
			cl->next = clients;
			clients = cl;
		}
	}
	registry_unlock();
	if (cl != NULL) {
		last.s = s;
		last.state_id = s->id;
		last.forks = forks;
		last.cl = cl;
	}
	return cl;
}

static void disconnect(struct client *cl)
{
	if (cl->c != NULL)
		redisFree(cl->c);
	cl->c = NULL;
}

static void client_free(struct client *cl)
{
	disconnect(cl);
	pthread_mutex_destroy(&cl->q);
	pthread_mutex_destroy(&cl->io);
	free(cl);
}

static struct timeval tv_of(int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000,
			     .tv_usec = (ms % 1000) * 1000};
	return tv;
}

redisReply *tally__redis_command(struct client *cl, int argc, const char **argv,
				 uint64_t budget_ms, int *sent)
{
	const struct redis_state *s = cl->s;

	*sent = 0;
	if (cl->c == NULL) {
		int ms = budget_ms < (uint64_t)s->timeout_ms ? (int)budget_ms
							     : s->timeout_ms;
		redisContext *c =
			redisConnectWithTimeout(s->host, s->port, tv_of(ms));
		if (c == NULL || c->err ||
		    redisSetTimeout(c, tv_of(s->timeout_ms)) != REDIS_OK) {
			if (c != NULL)
				redisFree(c);
			return NULL;
		}
		cl->c = c;
		if (s->db != 0) {
			char db[16];
			snprintf(db, sizeof(db), "%d", s->db);
			redisReply *r = redisCommand(c, "SELECT %s", db);
			int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
			freeReplyObject(r);
			if (!ok) {
				disconnect(cl);
				return NULL;
			}
		}
	}
	*sent = 1;
	redisReply *r = redisCommandArgv(cl->c, argc, argv, NULL);
	if (r == NULL)
		disconnect(cl);
	return r;
}

/* Errors a server answers while it cannot serve yet (loading its append
 * file after a restart, a busy script): try again, as for a lost reply. */
static int transient(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	       (strncmp(r->str, "LOADING", 7) == 0 ||
		strncmp(r->str, "BUSY", 4) == 0 ||
		strncmp(r->str, "TRYAGAIN", 8) == 0 ||
		strncmp(r->str, "MASTERDOWN", 10) == 0);
}

redisReply *tally__redis_until_deadline(struct client *cl, int argc,
					const char **argv, uint64_t deadline,
					int *sent, int *rc)
{
	uint64_t pause = 20;

	for (;;) {
		uint64_t now = tally__redis_now_ms();
		int s;
		redisReply *r = tally__redis_command(
			cl, argc, argv, deadline > now ? deadline - now : 1,
			&s);
		*sent |= s;
		if (r != NULL && !transient(r))
			return r;
		freeReplyObject(r);
		now = tally__redis_now_ms();
		if (now >= deadline) {
			*rc = *sent ? TALLY_EUNKNOWN : TALLY_EREMOTE;
			return NULL;
		}
		sleep_ms(pause < deadline - now ? pause : deadline - now);
		if (pause < 500)
			pause *= 2;
	}
}

void tally__redis_forget(struct redis_state *s)
{
	struct client **p, *gone = NULL;

	registry_lock();
	for (p = &clients; *p != NULL;) {
		struct client *cl = *p;
		if (cl->s == s && cl->state_id == s->id) {
			*p = cl->next;
			cl->next = gone;
			gone = cl;
		} else {
			p = &cl->next;
		}
	}
	registry_unlock();
	if (last.s == s)
		last.s = NULL;
	while (gone != NULL) {
		struct client *cl = gone;
		gone = cl->next;
		client_free(cl);
	}
}

#endif /* TALLY_HAVE_HIREDIS */
