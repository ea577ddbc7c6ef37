/* What the files of the redis backend share (backends/redis/): the counter's
 * configuration, one process's client of it, and the functions each file
 * offers the others.  Private to this folder. */
#ifndef TALLY_REDIS_INT_H
#define TALLY_REDIS_INT_H

#include "backend.h"

#ifdef TALLY_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Connections per process and counter (see bench/results/redis.md for the
 * measurements). */
#define DEFAULT_CONNECTIONS 1
/* Requests in flight on one connection: Redis runs one connection's
 * commands in order, so several may be on the wire at once. */
#define DEFAULT_INFLIGHT 4
#define MAX_INFLIGHT	 64
/* A cluster's seed nodes, and its shards of one counter, at most. */
#define MAX_SEEDS  8
#define MAX_SHARDS 1024

/*
 * The counter's configuration, parsed from the options (options.c).  It
 * holds nothing else, so it can sit in shared memory; each process makes
 * its own clients (a hiredis context is neither thread-safe nor shareable
 * across fork) on first use (conn.c).
 */
struct redis_state {
	char host[256];
	char key[256];
	/* From the URL's USER:PASSWORD@ (both "" without): AUTH, with the
	 * user only when there is one (an ACL user).  Never in a message. */
	char user[128];
	char password[256];
	int port, db, timeout_ms, deadline_ms, connections;
	int mode;     /* REDIS_SYNC, REDIS_ASYNC or REDIS_BEHIND */
	int flush_ms; /* REDIS_BEHIND: how often the flusher sends */
	int inflight; /* requests in flight per connection, 1..MAX_INFLIGHT */
	/* durability=replicas:N: every request is followed by WAIT N wait_ms,
	 * and counts as applied only when N replicas confirmed it. */
	int replicas, wait_ms;
	/* A Redis Cluster (cluster=): its seed nodes, "HOST:PORT" each, and
	 * the shards of the one logical counter, keys {KEY#0}..{KEY#N-1}
	 * (see spread).
	 * nseeds 0: one server (host, port). */
	int nseeds, shards;
	struct {
		char host[256];
		int port;
	} seeds[MAX_SEEDS];
	/* Shard i's key is {KEY#i} (spread[i] 0) or {KEY#i.J} (J): the first
	 * whose slot is in the i-th N-th of the slots, so that the shards
	 * spread evenly over primaries that split the slots evenly. */
	uint16_t spread[MAX_SHARDS];
	uint64_t id; /* tells this counter from an earlier one at its address */
};

/* What an add promises (options.c says it in words). */
enum redis_mode {
	REDIS_SYNC,   /* tally_add() returns once its add is applied */
	REDIS_ASYNC,  /* it returns at once; tally_flush() waits */
	REDIS_BEHIND, /* a local per-CPU sum, sent every flush_ms */
};

/* How long a client's record outlives its last request: far longer than any
 * deadline, so that a retry always finds it; then it goes by itself. */
#define RECORD_TTL_MS 3600000

/* A caller that wants a value back, on its stack: tally_add_fetch() (a
 * request of its own, the value just after it) or tally_get() (a GET in
 * the pipeline, behind every request sent before it). */
enum ask_kind { ASK_FETCH, ASK_GET };
struct ask {
	enum ask_kind kind;
	int64_t delta; /* ASK_FETCH */
	int64_t value; /* the answer */
	int rc;
	char why[320]; /* tally_explain(rc) when rc != 0 */
	_Atomic int done;
	struct ask *next;
};

/* One request in the ring of a client's engine (engine.c). */
enum req_kind { REQ_ADD, REQ_FETCH, REQ_GET };
/* The commands a request is sent as, whose replies come in this order:
 * an add (or fetch) is [ASKING] EVALSHA [WAIT], a read [ASKING] TYPE
 * [ASKING] GET (ASKING: on a connection to an -ASK target; WAIT: with
 * durability=replicas:N). */
enum req_step { STEP_ASKING, STEP_TYPE, STEP_GET, STEP_EVAL, STEP_WAIT };
#define MAX_STEPS 4
struct request {
	enum req_kind kind;
	uint64_t seq;	  /* 0: not numbered yet (numbered when sent) */
	uint64_t sum;	  /* the deltas it carries, modulo 2^64 */
	uint64_t cum;	  /* the client's sum up to it, once numbered */
	unsigned epoch;	  /* the client's identity it was numbered under */
	int resent;	  /* sent before, on an earlier connection */
	uint64_t gen;	  /* settles every generation of adds up to this */
	uint64_t born_ms; /* made: its deadline counts from here */
	uint64_t sent_ms; /* on the current connection since; 0: not on it */
	int ever_sent;	  /* may have reached the server */
	int done;	  /* answered (rc, why) */
	int rc;
	uint64_t unsent; /* REQ_GET: this process's adds not yet sent */
	/* Its commands on the current connection, and how many replies came
	 * (a read is TYPE then GET, so that a key of another type is named
	 * with its type).  applied: EVALSHA said so, and WAIT is to come. */
	unsigned char steps[MAX_STEPS];
	unsigned nsteps, got;
	int applied;
	char type[24];
	struct ask *ask; /* REQ_FETCH, REQ_GET */
	char why[320];
};

/* Generations lo..hi failed with rc (the engine's memory of recent
 * failures, for the adds that wait on them). */
struct failure {
	uint64_t lo, hi;
	int rc;
	char why[320];
};
#define FAILURES 16

/*
 * One process's client of one counter: one connection, its exactly-once
 * identity (a random id, a sequence per request) and the engine that keeps
 * up to `inflight` requests on it.  Adds touch only the first two lines
 * (acc, gen, armed; want, settled, bell), each of which the engine writes
 * once a request.
 */
struct client {
	/* What adds touch: the sum not yet in a request, and how many
	 * times the engine took it (generations). */
	_Alignas(64) _Atomic uint64_t acc;
	_Atomic uint64_t gen;
	_Atomic int armed; /* the engine waits on the doorbell: ring it */
	/* What waiters touch: the highest generation one waits for, every
	 * generation up to settled applied or failed, and a futex bumped at
	 * each settle. */
	_Alignas(64) _Atomic uint64_t want;
	_Atomic uint64_t settled;
	_Atomic uint64_t last_fail_hi; /* highest failed generation, or 0 */
	_Atomic uint32_t bell;
	_Atomic uint32_t sleepers;

	_Alignas(64) const struct redis_state *s;
	uint64_t state_id;
	unsigned lane; /* which of the process's connections */
	struct client *next;
	char id[33];	  /* random, hex */
	char record[360]; /* KEY.tally-id.ID */
	/* The key its adds go to: the counter's, or on a cluster its shard's
	 * ({KEY#i}, whose hash tag its record shares: both live in one slot,
	 * and move together). */
	char key[300];
	unsigned shard;
	/* The server it talks to: the counter's, or on a cluster the node
	 * that serves its key (cluster.c routes it). */
	char host[256];
	int port;
	struct cluster *cluster; /* NULL: one server */

	/* q guards the asks, the failures and the totals below. */
	pthread_mutex_t q;
	struct ask *asks, **asks_tail;
	struct failure fails[FAILURES];
	unsigned nfails; /* recorded so far; the last FAILURES are kept */
	/* async and write-behind: what no caller waits for and tally_flush()
	 * tells, since it last told: sums not applied, of unknown outcome. */
	uint64_t lost_sum, lost_n, unknown_sum, unknown_n;
	char lost_why[320];
	/* Any mode: requests the server acknowledged and then lost (a
	 * failover to a replica they had not reached, a restart without
	 * them), since a flush last told; forgot_more: more than these, of
	 * sums not known. */
	uint64_t forgot_sum, forgot_n;
	int forgot_more;
	char forgot_why[600];

	/* io: held by whoever runs the engine (a waiting add in sync mode,
	 * the client's thread otherwise), or talks to the server alone
	 * (creating the counter).  Everything below is the holder's. */
	pthread_mutex_t io;
	redisContext *c;
	int piped;    /* c is non-blocking, the add script loaded */
	char sha[48]; /* the add script's SHA1, once loaded */
	/* Why the last try failed ("cannot connect: Connection refused"),
	 * never holding the password; hard: 0 when trying again may work, 1
	 * when the server refused the connection or its name did not
	 * resolve (tried again only once the counter was made: a server
	 * that restarts), 2 when it refused the connection's AUTH or SELECT
	 * (never tried again).  creating: while tally_create() runs. */
	char why[200];
	int hard, creating;
	struct request ring[MAX_INFLIGHT];
	unsigned head, n;	/* the ring's oldest entry, and how many */
	uint64_t next_seq;	/* of the next request numbered */
	unsigned discard;	/* replies still to come that nobody wants */
	int fetching;		/* a REQ_FETCH in the ring: it goes alone */
	uint64_t pause_until;	/* no connect before (monotonic ms) */
	uint64_t backoff;	/* ms, doubling up to 500 */
	int doorbell;		/* eventfd: adds wake the engine's poll */
	tally *local;		/* REDIS_BEHIND: this process's sum */
	uint64_t sent_local;	/* of it, taken into requests so far */
	uint64_t next_flush_us; /* REDIS_BEHIND: the flusher's next turn */
	pthread_t thread;	/* REDIS_ASYNC, REDIS_BEHIND: the engine's */
	int has_thread;
	_Atomic int stop;
	/* Callers outside the engine's thread waiting to take io (creating
	 * the counter): the thread leaves it to them between turns. */
	_Atomic int io_wanted;
	/* On a cluster: the connection is to an -ASK target (ASKING before
	 * each command); the next one goes to ask_host:ask_port; the slot map
	 * is to be read again before the next connect; redirects in a row. */
	int asking, ask_next, stale;
	char ask_host[256];
	int ask_port;
	unsigned redirects;
	/* This identity's requests: the sum of those numbered so far, and of
	 * those the server acknowledged (up to acked_seq), and when the last
	 * came: what it lost, if it forgets them (its record holds the sum
	 * it has). */
	uint64_t cum_sent, cum_acked, acked_seq, last_ack_ms;
	/* Its identities so far; what a loss told already covered (up to
	 * base_seq, summing to base_cum); the last requests WAIT left
	 * unconfirmed (reported of unknown outcome: no loss to tell again). */
	unsigned epoch;
	uint64_t base_seq, base_cum;
	struct {
		uint64_t seq, sum;
		unsigned epoch;
	} unconfirmed[FAILURES];
	unsigned nunconfirmed;
	uint64_t last_reply_ms; /* the current connection's last reply */
};

/* Where a connection's failure is written: words, and how hard it is (see
 * struct client's `hard`). */
struct tally__redis_why {
	char *text;
	size_t size;
	int *hard;
};

/* options.c: s from the options, with the defaults for what they leave out;
 * *mode becomes "set", "keep" or "reset".  0 or TALLY_EOPTION. */
int tally__redis_parse(struct redis_state *s, const char *options,
		       const char **mode);

/* conn.c: this thread's client of s, made on first use (NULL when out of
 * memory); dropping this process's clients of s. */
struct client *tally__redis_client_of(const struct redis_state *s);
void tally__redis_forget(struct redis_state *s);

/* conn.c: monotonic milliseconds; how many forks this process is from the
 * one that made its first client. */
uint64_t tally__redis_now_ms(void);
unsigned tally__redis_forks(void);

/* conn.c: one command on cl's connection (connecting first, within
 * budget_ms for the connect); NULL when the server is unreachable or the
 * reply was lost (the connection is then dropped).  With cl->io held. */
redisReply *tally__redis_command(struct client *cl, int argc, const char **argv,
				 uint64_t budget_ms, int *sent);

/*
 * conn.c: run argv on cl's connection (connecting first) until a definitive
 * reply comes, retrying lost replies and transient errors until the
 * deadline (monotonic ms).  *sent becomes 1 once argv may have reached the
 * server.  Returns the reply, or NULL with *rc: TALLY_EREMOTE when nothing
 * was sent, else TALLY_EUNKNOWN.  Called with cl->io held.
 */
redisReply *tally__redis_until_deadline(struct client *cl, int argc,
					const char **argv, uint64_t deadline,
					int *sent, int *rc);

/* conn.c: explain rc (TALLY_EREMOTE, TALLY_EUNKNOWN or TALLY_EOPTION), the
 * answer of a call that gave up on the server, with cl->why; returns rc. */
int tally__redis_give_up(struct client *cl, int rc);

/* once.c: the exactly-once protocol.  A new client of s (its random id and
 * record key, its engine started), NULL when out of memory, without
 * randomness or a thread; freeing one (its engine flushed and stopped);
 * a new identity (after a request was given up or refused: its sequence
 * has a hole that later requests of the old identity can never pass). */
struct client *tally__redis_client_new(const struct redis_state *s,
				       unsigned lane);
void tally__redis_client_free(struct client *cl);
int tally__redis_new_identity(struct client *cl);
/* Set the key to initial (or join it, with mode "keep"), never over a key
 * that holds something else unless mode is "reset".  With cl->io held. */
int tally__redis_initialize(struct client *cl, int64_t initial,
			    const char *mode);
/* What a reply means: naming what key holds for tally_explain(), type
 * being TYPE's answer (wrong_type, which returns TALLY_EWRONGTYPE); any
 * other error, explained (remote_error, which returns TALLY_EREMOTE); a
 * decimal 64-bit integer (parse_i64: 0 or -1); an error the server answers
 * while it cannot serve yet, so that the command is sent again after a
 * pause (transient: LOADING, BUSY, TRYAGAIN, MASTERDOWN, CLUSTERDOWN). */
int tally__redis_wrong_type(const char *key, const char *type);
int tally__redis_remote_error(struct client *cl, const redisReply *r);
int tally__redis_parse_i64(const char *str, int64_t *value);
int tally__redis_transient(const redisReply *r);

/* scripts.c: the server scripts, scripts/add.lua and scripts/init.lua,
 * NUL-terminated. */
extern const char *const tally__redis_add_script;
extern const char *const tally__redis_init_script;

/* conn.c: a blocking connection to host:port, authenticated, its database
 * selected (within ms), or NULL with why; cl's to the server it talks to
 * (cl->host, cl->port): 0, or -1 with cl->why and cl->hard; dropping it. */
redisContext *tally__redis_open(const struct redis_state *s, const char *host,
				int port, int ms, struct tally__redis_why *w);
int tally__redis_connect(struct client *cl, int ms);
/* conn.c: one command on a blocking connection, never dying of SIGPIPE;
 * n replies to commands appended before (0, or -1 with none kept: the
 * connection failed). */
redisReply *tally__redis_blocking(redisContext *c, int argc, const char **argv);
int tally__redis_replies(redisContext *c, unsigned n, redisReply **out);
void tally__redis_disconnect(struct client *cl);
/* conn.c: every client of s in this process (n of them at most, into
 * out): the connections of one counter; and tally_flush() of every client
 * of every counter of this process, at its exit. */
unsigned tally__redis_clients_of(const struct redis_state *s,
				 struct client **out, unsigned n);
void tally__redis_flush_process(void);

/* engine.c: the client's engine -- its requests in flight, their replies,
 * resends, and the adds, reads and flushes of the three modes.  start:
 * 0, or -1 (errno) when its thread or doorbell could not be made; stop:
 * what is pending sent (within the deadline), the thread joined. */
int tally__redis_engine_start(struct client *cl);
void tally__redis_engine_stop(struct client *cl);
int tally__redis_engine_add(struct client *cl, int64_t delta);
/* Take cl->io from outside the engine (its thread, if any, gives it up at
 * once, between turns), and give it back. */
void tally__redis_take_io(struct client *cl);
void tally__redis_give_io(struct client *cl);
int tally__redis_engine_fetch(struct client *cl, int64_t delta, int64_t *after);
int tally__redis_engine_get(struct client *cl, int64_t *value);
int tally__redis_engine_flush(struct client *cl);

/* cluster.c: a Redis Cluster's side of a client.  attach: the shard, key
 * and slot map of a new client (0, or -1 out of memory); detach frees
 * them.  target: cl->host and cl->port from the map, read again first when
 * cl->stale, asking nodes until deadline (with cl->io held; 0, or -1 with
 * cl->why).  The shard key i
 * of s.  call: one command on key's node, blocking, following -MOVED and
 * -ASK, resent after a lost connection until the deadline (NULL with why:
 * the node and what went wrong).  sum: the other shards' values, read
 * pipelined per node (0, or a tally error code explained). */
int tally__redis_cluster_attach(struct client *cl);
void tally__redis_cluster_detach(struct client *cl);
int tally__redis_cluster_target(struct client *cl, uint64_t deadline);
void tally__redis_shard_key(const struct redis_state *s, unsigned i, char *out,
			    size_t size);
/* cluster.c: s->spread, from its key and shards (once, when the counter is
 * made). */
void tally__redis_spread(struct redis_state *s);
redisReply *tally__redis_cluster_call(struct client *cl, const char *key,
				      int argc, const char **argv,
				      uint64_t deadline, char *why,
				      size_t whylen);
int tally__redis_cluster_sum(struct client *cl, uint64_t deadline,
			     int64_t *sum);
/* cluster.c: whether the last call gave up because a node refused the
 * connection's AUTH for good. */
int tally__redis_cluster_refused(struct client *cl);
#endif /* TALLY_HAVE_HIREDIS */

#endif /* TALLY_REDIS_INT_H */
