/*
 * redis: one counter over a Redis Cluster (cluster=HOST:PORT;...,shards=N).
 *
 * The counter is N keys, {KEY#0} .. {KEY#N-1} (shard i's is {KEY#i.J}
 * with the first J, if any, that puts it in the i-th N-th of the slots:
 * N shards land on N primaries that split the slots evenly).  Each
 * client (one per process and connection) adds to one shard, picked from
 * its random id, and keeps its exactly-once record beside it ({KEY#i}
 * .tally-id.ID: the same tag, so the same slot): a request and its record
 * are one script on one node, and move together when the slot moves
 * (resharding, failover), so a request sent again after -MOVED finds its
 * number taken if it was applied.  tally_get() is the sum of every shard:
 * the client's own read in its pipeline (engine.c), the others read here,
 * pipelined per node.
 *
 * Routing: the slot map from CLUSTER SLOTS (slots.c parses it), read from
 * any node that answers (those of the last map, then the seeds), again
 * after a connection to a node failed.  -MOVED sends the client to the
 * node it names (the map is read again the next time something fails);
 * -ASK to its node for one connection, each command after ASKING.  Every
 * retry counts against the request's deadline, so a cluster that is down
 * ends in a bounded failure.
 */
#include "redis_int.h"
#include "slots.h"

#ifdef TALLY_HAVE_HIREDIS
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Blocking connections for reads across shards, one per node at most. */
#define MAX_CONNS 64

struct node_conn {
	char host[TALLY__REDIS_HOST_MAX + 1];
	int port;
	redisContext *c;
};

struct cluster {
	/* map: the last slot map read, if any; lock guards it (the engine
	 * and readers both route by it). */
	pthread_mutex_t lock;
	struct tally__redis_slotmap map;
	int have_map, stale;
	unsigned cursor; /* the next node asked for the map */
	/* rd guards the readers' connections. */
	pthread_mutex_t rd;
	struct node_conn conns[MAX_CONNS];
	unsigned nconns;
	unsigned *slots; /* each shard key's slot */
	/* The last tally__redis_cluster_call() gave up because a node refused
	 * the connection's AUTH for good (with rd held; read by its caller). */
	int refused;
};

/* This process's first shard, drawn once (0: not yet; bit 31 set once
 * drawn), and in which of its forks. */
static _Atomic unsigned shard_base, shard_forks;

void tally__redis_shard_key(const struct redis_state *s, unsigned i, char *out,
			    size_t size)
{
	unsigned j = i < MAX_SHARDS ? s->spread[i] : 0;

	if (j == 0)
		snprintf(out, size, "{%s#%u}", s->key, i);
	else
		snprintf(out, size, "{%s#%u.%u}", s->key, i, j);
}

void tally__redis_spread(struct redis_state *s)
{
	unsigned n = (unsigned)s->shards;
	char tag[300];

	for (unsigned i = 0; i < n; i++) {
		unsigned lo = i * TALLY__REDIS_NSLOTS / n,
			 hi = (i + 1) * TALLY__REDIS_NSLOTS / n;
		s->spread[i] = 0;
		/* A name lands in the range with odds 1/n: 64n tries miss
		 * it with odds e^-64.  (None found: 0, placed by chance.) */
		for (unsigned j = 0; j <= 64 * n && j < 65536; j++) {
			int len = j == 0 ? snprintf(tag, sizeof(tag), "%s#%u",
						    s->key, i)
					 : snprintf(tag, sizeof(tag),
						    "%s#%u.%u", s->key, i, j);
			unsigned slot = tally__redis_crc16(tag, (size_t)len) %
					TALLY__REDIS_NSLOTS;
			if (slot >= lo && slot < hi) {
				s->spread[i] = (uint16_t)j;
				break;
			}
		}
	}
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int tally__redis_cluster_attach(struct client *cl)
{
	const struct redis_state *s = cl->s;
	struct cluster *k = calloc(1, sizeof(*k));
	char key[300];

	if (k == NULL)
		return -1;
	k->slots = calloc((size_t)s->shards, sizeof(*k->slots));
	if (k->slots == NULL) {
		free(k);
		return -1;
	}
	for (unsigned i = 0; i < (unsigned)s->shards; i++) {
		tally__redis_shard_key(s, i, key, sizeof(key));
		k->slots[i] = tally__redis_key_slot(key, strlen(key));
	}
	pthread_mutex_init(&k->lock, NULL);
	pthread_mutex_init(&k->rd, NULL);
	/* Its shard: a random one for the process (from the first client's
	 * random id; a forked child draws again), then one each for its
	 * connections in turn.  Clients on many hosts spread evenly, with
	 * nothing to agree on, and a process with connections=N spreads its
	 * threads over N shards. */
	unsigned base = atomic_load(&shard_base);
	if (base == 0 || atomic_load(&shard_forks) != tally__redis_forks()) {
		char hex[8] = {cl->id[0], cl->id[1], cl->id[2], cl->id[3],
			       cl->id[4], cl->id[5], cl->id[6], '\0'};
		base = (unsigned)strtoul(hex, NULL, 16) | 1u << 31;
		atomic_store(&shard_base, base);
		atomic_store(&shard_forks, tally__redis_forks());
	}
	cl->shard = ((base & ~(1u << 31)) + cl->lane) % (unsigned)s->shards;
	tally__redis_shard_key(s, cl->shard, cl->key, sizeof(cl->key));
	cl->cluster = k;
	cl->stale = 1;
	return 0;
}

void tally__redis_cluster_detach(struct client *cl)
{
	struct cluster *k = cl->cluster;

	if (k == NULL)
		return;
	for (unsigned i = 0; i < k->nconns; i++)
		redisFree(k->conns[i].c);
	tally__redis_slotmap_free(&k->map);
	pthread_mutex_destroy(&k->lock);
	pthread_mutex_destroy(&k->rd);
	free(k->slots);
	free(k);
	cl->cluster = NULL;
}

/* The i-th node to ask for the map: those of the last map, then the
 * seeds (host and port into out).  With k->lock held. */
static int candidate(const struct redis_state *s, const struct cluster *k,
		     unsigned i, struct node_conn *out)
{
	unsigned known = k->have_map ? k->map.nnodes : 0;

	if (i < known) {
		snprintf(out->host, sizeof(out->host), "%s",
			 k->map.nodes[i].host);
		out->port = k->map.nodes[i].port;
	} else if (i < known + (unsigned)s->nseeds) {
		snprintf(out->host, sizeof(out->host), "%s",
			 s->seeds[i - known].host);
		out->port = s->seeds[i - known].port;
	} else {
		return -1;
	}
	return 0;
}

/* Read the slot map again from the first node that answers, starting
 * after the one asked last (a node that stopped is not asked first every
 * time), asking no more once the deadline (monotonic ms) has passed: 0, or
 * -1 with why. */
static int refresh(const struct redis_state *s, struct cluster *k,
		   uint64_t deadline, int *refused, char *why, size_t whylen)
{
	pthread_mutex_lock(&k->lock);
	unsigned n = (k->have_map ? k->map.nnodes : 0) + (unsigned)s->nseeds;
	unsigned start = k->cursor;
	pthread_mutex_unlock(&k->lock);

	/* Past the deadline no node is asked, and why keeps what the last
	 * one said. */
	if (why[0] == '\0')
		snprintf(why, whylen, "no node of the cluster answered");
	*refused = 0;
	for (unsigned t = 0; t < n; t++) {
		struct node_conn at;
		char text[200];
		int hard = 0;
		struct tally__redis_why w = {text, sizeof(text), &hard};

		uint64_t now = tally__redis_now_ms();
		if (now >= deadline)
			break;
		int ms = deadline > now && deadline - now <
						   (uint64_t)s->timeout_ms
				 ? (int)(deadline - now)
				 : s->timeout_ms;
		pthread_mutex_lock(&k->lock);
		int ok = candidate(s, k, (start + t) % n, &at) == 0;
		pthread_mutex_unlock(&k->lock);
		if (!ok)
			continue;
		redisContext *c =
			tally__redis_open(s, at.host, at.port, ms, &w);
		if (c != NULL && ms < s->timeout_ms) {
			struct timeval tv = {.tv_sec = ms / 1000,
					     .tv_usec = (ms % 1000) * 1000};
			redisSetTimeout(c, tv);
		}
		if (c == NULL) {
			snprintf(why, whylen, "node %s:%d: %s", at.host,
				 at.port, text);
			if (hard == 2) { /* every node has the same users */
				*refused = 1;
				break;
			}
			continue;
		}
		const char *argv[] = {"CLUSTER", "SLOTS"};
		redisReply *r = tally__redis_blocking(c, 2, argv);
		struct tally__redis_slotmap m;
		int rc = -1;
		if (r == NULL)
			snprintf(why, whylen,
				 "node %s:%d: no reply to CLUSTER SLOTS: %s",
				 at.host, at.port, c->errstr);
		else if (r->type == REDIS_REPLY_ERROR &&
			 strncmp(r->str, "NOAUTH", 6) == 0) {
			snprintf(
				why, whylen,
				"node %s:%d: %s (cluster= gives no password: cluster=redis://[USER]:PASSWORD@HOST:PORT;...)",
				at.host, at.port, r->str);
			*refused = 1;
		} else if (r->type == REDIS_REPLY_ERROR)
			snprintf(why, whylen,
				 "node %s:%d: %s (is it a cluster node?)",
				 at.host, at.port, r->str);
		else
			rc = tally__redis_slotmap_build(&m, r, at.host, text,
							sizeof(text));
		if (r != NULL && r->type != REDIS_REPLY_ERROR && rc != 0)
			snprintf(why, whylen, "node %s:%d: %s", at.host,
				 at.port, text);
		freeReplyObject(r);
		redisFree(c);
		if (*refused)
			break;
		if (rc != 0)
			continue;
		pthread_mutex_lock(&k->lock);
		tally__redis_slotmap_free(&k->map);
		k->map = m;
		k->have_map = 1;
		k->stale = 0;
		k->cursor = (start + t) % n;
		pthread_mutex_unlock(&k->lock);
		return 0;
	}
	pthread_mutex_lock(&k->lock);
	k->cursor = start + 1;
	pthread_mutex_unlock(&k->lock);
	return -1;
}

/* The primary that serves slot, by the map (read first, until deadline,
 * when there is none or it is stale): 0, or -1 with why. */
static int route(const struct redis_state *s, struct cluster *k, unsigned slot,
		 int force, uint64_t deadline, int *refused,
		 struct node_conn *out, char *why, size_t whylen)
{
	pthread_mutex_lock(&k->lock);
	int need = force || !k->have_map || k->stale;
	pthread_mutex_unlock(&k->lock);
	*refused = 0;
	if (need && refresh(s, k, deadline, refused, why, whylen) != 0) {
		pthread_mutex_lock(&k->lock);
		int have = k->have_map;
		pthread_mutex_unlock(&k->lock);
		if (!have)
			return -1;
	}
	pthread_mutex_lock(&k->lock);
	int i = tally__redis_slotmap_lookup(&k->map, slot, 0, NULL);
	if (i >= 0) {
		snprintf(out->host, sizeof(out->host), "%s",
			 k->map.nodes[i].host);
		out->port = k->map.nodes[i].port;
	} else {
		k->stale = 1;
		snprintf(
			why, whylen,
			"no node of the cluster serves slot %u (CLUSTER SLOTS leaves it out: the cluster is down or being changed)",
			slot);
	}
	pthread_mutex_unlock(&k->lock);
	return i >= 0 ? 0 : -1;
}

int tally__redis_cluster_target(struct client *cl, uint64_t deadline)
{
	struct cluster *k = cl->cluster;
	struct node_conn at;

	if (cl->ask_next) {
		/* One connection to the -ASK target, ASKING each command. */
		cl->ask_next = 0;
		cl->asking = 1;
		snprintf(cl->host, sizeof(cl->host), "%s", cl->ask_host);
		cl->port = cl->ask_port;
		return 0;
	}
	cl->asking = 0;
	if (cl->host[0] != '\0' && !cl->stale)
		return 0; /* as it was, or where -MOVED said */
	int refused;
	if (route(cl->s, k, k->slots[cl->shard], cl->stale, deadline, &refused,
		  &at, cl->why, sizeof(cl->why)) != 0) {
		cl->hard = refused ? 2 : 0; /* AUTH refused: for good */
		return -1;
	}
	cl->stale = 0;
	snprintf(cl->host, sizeof(cl->host), "%s", at.host);
	cl->port = at.port;
	return 0;
}

/* The readers' connection to host:port, made when there is none (when
 * MAX_CONNS are open: all closed first if may_close, else NULL).  With
 * k->rd held. */
static redisContext *conn_of(const struct redis_state *s, struct cluster *k,
			     const struct node_conn *at, int may_close,
			     int *refused, char *why, size_t whylen)
{
	*refused = 0;
	for (unsigned i = 0; i < k->nconns; i++)
		if (k->conns[i].port == at->port &&
		    strcmp(k->conns[i].host, at->host) == 0)
			return k->conns[i].c;
	if (k->nconns == MAX_CONNS && !may_close) {
		snprintf(why, whylen, "more than %d nodes", MAX_CONNS);
		return NULL;
	}
	if (k->nconns == MAX_CONNS) { /* a cluster this large: start over */
		for (unsigned i = 0; i < k->nconns; i++)
			redisFree(k->conns[i].c);
		k->nconns = 0;
	}
	char text[200];
	int hard = 0;
	struct tally__redis_why w = {text, sizeof(text), &hard};
	redisContext *c =
		tally__redis_open(s, at->host, at->port, s->timeout_ms, &w);
	if (c == NULL) {
		snprintf(why, whylen, "node %s:%d: %s", at->host, at->port,
			 text);
		*refused = hard == 2;
		return NULL;
	}
	struct node_conn *nc = &k->conns[k->nconns++];
	*nc = *at;
	nc->c = c;
	return c;
}

static void drop_conn(struct cluster *k, redisContext *c)
{
	for (unsigned i = 0; i < k->nconns; i++)
		if (k->conns[i].c == c) {
			redisFree(c);
			k->conns[i] = k->conns[--k->nconns];
			return;
		}
}

/* A redirect's node: its host, or (Redis 7's ":port") the one asked. */
static void redirect_to(const struct tally__redis_redirect *rd,
			const struct node_conn *asked, struct node_conn *out)
{
	snprintf(out->host, sizeof(out->host), "%s",
		 rd->host[0] != '\0' ? rd->host : asked->host);
	out->port = rd->port;
}

redisReply *tally__redis_cluster_call(struct client *cl, const char *key,
				      int argc, const char **argv,
				      uint64_t deadline, char *why,
				      size_t whylen)
{
	const struct redis_state *s = cl->s;
	struct cluster *k = cl->cluster;
	unsigned slot = tally__redis_key_slot(key, strlen(key));
	struct node_conn at, next = {.port = 0};
	int asking = 0, force = 0;
	unsigned redirects = 0;
	uint64_t pause = 20;

	int refused = 0;

	pthread_mutex_lock(&k->rd);
	for (;;) {
		redisReply *r = NULL;
		if (next.port != 0) {
			at = next;
			next.port = 0;
		} else {
			asking = 0;
			if (route(s, k, slot, force, deadline, &refused, &at,
				  why, whylen) != 0) {
				if (refused)
					break; /* AUTH refused */
				goto again;
			}
		}
		force = 0;
		redisContext *c = conn_of(s, k, &at, 1, &refused, why, whylen);
		if (c == NULL && refused)
			break; /* AUTH refused: again would be the same */
		if (c == NULL)
			goto lost;
		if (asking) {
			redisReply *two[2];
			const char *ask[] = {"ASKING"};
			redisAppendCommandArgv(c, 1, ask, NULL);
			redisAppendCommandArgv(c, argc, argv, NULL);
			if (tally__redis_replies(c, 2, two) == 0) {
				freeReplyObject(two[0]);
				r = two[1];
			}
		} else {
			r = tally__redis_blocking(c, argc, argv);
		}
		if (r == NULL) {
			snprintf(why, whylen, "node %s:%d: %s", at.host,
				 at.port,
				 c->err == REDIS_ERR_IO && errno == EAGAIN
					 ? "no reply in time"
					 : c->errstr);
			drop_conn(k, c);
			goto lost;
		}
		struct tally__redis_redirect rd;
		enum tally__redis_redirect_kind kind =
			r->type == REDIS_REPLY_ERROR
				? tally__redis_redirect_parse(r->str, r->len,
							      &rd)
				: TALLY__REDIS_NO_REDIRECT;
		if (kind != TALLY__REDIS_NO_REDIRECT) {
			snprintf(why, whylen, "node %s:%d: %s", at.host,
				 at.port, r->str);
			freeReplyObject(r);
			redirect_to(&rd, &at, &next);
			asking = kind == TALLY__REDIS_ASK;
			if (kind == TALLY__REDIS_MOVED) {
				pthread_mutex_lock(&k->lock);
				k->stale = 1;
				pthread_mutex_unlock(&k->lock);
			}
			/* Sent on at once, unless nodes send it round. */
			if (++redirects <= 2)
				continue;
			goto again;
		}
		if (tally__redis_transient(r)) {
			snprintf(why, whylen, "node %s:%d: %s", at.host,
				 at.port, r->str);
			freeReplyObject(r);
			goto again;
		}
		k->refused = 0;
		pthread_mutex_unlock(&k->rd);
		return r;
	lost:
		force = 1; /* the node may have failed over */
	again:;
		uint64_t now = tally__redis_now_ms();
		if (now >= deadline)
			break;
		sleep_ms(pause < deadline - now ? pause : deadline - now);
		if (pause < 500)
			pause *= 2;
	}
	k->refused = refused;
	pthread_mutex_unlock(&k->rd);
	return NULL;
}

/* A shard's value from its GET reply into *sum: 0, 1 when the reply asks
 * to be sent elsewhere or again (read it alone), or an error explained. */
static int add_shard(const char *key, const redisReply *r, uint64_t *sum)
{
	int64_t v = 0;

	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type == REDIS_REPLY_STRING) {
		if (tally__redis_parse_i64(r->str, &v) != 0) {
			tally__explain_set(
				TALLY_EWRONGTYPE,
				"redis key '%s' holds a string that is not a 64-bit integer",
				key);
			return TALLY_EWRONGTYPE;
		}
		*sum += (uint64_t)v;
		return 0;
	}
	if (r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "WRONGTYPE", 9) == 0) {
		tally__explain_set(
			TALLY_EWRONGTYPE,
			"redis key '%s' is not an integer counter: %s", key,
			r->str);
		return TALLY_EWRONGTYPE;
	}
	return 1;
}

/* The first pass of a sum: every other shard's GET, appended to its node's
 * connection, then the replies node by node; done[i] for those read.  A
 * node whose connection fails leaves its shards to the second pass. */
static int sum_pipelined(struct client *cl, unsigned char *done,
			 uint64_t deadline, uint64_t *sum)
{
	const struct redis_state *s = cl->s;
	struct cluster *k = cl->cluster;
	unsigned n = (unsigned)s->shards, *node = calloc(n, sizeof(*node));
	unsigned count[MAX_CONNS] = {0};
	char key[300], why[320] = "";
	int rc = 0;

	if (node == NULL)
		return TALLY_ENOMEM;
	int refused, failed = 0;

	pthread_mutex_lock(&k->rd);
	for (unsigned i = 0; i < n; i++) {
		struct node_conn at;
		node[i] = MAX_CONNS;
		/* A node that cannot be reached, or the deadline: the rest
		 * to the second pass, which tries each until the deadline
		 * once. */
		if (done[i] || failed || tally__redis_now_ms() >= deadline ||
		    route(s, k, k->slots[i], 0, deadline, &refused, &at, why,
			  sizeof(why)) != 0)
			continue;
		redisContext *c =
			conn_of(s, k, &at, 0, &refused, why, sizeof(why));
		if (c == NULL) {
			failed = 1;
			continue;
		}
		unsigned j = 0;
		while (k->conns[j].c != c)
			j++;
		tally__redis_shard_key(s, i, key, sizeof(key));
		const char *argv[] = {"GET", key};
		redisAppendCommandArgv(c, 2, argv, NULL);
		node[i] = j;
		count[j]++;
	}
	for (unsigned j = 0; j < k->nconns; j++) {
		if (count[j] == 0)
			continue;
		redisReply **r = calloc(count[j], sizeof(*r));
		if (r == NULL ||
		    tally__redis_replies(k->conns[j].c, count[j], r) != 0) {
			free(r);
			/* Its shards: the second pass. */
			redisFree(k->conns[j].c);
			k->conns[j].c = NULL;
			continue;
		}
		for (unsigned i = 0, m = 0; i < n && m < count[j]; i++) {
			if (node[i] != j)
				continue;
			tally__redis_shard_key(s, i, key, sizeof(key));
			int one = rc == 0 ? add_shard(key, r[m], sum) : 1;
			if (one == 0)
				done[i] = 1;
			else if (one < 0)
				rc = one;
			freeReplyObject(r[m++]);
		}
		free(r);
	}
	/* Connections that failed go (the list closes up). */
	for (unsigned j = k->nconns; j-- > 0;)
		if (k->conns[j].c == NULL)
			k->conns[j] = k->conns[--k->nconns];
	pthread_mutex_unlock(&k->rd);
	free(node);
	return rc;
}

int tally__redis_cluster_refused(struct client *cl)
{
	return cl->cluster != NULL && cl->cluster->refused;
}

int tally__redis_cluster_sum(struct client *cl, uint64_t deadline,
			     int64_t *value)
{
	unsigned n = (unsigned)cl->s->shards;
	unsigned char *done = calloc(n, 1);
	uint64_t sum = 0;
	char key[300], why[320] = "";

	if (done == NULL)
		return TALLY_ENOMEM;
	done[cl->shard] = 1; /* read in the client's own pipeline */
	int rc = sum_pipelined(cl, done, deadline, &sum);
	/* What the first pass could not read, one by one: redirects, lost
	 * connections, a map being read again. */
	for (unsigned i = 0; i < n && rc == 0; i++) {
		if (done[i])
			continue;
		tally__redis_shard_key(cl->s, i, key, sizeof(key));
		const char *argv[] = {"GET", key};
		redisReply *r = NULL;
		if (tally__redis_now_ms() >= deadline)
			snprintf(why, sizeof(why), "no answer within %d ms",
				 cl->s->deadline_ms);
		else
			r = tally__redis_cluster_call(
				cl, key, 2, argv, deadline, why, sizeof(why));
		if (r == NULL) {
			tally__explain_set(
				TALLY_EREMOTE,
				"redis cluster: reading shard '%s': %s", key,
				why);
			rc = TALLY_EREMOTE;
			break;
		}
		int one = add_shard(key, r, &sum);
		if (one == 1) {
			tally__explain_set(
				TALLY_EREMOTE,
				"redis cluster: reading shard '%s': %s", key,
				r->type == REDIS_REPLY_ERROR
					? r->str
					: "unexpected reply");
			rc = TALLY_EREMOTE;
		} else {
			rc = one;
		}
		freeReplyObject(r);
	}
	free(done);
	if (rc == 0)
		*value = (int64_t)sum;
	return rc;
}

#endif /* TALLY_HAVE_HIREDIS */
