/*
 * redis: the engine of one client -- up to `inflight` requests on its
 * connection at once, their replies, what is sent again and when, and the
 * adds, reads and flushes of the three modes over it.
 *
 * Adds.  An add puts its delta into the client's sum (acc, one atomic add)
 * and notes the generation it belongs to: the engine takes the sum into a
 * request (exchanges it for 0) and counts a generation each time, so an add
 * made before exchange g+1 is carried by a request that settles generation
 * g+1 or earlier.  sync: the add then waits until its generation settles
 * (the waiters of one request wake together: one futex word, bumped once a
 * settle).  async: it returns at once, and tally_flush() waits for the
 * generation current when it was called.  write-behind: the delta goes to
 * a per-CPU local sum instead (the percpu backend's add), which the engine
 * takes every flush_ms.
 *
 * Who drives.  Whoever holds cl->io runs the engine: in sync mode a waiting
 * add (the first to find it free; when its own add settles it lets go and
 * wakes the others, one of whom takes over); in async and write-behind mode
 * the client's own thread, for the client's life.  Adds never wait for the
 * driver: while it waits in poll() with room for another request it arms a
 * doorbell (an eventfd) that the next add rings, once.
 *
 * Requests.  The ring holds the requests made and not yet settled, oldest
 * first; those on the current connection are a prefix of it, in the order
 * they were written, so each reply belongs to the first one on the wire
 * still unanswered.  Each is numbered when first sent (the client's
 * sequence) and keeps its number: sent again, after a lost reply, a reset
 * connection or a script the server forgot, it finds its number taken if
 * it was applied (add.lua answers the recorded value), and a late first
 * copy finds the same.  add.lua applies a request only when its number
 * follows the record's, so requests in flight apply in order or not at
 * all; one refused outright (a key of another type, out of memory, an ACL)
 * leaves a hole no later request of this identity can pass, and those
 * behind it are renumbered under a new identity (a new id, a new record).
 * The same after a request is given up (deadline_ms since it was made
 * passed): applied once or not at all (TALLY_EUNKNOWN) if it may have
 * reached the server, not applied (TALLY_EREMOTE) if it never left.
 * So no fence (CLIENT KILL) is needed: a copy that arrives late can only
 * find its number taken or its sequence broken.
 */
#include "redis_int.h"
#include "slots.h"

#ifdef TALLY_HAVE_HIREDIS
#include <hiredis/sds.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* --- waiting and waking ---------------------------------------------- */

static void futex_wait(_Atomic uint32_t *word, uint32_t seen, int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

/* Every waiter looks again: something settled, or an answer came. */
static void wake_all(struct client *cl)
{
	atomic_fetch_add(&cl->bell, 1);
	if (atomic_load(&cl->sleepers) != 0)
		syscall(SYS_futex, &cl->bell, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
			NULL, 0);
}

/* An add or a flush has work for the engine: if it waits on the doorbell,
 * ring it (once: the first to see it armed disarms it). */
static void ring_bell(struct client *cl)
{
	if (atomic_load(&cl->armed) && atomic_exchange(&cl->armed, 0)) {
		uint64_t one = 1;
		ssize_t n = write(cl->doorbell, &one, sizeof(one));
		(void)n; /* a full eventfd is rung already */
	}
}

/* A waiter needs generation g: the engine exchanges the sum until it has,
 * even when the sum is 0 (adds that cancel out, or none). */
static void raise_want(struct client *cl, uint64_t g)
{
	uint64_t w = atomic_load(&cl->want);

	while (w < g && !atomic_compare_exchange_weak(&cl->want, &w, g))
		;
}

/* --- settling ----------------------------------------------------------- */

/* A failure's words into a buffer of the client's own (why may be another
 * part of the client: a request's). */
static void copy_why(char *to, size_t size, const char *why)
{
	size_t n = strnlen(why, size - 1);

	memmove(to, why, n);
	to[n] = '\0';
}

/* Every generation up to g is settled; those after the last settled one
 * failed with rc (sum: what they carried) when rc != 0. */
static void settle(struct client *cl, uint64_t g, int rc, const char *why,
		   uint64_t sum)
{
	if (rc != 0) {
		pthread_mutex_lock(&cl->q);
		struct failure *f = &cl->fails[cl->nfails++ % FAILURES];
		f->lo = atomic_load(&cl->settled) + 1;
		f->hi = g;
		f->rc = rc;
		copy_why(f->why, sizeof(f->why), why);
		/* Nobody waits for an async or write-behind add: the next
		 * flush tells. */
		if (cl->s->mode != REDIS_SYNC) {
			if (rc == TALLY_EUNKNOWN) {
				cl->unknown_sum += sum;
				cl->unknown_n++;
			} else {
				cl->lost_sum += sum;
				cl->lost_n++;
			}
			copy_why(cl->lost_why, sizeof(cl->lost_why), why);
		}
		pthread_mutex_unlock(&cl->q);
		atomic_store(&cl->last_fail_hi, g);
	}
	if (g > atomic_load(&cl->settled))
		atomic_store(&cl->settled, g);
	wake_all(cl);
}

/* How the adds of generations lo..hi came out: 0, or the failure's code
 * with its words (tally_explain()).  An add that may ride on any of
 * several requests, one of which failed, may or may not be applied. */
static int outcome(struct client *cl, uint64_t lo, uint64_t hi)
{
	int rc = 0;
	char why[320] = "";

	if (atomic_load(&cl->last_fail_hi) < lo)
		return 0;
	pthread_mutex_lock(&cl->q);
	unsigned first = cl->nfails > FAILURES ? cl->nfails - FAILURES : 0;
	for (unsigned i = first; i < cl->nfails; i++) {
		const struct failure *f = &cl->fails[i % FAILURES];
		if (f->hi < lo || f->lo > hi)
			continue;
		rc = lo == hi && f->lo <= lo && f->hi >= hi ? f->rc
							    : TALLY_EUNKNOWN;
		snprintf(why, sizeof(why), "%s", f->why);
		break;
	}
	pthread_mutex_unlock(&cl->q);
	if (rc != 0)
		tally__explain_set(rc, "%s", why);
	return rc;
}

/* --- the ring ------------------------------------------------------------ */

static struct request *at(struct client *cl, unsigned i)
{
	return &cl->ring[(cl->head + i) % MAX_INFLIGHT];
}

static struct request *push(struct client *cl, enum req_kind kind, uint64_t now)
{
	struct request *r = at(cl, cl->n++);

	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->born_ms = now;
	r->gen = atomic_load(&cl->gen);
	return r;
}

/* The first request on the wire with replies still to come: the next
 * reply's. */
static struct request *awaiting(struct client *cl)
{
	for (unsigned i = 0; i < cl->n; i++) {
		struct request *r = at(cl, i);
		if (r->sent_ms != 0 && r->got < r->nsteps)
			return r;
	}
	return NULL;
}

/* Answered, and no reply of its still to come (a WAIT after an EVALSHA
 * that failed). */
static int finished(const struct request *r)
{
	return r->done && (r->sent_ms == 0 || r->got >= r->nsteps);
}

/* An asker's answer (its caller may return as soon as done is set). */
static void answer(struct client *cl, struct ask *a, int rc, int64_t value,
		   const char *why)
{
	a->rc = rc;
	a->value = value;
	snprintf(a->why, sizeof(a->why), "%s", rc ? why : "");
	atomic_store(&a->done, 1);
	wake_all(cl);
}

/* Settle the answered requests at the head of the ring, in order. */
static void pop_done(struct client *cl)
{
	while (cl->n != 0 && finished(at(cl, 0))) {
		struct request *r = at(cl, 0);

		if (r->kind == REQ_FETCH)
			cl->fetching = 0;
		if (r->ask != NULL)
			answer(cl, r->ask, r->rc, r->ask->value, r->why);
		if (r->kind != REQ_GET && r->rc == 0 && r->seq != 0 &&
		    r->epoch == cl->epoch) {
			/* Acknowledged: counted, in case the server
			 * forgets it. */
			cl->acked_seq = r->seq;
			cl->cum_acked = r->cum;
			cl->last_ack_ms = tally__redis_now_ms();
		}
		cl->head = (cl->head + 1) % MAX_INFLIGHT;
		cl->n--;
		/* A fetch carries no generation of its own; a GET carries
		 * those that were empty when it was made. */
		settle(cl, r->gen, r->kind == REQ_ADD ? r->rc : 0, r->why,
		       r->sum);
	}
}

/* The words of a failure: the server and what went wrong, never the
 * password (cl->why never holds it). */
static void say(struct request *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(struct request *r, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	r->rc = rc;
	r->done = 1;
}

/* Those behind a request that left a hole in the sequence start again
 * under a new identity; the replies of those on the wire are not theirs
 * any more.  Returns -1 without randomness (then they are given up). */
static int renumber(struct client *cl)
{
	if (tally__redis_new_identity(cl) != 0)
		return -1;
	for (unsigned i = 0; i < cl->n; i++) {
		struct request *r = at(cl, i);
		if (r->sent_ms != 0 && r->got < r->nsteps) {
			cl->discard += r->nsteps - r->got;
			r->got = r->nsteps;
		}
		if (r->done)
			continue;
		/* Copies of the old identity can never apply (the
		 * sequence has a hole): a fresh request. */
		r->sent_ms = 0;
		r->seq = 0;
		r->resent = 0;
	}
	return 0;
}

/* Give up every request in the ring: the deadline passed, or the server
 * refuses this connection for good.  Those that may have reached it are of
 * unknown outcome, the others were not applied; either way the sequence has
 * a hole, so the client takes a new identity and connection. */
static void give_up(struct client *cl, const char *why)
{
	for (unsigned i = 0; i < cl->n; i++) {
		struct request *r = at(cl, i);
		r->sent_ms = 0; /* the connection goes */
		if (r->done)
			continue;
		if (r->kind == REQ_GET)
			say(r, TALLY_EREMOTE, "redis server %s:%d: %s",
			    cl->host, cl->port, why);
		else if (r->ever_sent)
			say(r, TALLY_EUNKNOWN,
			    "redis server %s:%d: %s; the add may or may not have been applied",
			    cl->host, cl->port, why);
		else
			say(r, TALLY_EREMOTE, "redis server %s:%d: %s",
			    cl->host, cl->port, why);
	}
	tally__redis_disconnect(cl);
	cl->discard = 0;
	(void)tally__redis_new_identity(cl);
	pop_done(cl);
}

/* --- taking adds into requests ----------------------------------------- */

/* This process's adds not yet in a request. */
static uint64_t unsent(struct client *cl)
{
	if (cl->s->mode == REDIS_BEHIND) {
		int64_t v = 0;
		(void)tally_get(cl->local, &v);
		return (uint64_t)v - cl->sent_local;
	}
	return atomic_load(&cl->acc);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The flusher's next turn, flush_ms after the last on the same cadence
 * (a late turn does not push every later one back), or flush_ms from now
 * when it fell more than a whole period behind. */
static void next_turn(struct client *cl, uint64_t now)
{
	uint64_t period = (uint64_t)cl->s->flush_ms * 1000u;

	cl->next_flush_us += period;
	if (cl->next_flush_us <= now)
		cl->next_flush_us = now + period;
}

/* Whether a new generation is due: a waiter wants one, or adds wait (in
 * write-behind mode, only when the flusher's turn has come). */
static int due(struct client *cl)
{
	if (atomic_load(&cl->want) > atomic_load(&cl->gen))
		return 1;
	if (cl->s->mode != REDIS_BEHIND)
		return atomic_load(&cl->acc) != 0;
	uint64_t now = now_us();
	if (now < cl->next_flush_us)
		return 0;
	if (unsent(cl) != 0)
		return 1;
	next_turn(cl, now); /* nothing new */
	return 0;
}

/* Whether a caller waits in the ask queue with an ask the ring can take
 * now (a fetch waits for the ring to empty). */
static int asked(struct client *cl)
{
	pthread_mutex_lock(&cl->q);
	int any = cl->asks != NULL && (cl->asks->kind == ASK_GET || cl->n == 0);
	pthread_mutex_unlock(&cl->q);
	return any;
}

/* Take the sum into a new generation: a request of its own, or, when
 * nothing was added, riding on the last request in the ring (settled at
 * once when there is none). */
static void exchange(struct client *cl, uint64_t now)
{
	uint64_t sum;

	if (cl->s->mode == REDIS_BEHIND) {
		sum = unsent(cl);
		cl->sent_local += sum;
		uint64_t t = now_us();
		if (t >= cl->next_flush_us)
			next_turn(cl, t); /* the turn's (a flush's keeps it) */
	} else {
		sum = atomic_exchange(&cl->acc, 0);
	}
	uint64_t g = atomic_load(&cl->gen) + 1;
	atomic_store(&cl->gen, g);
	if (sum != 0) {
		struct request *r = push(cl, REQ_ADD, now);
		r->sum = sum;
	} else if (cl->n != 0) {
		at(cl, cl->n - 1)->gen = g;
	} else {
		settle(cl, g, 0, "", 0);
	}
}

/* Put what waits into the ring, up to `inflight` requests: asks first (a
 * GET behind everything sent before it; a fetch alone, once the ring is
 * empty), then the adds. */
static void fill(struct client *cl, uint64_t now)
{
	unsigned k = (unsigned)cl->s->inflight;

	while (cl->n < k && !cl->fetching) {
		pthread_mutex_lock(&cl->q);
		struct ask *a = cl->asks;
		if (a != NULL && (a->kind == ASK_GET || cl->n == 0)) {
			cl->asks = a->next;
			if (cl->asks == NULL)
				cl->asks_tail = &cl->asks;
		} else {
			a = NULL;
		}
		int fetch_waits = cl->asks != NULL;
		pthread_mutex_unlock(&cl->q);
		if (a != NULL && a->kind == ASK_GET) {
			struct request *r = push(cl, REQ_GET, now);
			r->ask = a;
			r->unsent = unsent(cl);
		} else if (a != NULL) {
			struct request *r = push(cl, REQ_FETCH, now);
			r->ask = a;
			r->sum = (uint64_t)a->delta;
			cl->fetching = 1;
		} else if (!fetch_waits && due(cl)) {
			exchange(cl, now);
		} else {
			break;
		}
	}
}

/* --- the connection --------------------------------------------------------
 */

static void backoff(struct client *cl, uint64_t now)
{
	cl->backoff = cl->backoff ? cl->backoff * 2 : 10;
	if (cl->backoff > 500)
		cl->backoff = 500;
	cl->pause_until = now + cl->backoff;
}

/* The connection breaks (a lost reply, a reset, a script the server
 * forgot): what was on it is sent again, with the same numbers, on the
 * next one. */
static void broken(struct client *cl, uint64_t now, int pause)
{
	tally__redis_disconnect(cl);
	cl->discard = 0;
	for (unsigned i = 0; i < cl->n; i++) {
		struct request *r = at(cl, i);
		if (r->sent_ms != 0)
			r->resent = 1;
		r->sent_ms = 0;
	}
	/* A connection to an -ASK target was for one migration step: the
	 * next goes where the map says. */
	if (cl->asking) {
		cl->asking = 0;
		cl->stale = 1;
	}
	if (pause)
		backoff(cl, now);
}

/* A cluster node's connection failed: the next connect reads the slot map
 * first (the slot may have failed over). */
static void lost_node(struct client *cl, uint64_t now, int pause)
{
	if (cl->cluster != NULL)
		cl->stale = 1;
	broken(cl, now, pause);
}

/* Connected, the add script loaded and the socket non-blocking: 0, or -1
 * (cl->why says why; cl->hard == 2 when the server refuses us for good). */
static int ready(struct client *cl, uint64_t now)
{
	const struct redis_state *s = cl->s;

	if (cl->piped)
		return 0;
	if (now < cl->pause_until)
		return -1;
	/* A map read again gives up when the oldest request does. */
	uint64_t until = cl->n != 0
				 ? at(cl, 0)->born_ms + (uint64_t)s->deadline_ms
				 : now + (uint64_t)s->timeout_ms;
	if (cl->c == NULL && ((cl->cluster != NULL &&
			       tally__redis_cluster_target(cl, until) != 0) ||
			      tally__redis_connect(cl, s->timeout_ms) != 0)) {
		if (cl->cluster != NULL)
			cl->stale = 1;
		backoff(cl, now);
		return -1;
	}
	const char *argv[] = {"SCRIPT", "LOAD", tally__redis_add_script};
	redisReply *r = tally__redis_blocking(cl->c, 3, argv);
	int ok = r != NULL && r->type == REDIS_REPLY_STRING &&
		 r->len < sizeof(cl->sha);
	if (ok) {
		memcpy(cl->sha, r->str, r->len + 1);
	} else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
		snprintf(cl->why, sizeof(cl->why), "refused SCRIPT LOAD: %s",
			 r->str);
		cl->hard = 2;
	} else {
		snprintf(cl->why, sizeof(cl->why),
			 "no reply to SCRIPT LOAD within %d ms", s->timeout_ms);
		cl->hard = 0;
	}
	freeReplyObject(r);
	int flags = ok ? fcntl(cl->c->fd, F_GETFL) : -1;
	if (!ok || flags < 0 ||
	    fcntl(cl->c->fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		tally__redis_disconnect(cl);
		if (cl->cluster != NULL && cl->hard != 2)
			cl->stale = 1;
		backoff(cl, now);
		return -1;
	}
	cl->c->flags &= ~REDIS_BLOCK;
	cl->piped = 1;
	cl->backoff = 0;
	cl->hard = 0;
	cl->why[0] = '\0';
	return 0;
}

/* Write what hiredis holds for the connection, as far as the socket takes
 * it (the rest when poll says it can), never raising SIGPIPE: send() with
 * MSG_NOSIGNAL where hiredis 0.14 would write().  0, or -1 with why. */
static int write_out(struct client *cl)
{
	redisContext *c = cl->c;

	while (sdslen(c->obuf) != 0) {
		ssize_t n = send(c->fd, c->obuf, sdslen(c->obuf), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			snprintf(cl->why, sizeof(cl->why),
				 "the connection failed: %s", strerror(errno));
			return -1;
		}
		sdsrange(c->obuf, (int)n, -1);
	}
	return 0;
}

/* On a connection to an -ASK target, each command goes after ASKING
 * (which holds for one command). */
static void asking(struct client *cl, struct request *r)
{
	if (cl->asking) {
		const char *argv[] = {"ASKING"};
		redisAppendCommandArgv(cl->c, 1, argv, NULL);
		r->steps[r->nsteps++] = STEP_ASKING;
	}
}

/* Write the requests not yet on this connection, in ring order. */
static void send_new(struct client *cl, uint64_t now)
{
	const struct redis_state *s = cl->s;
	char seq[24], sum[24], ttl[24], cum[24], replicas[16], wait[16];

	snprintf(ttl, sizeof(ttl), "%d",
		 RECORD_TTL_MS > 2 * s->deadline_ms ? RECORD_TTL_MS
						    : 2 * s->deadline_ms);
	snprintf(replicas, sizeof(replicas), "%d", s->replicas);
	snprintf(wait, sizeof(wait), "%d", s->wait_ms);
	for (unsigned i = 0; i < cl->n; i++) {
		struct request *r = at(cl, i);
		if (r->sent_ms != 0 || r->done)
			continue;
		r->nsteps = r->got = 0;
		r->applied = 0;
		if (r->kind == REQ_GET) {
			const char *type[] = {"TYPE", cl->key};
			const char *get[] = {"GET", cl->key};
			asking(cl, r);
			redisAppendCommandArgv(cl->c, 2, type, NULL);
			r->steps[r->nsteps++] = STEP_TYPE;
			asking(cl, r);
			redisAppendCommandArgv(cl->c, 2, get, NULL);
			r->steps[r->nsteps++] = STEP_GET;
		} else {
			if (r->seq == 0) {
				r->seq = cl->next_seq++;
				r->cum = cl->cum_sent += r->sum;
				r->epoch = cl->epoch;
			}
			snprintf(seq, sizeof(seq), "%" PRIu64, r->seq);
			snprintf(sum, sizeof(sum), "%" PRId64, (int64_t)r->sum);
			snprintf(cum, sizeof(cum), "%" PRIu64, r->cum);
			const char *argv[] = {"EVALSHA", cl->sha,    "2",
					      cl->key,	 cl->record, seq,
					      sum,	 ttl,	     cum};
			asking(cl, r);
			redisAppendCommandArgv(cl->c, 9, argv, NULL);
			r->steps[r->nsteps++] = STEP_EVAL;
			if (s->replicas > 0) {
				const char *w[] = {"WAIT", replicas, wait};
				redisAppendCommandArgv(cl->c, 3, w, NULL);
				r->steps[r->nsteps++] = STEP_WAIT;
			}
		}
		r->sent_ms = now;
		r->ever_sent = 1;
	}
	if (write_out(cl) != 0)
		lost_node(cl, now, 1);
}

/* --- replies ----------------------------------------------------------------
 */

static int starts(const redisReply *r, const char *word)
{
	return r->type == REDIS_REPLY_ERROR &&
	       strncmp(r->str, word, strlen(word)) == 0;
}

static void on_get(struct client *cl, struct request *q, const redisReply *r)
{
	int64_t v = 0;

	if (r->type == REDIS_REPLY_NIL ||
	    (r->type == REDIS_REPLY_STRING &&
	     tally__redis_parse_i64(r->str, &v) == 0)) {
		/* Behind every request sent before it: plus what this
		 * process had not sent then. */
		q->ask->value = (int64_t)((uint64_t)v + q->unsent);
		q->done = 1;
	} else if (r->type == REDIS_REPLY_STRING) {
		say(q, TALLY_EWRONGTYPE,
		    "redis key '%s' holds a string that is not a 64-bit integer",
		    cl->key);
	} else if (starts(r, "WRONGTYPE")) {
		say(q, TALLY_EWRONGTYPE,
		    "redis key '%s' holds a %s, not an integer counter",
		    cl->key, q->type);
	} else {
		say(q, TALLY_EREMOTE, "redis server %s:%d: %s", cl->host,
		    cl->port,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	}
}

/* The server holds this client's requests only up to number last, whose
 * sum its record gives as cum (text, "?" when it does not know), or with
 * no record none at all (the record and the counter change in one script,
 * which replicas get whole), though it acknowledged those up to
 * acked_seq: it lost them (a failover to a replica they had not reached,
 * a restart without them).  The next flush tells; the requests in the
 * ring were not applied (the sequence stops at the hole) and go again
 * under a new identity. */
static void forgotten(struct client *cl, uint64_t last, const char *cum)
{
	char *end;

	errno = 0;
	uint64_t had = strtoull(cum, &end, 10);
	int known = errno == 0 && end != cum && *end == '\0';
	/* What an earlier loss told already. */
	if (last < cl->base_seq) {
		last = cl->base_seq;
		had = cl->base_cum;
		known = 1;
	}
	uint64_t n = cl->acked_seq > last ? cl->acked_seq - last : 0;
	uint64_t sum = cl->cum_acked - had;
	/* Adds WAIT left unconfirmed were told already, as of unknown
	 * outcome. */
	unsigned have =
		cl->nunconfirmed < FAILURES ? cl->nunconfirmed : FAILURES;
	for (unsigned i = 0; i < have; i++)
		if (cl->unconfirmed[i].epoch == cl->epoch &&
		    cl->unconfirmed[i].seq > last &&
		    cl->unconfirmed[i].seq <= cl->acked_seq) {
			n--;
			sum -= cl->unconfirmed[i].sum;
		}
	if (cl->nunconfirmed > FAILURES)
		known = 0; /* more than remembered */
	pthread_mutex_lock(&cl->q);
	cl->forgot_n += n;
	if (known)
		cl->forgot_sum += sum;
	else
		cl->forgot_more = 1;
	snprintf(
		cl->forgot_why, sizeof(cl->forgot_why),
		"redis server %s:%d holds this client's requests up to number %" PRIu64
		" of the %" PRIu64
		" it acknowledged (a failover to a replica they had not reached, or a restart without them)",
		cl->host, cl->port, last, cl->acked_seq);
	pthread_mutex_unlock(&cl->q);
	cl->base_seq = cl->acked_seq;
	cl->base_cum = cl->cum_acked;
}

/* Whether a request in the ring, other than q and not done, holds a number
 * between last and q's: sent again, it fills the hole below q. */
static int fills(struct client *cl, uint64_t last, const struct request *q)
{
	for (unsigned i = 0; i < cl->n; i++) {
		const struct request *r = at(cl, i);
		if (r != q && !r->done && r->seq > last && r->seq < q->seq)
			return 1;
	}
	return 0;
}

/* Whether q or a request behind it was sent before, on an earlier
 * connection, where it may have been applied. */
static int sent_before(struct client *cl, const struct request *q)
{
	int behind = 0;

	for (unsigned i = 0; i < cl->n; i++) {
		const struct request *r = at(cl, i);
		behind |= r == q;
		if (behind && r->resent)
			return 1;
	}
	return 0;
}

/* An add's reply: applied (now or before), or why not. */
static void on_add(struct client *cl, struct request *q, const redisReply *r,
		   uint64_t now)
{
	int64_t v;

	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_STRING &&
	    tally__redis_parse_i64(r->element[1]->str, &v) == 0) {
		if (q->ask != NULL)
			q->ask->value = v;
		cl->redirects = 0;
		/* 2: applied, but there was no record, though this client had
		 * one (acknowledged requests) not long ago: it was lost. */
		if (r->element[0]->type == REDIS_REPLY_INTEGER &&
		    r->element[0]->integer == 2 && cl->acked_seq != 0 &&
		    now - cl->last_ack_ms < RECORD_TTL_MS / 2)
			forgotten(cl, 0, "0");
		/* With WAIT to come, it is done once replicas confirm it. */
		if (q->got < q->nsteps)
			q->applied = 1;
		else
			q->done = 1;
		return;
	}
	if (starts(r, "TALLYGAP")) {
		char *cum;
		uint64_t last = strtoull(r->str + 9, &cum, 10);
		if (last < cl->acked_seq)
			forgotten(cl, last, *cum == ' ' ? cum + 1 : "?");
		/* A hole no request in the ring fills (what the server
		 * lost, or one WAIT left unconfirmed and a failover lost):
		 * q and those behind it were not applied, and go again
		 * under a new identity. */
		if (!fills(cl, last, q)) {
			if (renumber(cl) != 0)
				give_up(cl,
					"no randomness for a new client id");
			return;
		}
	}
	if (starts(r, "NOSCRIPT") || starts(r, "TALLYGAP") ||
	    tally__redis_transient(r)) {
		/* Not run, and neither is anything behind it: all again,
		 * after loading the script (SCRIPT FLUSH, a restart).  A
		 * slot being migrated (TRYAGAIN: some of its keys moved, not
		 * all) is a matter of milliseconds: again after 10, not the
		 * backoff that grows to half a second for a server that
		 * cannot serve. */
		snprintf(cl->why, sizeof(cl->why), "%s", r->str);
		int again = starts(r, "TRYAGAIN");
		broken(cl, now, tally__redis_transient(r) && !again);
		if (again)
			cl->pause_until = now + 10;
		return;
	}
	/* Refused.  Not applied, unless it (or one behind it) was sent
	 * before on another connection, where it may have been: then
	 * again, until the deadline says its outcome is unknown. */
	if (sent_before(cl, q)) {
		snprintf(cl->why, sizeof(cl->why), "%s",
			 r->type == REDIS_REPLY_ERROR ? r->str
						      : "unexpected reply");
		broken(cl, now, 1);
		return;
	}
	if (starts(r, "TALLYTYPE") && strcmp(r->str + 10, "string") == 0)
		say(q, TALLY_EWRONGTYPE,
		    "redis key '%s' holds a string that is not a 64-bit integer",
		    cl->key);
	else if (starts(r, "TALLYTYPE"))
		say(q, TALLY_EWRONGTYPE,
		    "redis key '%s' holds a %s, not an integer counter",
		    cl->key, r->str + 10);
	else
		say(q, TALLY_EREMOTE, "redis server %s:%d: %s", cl->host,
		    cl->port,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	/* Not applied: a hole in the sequence. */
	if (renumber(cl) != 0)
		give_up(cl, "no randomness for a new client id");
}

/* WAIT's reply after an add applied: done when enough replicas confirmed
 * it, else reported: applied on the primary, which a failover may lose. */
static void on_wait(struct client *cl, struct request *q, const redisReply *r)
{
	const struct redis_state *s = cl->s;

	if (!q->applied)
		return; /* the add failed, and said why */
	if (r->type == REDIS_REPLY_INTEGER && r->integer >= s->replicas) {
		q->done = 1;
		return;
	}
	uint64_t now = tally__redis_now_ms();
	if (r->type == REDIS_REPLY_INTEGER &&
	    now + (uint64_t)s->wait_ms <
		    q->born_ms + (uint64_t)s->deadline_ms) {
		/* Asked again until the deadline (a replica that rejoins
		 * after a failover confirms it): sent again, the request
		 * finds its number taken, renews its record (a write, so
		 * that WAIT waits for it) and WAITs anew. */
		snprintf(
			q->why, sizeof(q->why),
			"%lld of the %d replicas asked for confirmed the add within %d ms (durability=replicas:%d), asked until the deadline",
			(long long)r->integer, s->replicas, s->wait_ms,
			s->replicas);
		copy_why(cl->why, sizeof(cl->why), q->why);
		broken(cl, now, 1);
		return;
	} else if (r->type == REDIS_REPLY_INTEGER)
		say(q, TALLY_EUNKNOWN,
		    "redis server %s:%d applied the add, but %lld of the %d replicas asked for confirmed it within %d ms (durability=replicas:%d): a failover may lose it",
		    cl->host, cl->port, (long long)r->integer, s->replicas,
		    s->wait_ms, s->replicas);
	else
		say(q, TALLY_EUNKNOWN,
		    "redis server %s:%d applied the add, but refused WAIT: %s",
		    cl->host, cl->port,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	/* Told of unknown outcome: should the server lose it, no loss to
	 * tell again. */
	unsigned i = cl->nunconfirmed++ % FAILURES;
	cl->unconfirmed[i].seq = q->seq;
	cl->unconfirmed[i].sum = q->sum;
	cl->unconfirmed[i].epoch = cl->epoch;
}

/* -MOVED or -ASK from a cluster node: nothing on the connection ran (every
 * request of a client names one slot), so all of it goes again, with the
 * same numbers, where the node said; after a few in a row, a pause. */
static int redirected(struct client *cl, const redisReply *r, uint64_t now)
{
	struct tally__redis_redirect rd;

	if (cl->cluster == NULL || r->type != REDIS_REPLY_ERROR ||
	    tally__redis_redirect_parse(r->str, r->len, &rd) ==
		    TALLY__REDIS_NO_REDIRECT)
		return 0;
	const char *host = rd.host[0] != '\0' ? rd.host : cl->host;
	if (rd.kind == TALLY__REDIS_ASK) {
		snprintf(cl->ask_host, sizeof(cl->ask_host), "%s", host);
		cl->ask_port = rd.port;
		cl->ask_next = 1;
	} else {
		memmove(cl->host, host, strlen(host) + 1);
		cl->port = rd.port;
		cl->stale = 0;
	}
	snprintf(cl->why, sizeof(cl->why), "%s", r->str);
	broken(cl, now, ++cl->redirects > 2);
	if (rd.kind == TALLY__REDIS_MOVED)
		cl->stale = 0; /* where it said, not the map read again */
	return 1;
}

static void on_reply(struct client *cl, const redisReply *r, uint64_t now)
{
	if (cl->discard != 0) {
		cl->discard--;
		return;
	}
	struct request *q = awaiting(cl);
	if (q == NULL) { /* a reply nobody asked for: start clean */
		snprintf(cl->why, sizeof(cl->why),
			 "a reply out of turn on the connection");
		broken(cl, now, 0);
		return;
	}
	enum req_step step = q->steps[q->got++];
	cl->last_reply_ms = now;
	if (step != STEP_WAIT && redirected(cl, r, now))
		return;
	switch (step) {
	case STEP_ASKING:
		if (r->type == REDIS_REPLY_ERROR) {
			snprintf(cl->why, sizeof(cl->why), "refused ASKING: %s",
				 r->str);
			broken(cl, now, 1);
		}
		break;
	case STEP_TYPE:
		snprintf(q->type, sizeof(q->type), "%s",
			 r->type == REDIS_REPLY_STATUS ? r->str : "?");
		break;
	case STEP_GET:
		on_get(cl, q, r);
		break;
	case STEP_EVAL:
		on_add(cl, q, r, now);
		break;
	case STEP_WAIT:
		on_wait(cl, q, r);
		break;
	}
}

static void read_replies(struct client *cl, uint64_t now)
{
	void *reply;

	if (redisBufferRead(cl->c) != REDIS_OK) {
		snprintf(cl->why, sizeof(cl->why), "the connection failed: %s",
			 cl->c->errstr);
		lost_node(cl, now, 1);
		return;
	}
	while (cl->piped) {
		if (redisGetReplyFromReader(cl->c, &reply) != REDIS_OK) {
			snprintf(cl->why, sizeof(cl->why),
				 "the connection failed: %s", cl->c->errstr);
			broken(cl, now, 1);
			return;
		}
		if (reply == NULL)
			break;
		on_reply(cl, reply, now);
		freeReplyObject(reply);
	}
}

/* --- one turn of the engine ------------------------------------------------
 */

/* Time limits: the oldest request's deadline, the first unanswered one's
 * reply timeout.  Returns how long until the next one (ms). */
static int limits(struct client *cl, uint64_t now)
{
	const struct redis_state *s = cl->s;
	uint64_t next = now + 1000;

	if (cl->n != 0) {
		uint64_t end = at(cl, 0)->born_ms + (uint64_t)s->deadline_ms;
		if (now >= end) {
			/* Not connected: why not; connected: no reply. */
			char why[220];
			if (!cl->piped && cl->why[0])
				snprintf(why, sizeof(why), "%s", cl->why);
			else if (at(cl, 0)->why[0]) /* replicas that did not
						       confirm it */
				snprintf(why, sizeof(why), "%s",
					 at(cl, 0)->why);
			else
				snprintf(why, sizeof(why),
					 "no answer within %d ms",
					 s->deadline_ms);
			give_up(cl, why);
			return 0;
		}
		next = end;
	}
	struct request *q = cl->piped ? awaiting(cl) : NULL;
	if (q != NULL) {
		/* From its sending, or the reply before it (WAITs in a
		 * pipeline run one after another). */
		uint64_t from = q->sent_ms > cl->last_reply_ms
					? q->sent_ms
					: cl->last_reply_ms;
		uint64_t end = from + (uint64_t)s->timeout_ms;
		if (now >= end) {
			snprintf(cl->why, sizeof(cl->why),
				 "no reply within %d ms", s->timeout_ms);
			lost_node(cl, now, 0);
			return 0;
		}
		if (end < next)
			next = end;
	}
	if (!cl->piped && cl->pause_until > now && cl->pause_until < next)
		next = cl->pause_until;
	return (int)(next - now);
}

/* Wait for the connection, the doorbell, the next time limit or (when a
 * request could go) the flusher's turn, at most max_ms, and handle what
 * came.  ppoll: the turn is kept to the microsecond, not rounded to a
 * millisecond each period. */
static void wait_io(struct client *cl, uint64_t now, int max_ms)
{
	struct pollfd p[2];
	int np = 0, bell = -1, ms = limits(cl, now);
	uint64_t us;

	if (ms > max_ms)
		ms = max_ms;
	us = (uint64_t)ms * 1000u;
	if (cl->piped) {
		p[np].fd = cl->c->fd;
		p[np].events = POLLIN;
		if (sdslen(cl->c->obuf) != 0)
			p[np].events |= POLLOUT;
		p[np++].revents = 0;
	}
	/* Room for another request: let the next add ring. */
	if (cl->n < (unsigned)cl->s->inflight && !cl->fetching) {
		atomic_store(&cl->armed, 1);
		/* After arming: a taker that found the bell unarmed is
		 * seen here (both are sequentially consistent). */
		if (due(cl) || asked(cl) || atomic_load(&cl->io_wanted)) {
			us = 0;
		} else if (cl->s->mode == REDIS_BEHIND) {
			uint64_t t = now_us();
			if (cl->next_flush_us - t < us)
				us = cl->next_flush_us - t; /* due() said > t */
		}
		bell = np;
		p[np].fd = cl->doorbell;
		p[np].events = POLLIN;
		p[np++].revents = 0;
	}
	struct timespec ts = {.tv_sec = (time_t)(us / 1000000u),
			      .tv_nsec = (long)(us % 1000000u) * 1000};
	int n = us > 0 ? ppoll(p, (nfds_t)np, &ts, NULL) : 0;
	atomic_store(&cl->armed, 0);
	if (n <= 0)
		return;
	if (bell >= 0 && (p[bell].revents & POLLIN)) {
		uint64_t v;
		ssize_t r = read(cl->doorbell, &v, sizeof(v));
		(void)r;
	}
	now = tally__redis_now_ms();
	if (cl->piped && (p[0].revents & POLLOUT)) {
		if (write_out(cl) != 0)
			lost_node(cl, now, 1);
	}
	if (cl->piped && (p[0].revents & (POLLIN | POLLERR | POLLHUP)))
		read_replies(cl, now);
}

/* One turn: take what waits into requests, send them, wait for replies. */
static void turn(struct client *cl, int max_ms)
{
	uint64_t now = tally__redis_now_ms();

	fill(cl, now);
	if (cl->n != 0 && ready(cl, now) != 0 && cl->hard == 2)
		give_up(cl, cl->why); /* refused for good: AUTH, SELECT */
	if (cl->piped)
		send_new(cl, now);
	pop_done(cl);
	wait_io(cl, now, max_ms);
	pop_done(cl);
}

/* --- the callers' side ------------------------------------------------------
 */

static int reached(struct client *cl, uint64_t target, const struct ask *a)
{
	return a != NULL ? atomic_load(&a->done)
			 : atomic_load(&cl->settled) >= target;
}

/* Wait until generation target is settled (or ask a answered).  In sync
 * mode the first waiter to find the engine free runs it meanwhile. */
static void wait_for(struct client *cl, uint64_t target, const struct ask *a)
{
	for (;;) {
		uint32_t seen = atomic_load(&cl->bell);

		if (reached(cl, target, a))
			return;
		if (cl->s->mode == REDIS_SYNC &&
		    pthread_mutex_trylock(&cl->io) == 0) {
			while (!reached(cl, target, a))
				turn(cl, 100);
			pthread_mutex_unlock(&cl->io);
			/* Whoever still waits needs a driver. */
			wake_all(cl);
			return;
		}
		atomic_fetch_add(&cl->sleepers, 1);
		futex_wait(&cl->bell, seen, 100);
		atomic_fetch_sub(&cl->sleepers, 1);
	}
}

/* A sync add: into the sum, then wait for the generation that takes it. */
static TALLY_NOINLINE int sync_add(struct client *cl, int64_t delta)
{
	uint64_t g0 = atomic_load(&cl->gen);
	atomic_fetch_add(&cl->acc, (uint64_t)delta);
	uint64_t g1 = atomic_load(&cl->gen);
	raise_want(cl, g1 + 1);
	ring_bell(cl);
	wait_for(cl, g1 + 1, NULL);
	return outcome(cl, g0 + 1, g1 + 1);
}

/* The modes that return at once first, with nothing to save: a
 * write-behind add is the local sum's, a tail call. */
int tally__redis_engine_add(struct client *cl, int64_t delta)
{
	int mode = cl->s->mode;

	if (mode == REDIS_BEHIND)
		return tally_add(cl->local, delta);
	if (mode == REDIS_ASYNC) {
		atomic_fetch_add(&cl->acc, (uint64_t)delta);
		ring_bell(cl);
		return 0;
	}
	return sync_add(cl, delta);
}

/* Queue an ask and wait for its answer. */
static int ask(struct client *cl, struct ask *a)
{
	pthread_mutex_lock(&cl->q);
	*cl->asks_tail = a;
	cl->asks_tail = &a->next;
	pthread_mutex_unlock(&cl->q);
	ring_bell(cl);
	wait_for(cl, 0, a);
	if (a->rc != 0)
		tally__explain_set(a->rc, "%s", a->why);
	return a->rc;
}

int tally__redis_engine_fetch(struct client *cl, int64_t delta, int64_t *after)
{
	struct ask a = {.kind = ASK_FETCH, .delta = delta};
	int rc = ask(cl, &a);

	if (rc == 0)
		*after = a.value;
	return rc;
}

/* The value: this client's key read in its pipeline (behind its own
 * requests), and on a cluster every other shard's beside it. */
int tally__redis_engine_get(struct client *cl, int64_t *value)
{
	struct ask a = {.kind = ASK_GET};
	int64_t rest = 0;
	int rc = ask(cl, &a);

	if (rc == 0 && cl->cluster != NULL && cl->s->shards > 1)
		rc = tally__redis_cluster_sum(
			cl,
			tally__redis_now_ms() + (uint64_t)cl->s->deadline_ms,
			&rest);
	if (rc == 0)
		*value = (int64_t)((uint64_t)a.value + (uint64_t)rest);
	return rc;
}

int tally__redis_engine_flush(struct client *cl)
{
	int rc = 0;

	/* sync: every add was applied (or failed) when it returned. */
	if (cl->s->mode != REDIS_SYNC) {
		uint64_t target = atomic_load(&cl->gen) + 1;
		raise_want(cl, target);
		ring_bell(cl);
		wait_for(cl, target, NULL);
	}
	pthread_mutex_lock(&cl->q);
	if (cl->forgot_n != 0 || cl->forgot_more) {
		rc = TALLY_EREMOTE;
		tally__explain_set(rc,
				   "%s%" PRIu64
				   " acknowledged request%s carrying %" PRId64
				   " lost by the server: %s",
				   cl->forgot_more ? "at least " : "",
				   cl->forgot_n, cl->forgot_n == 1 ? "" : "s",
				   (int64_t)cl->forgot_sum, cl->forgot_why);
		cl->forgot_n = cl->forgot_sum = 0;
		cl->forgot_more = 0;
	} else if (cl->unknown_n != 0 || cl->lost_n != 0) {
		rc = cl->unknown_n != 0 ? TALLY_EUNKNOWN : TALLY_EREMOTE;
		tally__explain_set(
			rc,
			"%" PRIu64 " request%s carrying %" PRId64
			" not applied, %" PRIu64 " carrying %" PRId64
			" of unknown outcome (applied once or not at all): %s",
			cl->lost_n, cl->lost_n == 1 ? "" : "s",
			(int64_t)cl->lost_sum, cl->unknown_n,
			(int64_t)cl->unknown_sum, cl->lost_why);
		cl->lost_n = cl->lost_sum = 0;
		cl->unknown_n = cl->unknown_sum = 0;
	}
	pthread_mutex_unlock(&cl->q);
	return rc;
}

/* --- the client's own thread (async, write-behind) ---------------------- */

static void *engine_thread(void *arg)
{
	struct client *cl = arg;

	/* io is taken a turn at a time: creating the counter talks to the
	 * server alone, holding it. */
	while (!atomic_load(&cl->stop)) {
		if (atomic_load(&cl->io_wanted)) {
			struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000};
			nanosleep(&ts, NULL);
			continue;
		}
		pthread_mutex_lock(&cl->io);
		turn(cl, 1000);
		pthread_mutex_unlock(&cl->io);
	}
	/* Stopping: what is still pending goes out, within the deadline. */
	raise_want(cl, atomic_load(&cl->gen) + 1);
	pthread_mutex_lock(&cl->io);
	while (cl->n != 0 || due(cl))
		turn(cl, 100);
	pthread_mutex_unlock(&cl->io);
	return NULL;
}

void tally__redis_take_io(struct client *cl)
{
	atomic_fetch_add(&cl->io_wanted, 1);
	ring_bell(cl); /* out of its poll */
	pthread_mutex_lock(&cl->io);
}

void tally__redis_give_io(struct client *cl)
{
	pthread_mutex_unlock(&cl->io);
	atomic_fetch_sub(&cl->io_wanted, 1);
}

static pthread_once_t at_exit_once = PTHREAD_ONCE_INIT;

static void flush_at_exit(void)
{
	tally__redis_flush_process();
}

static void register_at_exit(void)
{
	atexit(flush_at_exit);
}

int tally__redis_engine_start(struct client *cl)
{
	const struct redis_state *s = cl->s;

	cl->doorbell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cl->doorbell < 0)
		return -1;
	if (s->mode == REDIS_SYNC)
		return 0;
	if (s->mode == REDIS_BEHIND &&
	    tally_create(&cl->local, "percpu", 0, 0) != 0)
		goto fail;
	cl->next_flush_us = now_us() + (uint64_t)s->flush_ms * 1000u;
	/* The thread takes no signal: they are the program's. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&cl->thread, NULL, engine_thread, cl);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		goto fail;
	cl->has_thread = 1;
	pthread_once(&at_exit_once, register_at_exit);
	return 0;
fail:
	tally_destroy(cl->local);
	cl->local = NULL;
	close(cl->doorbell);
	cl->doorbell = -1;
	return -1;
}

void tally__redis_engine_stop(struct client *cl)
{
	if (cl->has_thread) {
		atomic_store(&cl->stop, 1);
		uint64_t one = 1;
		ssize_t n = write(cl->doorbell, &one, sizeof(one));
		(void)n;
		pthread_join(cl->thread, NULL);
		cl->has_thread = 0;
	}
	tally_destroy(cl->local);
	cl->local = NULL;
	if (cl->doorbell >= 0)
		close(cl->doorbell);
	cl->doorbell = -1;
}

#endif /* TALLY_HAVE_HIREDIS */
