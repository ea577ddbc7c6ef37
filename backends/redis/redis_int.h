/* What the files of the redis backend share (backends/redis/): the counter's
 * configuration, one process's client of it, and the functions each file
 * offers the others.  Private to this folder. */
#ifndef TALLY_REDIS_INT_H
#define TALLY_REDIS_INT_H

#include "backend.h"

#ifdef TALLY_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdint.h>

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
	uint64_t id; /* tells this counter from an earlier one at its address */
};

/* Connections per process and counter, each combining the adds of the
 * threads that use it (see bench/results/redis.md for the measurements). */
#define DEFAULT_CONNECTIONS 1

/* How long a client's record outlives its last request: far longer than any
 * deadline, so that a retry always finds it; then it goes by itself. */
#define RECORD_TTL_MS 3600000

/* One add waiting for a request to carry it (on its caller's stack). */
struct pending {
	pthread_cond_t cv; /* its caller waits here, with q held */
	int64_t delta;
	int64_t after; /* the value just after this delta */
	int rc;
	int done;
	char why[320]; /* tally_explain(rc) when rc != 0 */
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
	char sha[48];	  /* the add script's SHA1, once loaded */
	char id[33];	  /* random, hex */
	char record[300]; /* KEY.tally-id.ID */
	/* Why the last try failed ("cannot connect: Connection refused"),
	 * never holding the password; hard: 0 when trying again may work, 1
	 * when the server refused the connection or its name did not
	 * resolve (tried again only once the counter was made: a server
	 * that restarts), 2 when it refused the connection's AUTH or SELECT
	 * (never tried again).  creating: while tally_create() runs. */
	char why[200];
	int hard, creating;
	uint64_t seq;	     /* of the last request sent */
	unsigned last_batch; /* adds the last request carried */
	struct client *next;
};

/* options.c: s from the options, with the defaults for what they leave out;
 * *mode becomes "set", "keep" or "reset".  0 or TALLY_EOPTION. */
int tally__redis_parse(struct redis_state *s, const char *options,
		       const char **mode);

/* conn.c: this thread's client of s, made on first use (NULL when out of
 * memory); dropping this process's clients of s. */
struct client *tally__redis_client_of(const struct redis_state *s);
void tally__redis_forget(struct redis_state *s);

/* conn.c: monotonic milliseconds. */
uint64_t tally__redis_now_ms(void);

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
 * record key), NULL when out of memory or without randomness. */
struct client *tally__redis_client_new(const struct redis_state *s,
				       unsigned lane);
/* Apply sum as request number seq, exactly once, and store the value just
 * after it in *after.  Called with cl->io held. */
int tally__redis_request(struct client *cl, uint64_t seq, int64_t sum,
			 int64_t *after);
/* Set the key to initial (or join it, with mode "keep"), never over a key
 * that holds something else unless mode is "reset".  With cl->io held. */
int tally__redis_initialize(struct client *cl, int64_t initial,
			    const char *mode);
/* What a reply means: an error of INCRBY or GET that says the key is not a
 * counter (type_error); naming what the key holds for tally_explain(), type
 * being TYPE's answer or NULL to ask the server (wrong_type, which returns
 * TALLY_EWRONGTYPE); any other error, explained (remote_error, which
 * returns TALLY_EREMOTE); a decimal 64-bit integer (parse_i64: 0 or -1). */
int tally__redis_type_error(const redisReply *r);
int tally__redis_wrong_type(struct client *cl, const char *type);
int tally__redis_remote_error(struct client *cl, const redisReply *r);
int tally__redis_parse_i64(const char *str, int64_t *value);

/* scripts.c: the server scripts, scripts/add.lua and scripts/init.lua,
 * NUL-terminated. */
extern const char *const tally__redis_add_script;
extern const char *const tally__redis_init_script;

/* combine.c: the backend's add_fetch (and add): concurrent adds of one
 * process share a request. */
int tally__redis_add_fetch(void *state, int64_t delta, int64_t *after);
#endif /* TALLY_HAVE_HIREDIS */

#endif /* TALLY_REDIS_INT_H */
