/* redis: the counter lives in a Redis server, so processes on different
 * machines share it -- the lesson's Manager.  Each add is applied exactly
 * once by a Lua script, and concurrent adds of one process share a request. */
#include "backend.h"

#ifdef TALLY_HAVE_HIREDIS
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/*
 * Options, after "redis:", comma-separated:
 *   url=redis://HOST[:PORT][/DB]   default redis://127.0.0.1:6379/0
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
 * The state holds only this configuration, so it can sit in shared memory;
 * each process makes its own client (a hiredis context is neither
 * thread-safe nor shareable across fork) on first use.
 */
struct redis_state {
	char host[256];
	char key[256];
	int port, db, timeout_ms, deadline_ms, connections;
	uint64_t id; /* tells this counter from an earlier one at its address */
};

/* Connections per process and counter, each combining the adds of the
 * threads that use it (see bench/results/redis.md for the measurements). */
#define DEFAULT_CONNECTIONS 1

/* How long a client's record outlives its last request: far longer than any
 * deadline, so that a retry always finds it; then it goes by itself. */
#define RECORD_TTL_MS 3600000

/*
 * KEYS[1] counter, KEYS[2] this client's record; ARGV[1] sequence number,
 * ARGV[2] delta, ARGV[3] record TTL in ms, ARGV[4] minus the delta (modulo
 * 2^64).  Answers {0, value} when it applied the delta, {1, value} for a
 * request already applied (value: as recorded), or INCRBY's error (wrong
 * type, not an integer).
 *
 * Two server calls on the common path: INCRBY, then SET ... GET writes the
 * new record and reads the old one.  Every attempt checks (a first attempt
 * delayed in the network may arrive after its resend); when the old record
 * says this request already ran, the delta is taken back and the record
 * restored, all in the same atomic step.  A server older than 6.2 refuses
 * SET ... GET: then GET and SET.
 *
 * INCRBY refuses to overflow, where every tally backend wraps modulo 2^64:
 * that path adds in 32-bit halves (Lua 5.1 numbers are doubles, exact below
 * 2^53).
 */
static const char ADD_SCRIPT[] =
	"local function wrap(d)\n"
	"  local B = 4294967296\n"
	"  local function neg(h, l)\n"
	"    l = B - l\n"
	"    if l == B then return (B - h) % B, 0 end\n"
	"    return B - 1 - h, l\n"
	"  end\n"
	"  local function parse(s)\n"
	"    local h, l, i = 0, 0, 1\n"
	"    if string.sub(s, 1, 1) == '-' then i = 2 end\n"
	"    for j = i, #s do\n"
	"      l = l * 10 + string.byte(s, j) - 48\n"
	"      h = (h * 10 + math.floor(l / B)) % B\n"
	"      l = l % B\n"
	"    end\n"
	"    if i == 2 then return neg(h, l) end\n"
	"    return h, l\n"
	"  end\n"
	"  local ah, al = parse(redis.call('GET', KEYS[1]))\n"
	"  local bh, bl = parse(d)\n"
	"  local l = al + bl\n"
	"  local h = (ah + bh + math.floor(l / B)) % B\n"
	"  l = l % B\n"
	"  local sign = ''\n"
	"  if h >= B / 2 then sign = '-'; h, l = neg(h, l) end\n"
	"  local out = ''\n"
	"  repeat\n"
	"    local x = (h % 10) * B + l\n"
	"    h = math.floor(h / 10)\n"
	"    local d = x % 10\n"
	"    l = (x - d) / 10\n"
	"    out = string.char(48 + d) .. out\n"
	"  until h == 0 and l == 0\n"
	"  redis.call('SET', KEYS[1], sign .. out)\n"
	"  return sign .. out\n"
	"end\n"
	"local function add(d)\n"
	"  local r = redis.pcall('INCRBY', KEYS[1], d)\n"
	"  if type(r) == 'table' and r.err then\n"
	"    if string.find(r.err, 'overflow', 1, true) then return wrap(d) "
	"end\n"
	"    return nil, r\n"
	"  end\n"
	"  if r > -9007199254740992 and r < 9007199254740992 then\n"
	"    return string.format('%d', r)\n"
	"  end\n"
	"  return redis.call('GET', KEYS[1])\n"
	"end\n"
	"local v, err = add(ARGV[2])\n"
	"if not v then return err end\n"
	"local rec = ARGV[1] .. ' ' .. v\n"
	"local old = redis.pcall('SET', KEYS[2], rec, 'PX', ARGV[3], 'GET')\n"
	"if type(old) == 'table' and old.err then\n"
	"  old = redis.call('GET', KEYS[2])\n"
	"  redis.call('SET', KEYS[2], rec, 'PX', ARGV[3])\n"
	"end\n"
	"if old then\n"
	"  local sp = string.find(old, ' ', 1, true)\n"
	"  if tonumber(string.sub(old, 1, sp - 1)) >= tonumber(ARGV[1]) then\n"
	"    add(ARGV[4])\n"
	"    redis.call('SET', KEYS[2], old, 'PX', ARGV[3])\n"
	"    return {1, string.sub(old, sp + 1)}\n"
	"  end\n"
	"end\n"
	"return {0, v}\n";

/*
 * KEYS[1] counter; ARGV[1] initial value, ARGV[2] "set", "keep" or "reset".
 * Answers {1, value} when the counter is ready (set, or joined as it was), or
 * {0, type} when the key holds something else ("string": not an integer)
 * and was left alone.
 */
static const char INIT_SCRIPT[] =
	"local t = redis.call('TYPE', KEYS[1]).ok\n"
	"if t ~= 'none' and ARGV[2] ~= 'reset' then\n"
	"  if t ~= 'string' then return {0, t} end\n"
	"  local v = redis.call('GET', KEYS[1])\n"
	"  if not string.match(v, '^-?%d+$') then return {0, t} end\n"
	"  local r = redis.pcall('INCRBY', KEYS[1], 0)\n"
	"  if type(r) == 'table' and r.err then return {0, t} end\n"
	"  if ARGV[2] == 'keep' then return {1, v} end\n"
	"end\n"
	"redis.call('SET', KEYS[1], ARGV[1])\n"
	"return {1, ARGV[1]}\n";

/* One add waiting for a request to carry it (on its caller's stack). */
struct pending {
	pthread_cond_t cv; /* its caller waits here, with q held */
	int64_t delta;
	int64_t after; /* the value just after this delta */
	int rc;
	int done;
	struct pending *next;
};

/*
 * One process's client of one counter.  `q` guards the queue and the
 * combining flag; `io` the connection, held by whoever talks to the server.
 */
struct client {
	const struct redis_state *s;
	uint64_t state_id;
	unsigned lane; /* which of the process's connections */
	pthread_mutex_t q;
	struct pending *head, **tail;
	int combining;
	pthread_mutex_t io;
	redisContext *c;
	char sha[48];	     /* ADD_SCRIPT's SHA1, once loaded */
	char id[33];	     /* random, hex */
	char record[300];    /* KEY.tally-id.ID */
	uint64_t seq;	     /* of the last request sent */
	unsigned last_batch; /* adds the last request carried */
	struct client *next;
};

/* This process's clients; a forked child starts with none (atfork). */
static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct client *clients;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t next_id = 1;

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

static uint64_t now_ms(void)
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

/* 128 random bits in hex: ids of clients on other machines never meet. */
static int random_id(char out[33])
{
	unsigned char b[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = -1;

	if (fd >= 0) {
		do
			n = read(fd, b, sizeof(b));
		while (n < 0 && errno == EINTR);
		close(fd);
	}
	if (n != (ssize_t)sizeof(b))
		return -1;
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

static struct client *client_new(const struct redis_state *s, unsigned lane)
{
	struct client *cl = calloc(1, sizeof(*cl));

	if (cl == NULL)
		return NULL;
	if (random_id(cl->id) != 0) {
		free(cl);
		return NULL;
	}
	cl->s = s;
	cl->state_id = s->id;
	cl->lane = lane;
	cl->tail = &cl->head;
	snprintf(cl->record, sizeof(cl->record), "%s.tally-id.%s", s->key,
		 cl->id);
	pthread_mutex_init(&cl->q, NULL);
	pthread_mutex_init(&cl->io, NULL);
	return cl;
}

/* This thread's client of s (one of s->connections per process, taken in
 * turn by threads), made on first use; NULL when out of memory. */
static struct client *client_of(const struct redis_state *s)
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
		cl = client_new(s, lane);
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

/* One command on cl's connection (connecting first, under io, within
 * budget_ms for the connect); NULL when the server is unreachable or the
 * reply was lost (the connection is then dropped). */
static redisReply *command(struct client *cl, int argc, const char **argv,
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

/*
 * Run argv until a definitive reply comes, retrying lost replies and
 * transient errors until the deadline (monotonic ms).  *sent becomes 1 once
 * argv may have reached the server.  Returns the reply, or NULL with *rc:
 * TALLY_EREMOTE when nothing was sent, else TALLY_EUNKNOWN.
 */
static redisReply *until_deadline(struct client *cl, int argc,
				  const char **argv, uint64_t deadline,
				  int *sent, int *rc)
{
	uint64_t pause = 20;

	for (;;) {
		uint64_t now = now_ms();
		int s;
		redisReply *r =
			command(cl, argc, argv,
				deadline > now ? deadline - now : 1, &s);
		*sent |= s;
		if (r != NULL && !transient(r))
			return r;
		freeReplyObject(r);
		now = now_ms();
		if (now >= deadline) {
			*rc = *sent ? TALLY_EUNKNOWN : TALLY_EREMOTE;
			return NULL;
		}
		sleep_ms(pause < deadline - now ? pause : deadline - now);
		if (pause < 500)
			pause *= 2;
	}
}

/* Name what the key holds, for tally_explain(): type is TYPE's answer, or
 * NULL to ask the server. */
static int wrong_type(struct client *cl, const char *type)
{
	const char *key = cl->s->key;

	if (type == NULL) {
		const char *argv[] = {"TYPE", key};
		int sent;
		redisReply *r = command(cl, 2, argv, cl->s->timeout_ms, &sent);
		int known = r != NULL && r->type == REDIS_REPLY_STATUS;
		if (known && strcmp(r->str, "string") != 0)
			tally__explain_set(TALLY_EWRONGTYPE,
					   "redis key '%s' holds a %s, not an "
					   "integer counter",
					   key, r->str);
		else
			type = "string";
		freeReplyObject(r);
		if (type == NULL)
			return TALLY_EWRONGTYPE;
	}
	if (strcmp(type, "string") == 0)
		tally__explain_set(TALLY_EWRONGTYPE,
				   "redis key '%s' holds a string that is not "
				   "a 64-bit integer",
				   key);
	else
		tally__explain_set(TALLY_EWRONGTYPE,
				   "redis key '%s' holds a %s, not an integer "
				   "counter",
				   key, type);
	return TALLY_EWRONGTYPE;
}

static int parse_i64(const char *str, int64_t *value)
{
	char *end;

	errno = 0;
	long long v = strtoll(str, &end, 10);
	if (errno || *end != '\0' || end == str)
		return -1;
	*value = v;
	return 0;
}

/* A reply that is an error of INCRBY or GET: the key is not a counter. */
static int type_error(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	       (strncmp(r->str, "WRONGTYPE", 9) == 0 ||
		strstr(r->str, "not an integer") != NULL);
}

static int remote_error(const redisReply *r)
{
	tally__explain_set(TALLY_EREMOTE, "redis server: %s",
			   r->type == REDIS_REPLY_ERROR ? r->str
							: "unexpected reply");
	return TALLY_EREMOTE;
}

/* Load ADD_SCRIPT (again after a NOSCRIPT: the server restarted). */
static int load_script(struct client *cl, uint64_t deadline)
{
	const char *argv[] = {"SCRIPT", "LOAD", ADD_SCRIPT};
	int sent = 0, rc = 0;
	redisReply *r = until_deadline(cl, 3, argv, deadline, &sent, &rc);

	if (r == NULL)
		return -1;
	rc = r->type == REDIS_REPLY_STRING && r->len < sizeof(cl->sha) ? 0 : -1;
	if (rc == 0)
		memcpy(cl->sha, r->str, r->len + 1);
	else
		remote_error(r);
	freeReplyObject(r);
	return rc;
}

/*
 * Apply sum as request number seq, exactly once, and store the value just
 * after it in *after.  Called with io held.
 */
static int request(struct client *cl, uint64_t seq, int64_t sum, int64_t *after)
{
	uint64_t deadline = now_ms() + (uint64_t)cl->s->deadline_ms;
	char seqs[24], d[24], neg[24], ttl[24];
	int sent = 0, rc = 0;

	snprintf(seqs, sizeof(seqs), "%llu", (unsigned long long)seq);
	snprintf(d, sizeof(d), "%lld", (long long)sum);
	snprintf(neg, sizeof(neg), "%lld",
		 (long long)(int64_t)(0 - (uint64_t)sum));
	snprintf(ttl, sizeof(ttl), "%d",
		 RECORD_TTL_MS > 2 * cl->s->deadline_ms
			 ? RECORD_TTL_MS
			 : 2 * cl->s->deadline_ms);
	for (int tries = 0; tries < 3; tries++) {
		/* Once the request may have reached the server, a failure to
		 * hear back is an unknown outcome, never a plain failure. */
		if (cl->sha[0] == '\0' && load_script(cl, deadline) != 0)
			return sent ? TALLY_EUNKNOWN : TALLY_EREMOTE;
		const char *argv[] = {"EVALSHA",  cl->sha,    "2",
				      cl->s->key, cl->record, seqs,
				      d,	  ttl,	      neg};
		redisReply *r =
			until_deadline(cl, 9, argv, deadline, &sent, &rc);
		if (r == NULL)
			return rc;
		if (r->type == REDIS_REPLY_ERROR &&
		    strncmp(r->str, "NOSCRIPT", 8) == 0) {
			cl->sha[0] = '\0'; /* not run: load and send again */
			freeReplyObject(r);
			continue;
		}
		if (type_error(r)) {
			freeReplyObject(r);
			return wrong_type(cl, NULL);
		}
		rc = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
				     r->element[1]->type ==
					     REDIS_REPLY_STRING &&
				     parse_i64(r->element[1]->str, after) == 0
			     ? 0
			     : remote_error(r);
		freeReplyObject(r);
		return rc;
	}
	return sent ? TALLY_EUNKNOWN : TALLY_EREMOTE;
}

/* Send everything queued as one request, and hand each add its answer.
 * Called by the combining thread with q held; returns with q held. */
static void combine(struct client *cl, const struct pending *self)
{
	struct pending *batch = cl->head;
	uint64_t sum = 0;
	int64_t after = 0;

	/* Alone, right after a request that carried several adds: their
	 * callers were just woken and are about to add again.  Let them
	 * (one yield) rather than send this add alone and theirs after. */
	if (batch->next == NULL && cl->last_batch > 1) {
		pthread_mutex_unlock(&cl->q);
		sched_yield();
		pthread_mutex_lock(&cl->q);
		batch = cl->head;
	}
	cl->head = NULL;
	cl->tail = &cl->head;
	pthread_mutex_unlock(&cl->q);
	unsigned n = 0;
	for (struct pending *p = batch; p != NULL; p = p->next, n++)
		sum += (uint64_t)p->delta; /* wraps as the counter does */
	cl->last_batch = n;
	pthread_mutex_lock(&cl->io);
	int rc = request(cl, ++cl->seq, (int64_t)sum, &after);
	pthread_mutex_unlock(&cl->io);
	/* The request added the batch in order: each add's own value is the
	 * value before it plus the deltas up to and including its own. */
	uint64_t v = (uint64_t)after - sum;
	pthread_mutex_lock(&cl->q);
	for (struct pending *p = batch, *next; p != NULL; p = next) {
		next = p->next;
		v += (uint64_t)p->delta;
		p->after = (int64_t)v;
		p->rc = rc;
		p->done = 1;
		/* Only its own caller wakes: no herd of waiters that are not
		 * done yet.  p stays valid: its caller needs q to return. */
		if (p != self)
			pthread_cond_signal(&p->cv);
	}
}

static int redis_add_fetch(void *state, int64_t delta, int64_t *after)
{
	struct client *cl = client_of(state);
	struct pending me = {.delta = delta};

	if (cl == NULL)
		return TALLY_ENOMEM;
	pthread_cond_init(&me.cv, NULL);
	pthread_mutex_lock(&cl->q);
	*cl->tail = &me;
	cl->tail = &me.next;
	while (!me.done) {
		if (!cl->combining) {
			/* The first pass carries this add; a few more carry
			 * what arrived meanwhile, sparing waiters a wake-up
			 * to send it themselves. */
			cl->combining = 1;
			for (int pass = 0; pass < 4 && cl->head != NULL; pass++)
				combine(cl, &me);
			cl->combining = 0;
			/* The next waiter in line sends what is left. */
			if (cl->head != NULL)
				pthread_cond_signal(&cl->head->cv);
		} else {
			pthread_cond_wait(&me.cv, &cl->q);
		}
	}
	pthread_mutex_unlock(&cl->q);
	pthread_cond_destroy(&me.cv);
	if (me.rc == 0)
		*after = me.after;
	return me.rc;
}

static int redis_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k; /* no lock: its own deadlines bound it */
	int64_t after;

	return redis_add_fetch(state, delta, &after);
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
			"invalid backend option: keep and reset "
			"contradict each other (keep joins the key's "
			"value, reset overwrites it)");
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

static void forget(struct redis_state *s);

/* Set the key to initial (or join it, with keep), never over a key that
 * holds something else unless mode is "reset". */
static int initialize(struct client *cl, int64_t initial, const char *mode)
{
	char value[24];
	int rc = 0;

	snprintf(value, sizeof(value), "%lld", (long long)initial);
	const char *argv[] = {"EVAL",	  INIT_SCRIPT, "1",
			      cl->s->key, value,       mode};
	int sent = 0;
	redisReply *r = until_deadline(cl, 6, argv,
				       now_ms() + (uint64_t)cl->s->deadline_ms,
				       &sent, &rc);
	if (r == NULL) {
		tally__explain_set(
			TALLY_EREMOTE,
			"redis server %s:%d is unreachable: no answer "
			"within %d ms",
			cl->s->host, cl->s->port, cl->s->deadline_ms);
		return TALLY_EREMOTE;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[1]->type == REDIS_REPLY_STRING)
		rc = r->element[0]->integer == 1
			     ? 0
			     : wrong_type(cl, r->element[1]->str);
	else
		rc = remote_error(r);
	freeReplyObject(r);
	return rc;
}

static int parse_with_defaults(struct redis_state *s, const char *options,
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

/* The options alone, for tally_backend_check(): no connection is made. */
static int redis_check(const char *options)
{
	struct redis_state s;
	const char *mode = "set";

	return parse_with_defaults(&s, options, &mode);
}

static int redis_init(void *state, int64_t initial, unsigned flags,
		      const char *options)
{
	struct redis_state *s = state;
	const char *mode = "set";
	int rc;

	(void)flags; /* the server is shared already; clients are per
			process and made on first use */
	rc = parse_with_defaults(s, options, &mode);
	if (rc != 0)
		return rc;
	s->id = ((uint64_t)getpid() << 32) ^ atomic_fetch_add(&next_id, 1);
	/* Creating never waits out a whole deadline for a server that is not
	 * there: one attempt per timeout, as a plain connect would. */
	int deadline = s->deadline_ms;
	s->deadline_ms = s->timeout_ms;
	struct client *cl = client_of(s);
	if (cl == NULL)
		return TALLY_ENOMEM;
	pthread_mutex_lock(&cl->io);
	rc = initialize(cl, initial, mode);
	pthread_mutex_unlock(&cl->io);
	s->deadline_ms = deadline;
	if (rc != 0)
		forget(s);
	return rc;
}

static int redis_get(void *state, int64_t *value)
{
	struct redis_state *s = state;
	struct client *cl = client_of(s);
	const char *argv[] = {"GET", s->key};
	int rc = 0, sent = 0;

	if (cl == NULL)
		return TALLY_ENOMEM;
	pthread_mutex_lock(&cl->io);
	redisReply *r = until_deadline(
		cl, 2, argv, now_ms() + (uint64_t)s->deadline_ms, &sent, &rc);
	if (r == NULL) {
		tally__explain_set(
			TALLY_EREMOTE,
			"redis server %s:%d is unreachable: no answer within "
			"%d ms",
			s->host, s->port, s->deadline_ms);
		rc = TALLY_EREMOTE; /* a read changes nothing: not unknown */
	} else if (r->type == REDIS_REPLY_NIL) {
		*value = 0; /* as INCRBY treats a missing key */
	} else if (type_error(r) || (r->type == REDIS_REPLY_STRING &&
				     parse_i64(r->str, value))) {
		rc = wrong_type(cl, r->type == REDIS_REPLY_STRING ? "string"
								  : NULL);
	} else if (r->type != REDIS_REPLY_STRING) {
		rc = remote_error(r);
	}
	freeReplyObject(r);
	pthread_mutex_unlock(&cl->io);
	return rc;
}

/* Drop this process's clients of s. */
static void forget(struct redis_state *s)
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

/* The key stays on the server: it is the shared counter.  Only this
 * process's client of it goes; its record expires by itself. */
static void redis_destroy(void *state)
{
	forget(state);
}
#endif /* TALLY_HAVE_HIREDIS */

const struct tally_backend tally_backend_redis = {
	.name = "redis",
	.summary = "Redis through hiredis: exactly-once adds, shared across "
		   "machines",
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
#endif
};
