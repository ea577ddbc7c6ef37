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
 *   inflight=K                     requests on the wire at once per
 *                                  connection, 1 to 64, default
 *                                  DEFAULT_INFLIGHT
 *   mode=sync|async                sync (default): an add returns once it
 *                                  is applied; async: at once, and
 *                                  tally_flush() waits for it
 *   flush_ms=N                     write-behind: adds go to a per-CPU sum
 *                                  in this process, which its flusher
 *                                  sends every N ms (1 to 3600000); not
 *                                  with mode=
 *   cluster=[redis://[USER][:PASSWORD]@]HOST:PORT[;HOST:PORT...]
 *                                  a Redis Cluster, through these seed
 *                                  nodes (up to MAX_SEEDS; [V6ADDR]:PORT
 *                                  for an IPv6 address), each node given
 *                                  the credentials as url= would; not
 *                                  with url=
 *   shards=N                       on a cluster, the counter is N keys,
 *                                  {KEY#0}..{KEY#N-1} (or {KEY#i.J}, one
 *                                  in each N-th of the slots), spread
 *                                  over the primaries; 1 to MAX_SHARDS,
 *                                  default 1
 *   durability=primary|replicas:N  primary (default): a request is applied
 *                                  once its server answers; replicas:N
 *                                  (1 to 16): once N replicas confirmed it
 *                                  (WAIT), else the add is reported
 *   confirm_ms=N                   how long WAIT waits for them, less than
 *                                  timeout_ms; default half of it
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
 * sequence number that grows by one per request.  A request carries the sum
 * of the adds pending when it was made, never one add; up to `inflight` are
 * on one connection at once (Redis runs a connection's commands in order).
 * Each runs scripts/add.lua, which applies the sum and records "SEQ VALUE"
 * under KEY.tally-id.ID (expiring after RECORD_TTL_MS) in one atomic step
 * when SEQ follows the record by one; a SEQ already recorded changes
 * nothing and answers the recorded value.  A request whose reply is lost
 * (timeout, reset connection, restarted server, SCRIPT FLUSH) is sent again
 * with the same SEQ until deadline_ms has passed since it was made, so it
 * is applied once; past the deadline its adds are of unknown outcome
 * (TALLY_EUNKNOWN: applied once or not at all).  Adds of a request that
 * never reached the server (it was unreachable) or that it refused (a key
 * of another type, an ACL, out of memory) are not applied (TALLY_EREMOTE,
 * TALLY_EWRONGTYPE).  What a server loses by itself (a restart without
 * appendonly/appendfsync always, a failover to a replica that had not
 * received it) is lost.  engine.c says how.
 *
 * The three contracts.  sync: tally_add() returns once its add is applied
 * (its request was answered), with the outcome.  async: tally_add()
 * returns at once; tally_flush() returns once every add the process made
 * before it is applied, or says how much was not applied or is of unknown
 * outcome; nothing is dropped silently.  write-behind (flush_ms=N): as
 * async, but adds go to a per-CPU sum in the process (the percpu
 * backend's add), sent every N ms, at tally_flush(), tally_destroy() and
 * exit: never applied twice; applied once if the process lives; a process
 * killed loses at most its last N ms and its requests in flight, never
 * doubled; other processes and hosts see its adds up to N ms plus a round
 * trip late; tally_get() answers the server's value plus this process's
 * sum not yet sent.  Durable only as the server is.  A process forked
 * after the counter was made has clients (and a sum and flusher) of its
 * own.
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
 * engine.c runs a client's requests (up to `inflight` on the wire, each
 * carrying the sum of the adds pending when it went) in the three modes;
 * cluster.c spreads one counter over a Redis Cluster's shards, routed by
 * slots.c (CRC16, the slot map, -MOVED and -ASK); redis.c is the ops
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

/* USER[:PASSWORD] (in place, NUL-terminated), split at its first ':',
 * each %XX decoded. */
static int parse_auth(struct redis_state *s, char *auth)
{
	char *colon = strchr(auth, ':');

	if (colon != NULL)
		*colon = '\0';
	if (decode(s->user, sizeof(s->user), auth) != 0 ||
	    (colon != NULL &&
	     decode(s->password, sizeof(s->password), colon + 1) != 0))
		return TALLY_EOPTION;
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
		if (parse_auth(s, buf) != 0)
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

/* cluster=[redis://[USER][:PASSWORD]@]HOST:PORT[;HOST:PORT...]: the
 * credentials every node is given (what comes before the last '@', as in
 * url=), and the seeds, each checked. */
static int parse_seeds(struct redis_state *s, const char *v, size_t vlen)
{
	static const char form[] =
		"cluster= takes [redis://[USER][:PASSWORD]@]HOST:PORT[;HOST:PORT...] (up to 8 nodes, [ADDR]:PORT for IPv6, ports 1-65535; %2C for a comma in the password)";

	s->nseeds = 0;
	if (vlen > 8 && strncmp(v, "redis://", 8) == 0) {
		const char *at = NULL;
		char auth[400];
		for (size_t i = 8; i < vlen; i++)
			if (v[i] == '@')
				at = v + i;
		if (at != NULL) {
			size_t alen = (size_t)(at - v) - 8;
			if (alen >= sizeof(auth))
				return tally__refuse_option("%s", form);
			memcpy(auth, v + 8, alen);
			auth[alen] = '\0';
			if (parse_auth(s, auth) != 0)
				return tally__refuse_option("%s", form);
			vlen -= (size_t)(at + 1 - v);
			v = at + 1;
		} else {
			v += 8;
			vlen -= 8;
		}
	}
	while (vlen > 0) {
		size_t len = 0, hlen;
		while (len < vlen && v[len] != ';')
			len++;
		const char *colon = NULL, *host = v;
		char *end;
		for (size_t i = 0; i < len; i++)
			if (v[i] == ':')
				colon = v + i;
		if (s->nseeds == MAX_SEEDS || colon == NULL)
			return tally__refuse_option("%s", form);
		hlen = (size_t)(colon - v);
		if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
			host++;
			hlen -= 2;
		}
		char port[8];
		size_t plen = len - (size_t)(colon - v) - 1;
		if (hlen == 0 || hlen >= sizeof(s->seeds[0].host) ||
		    plen == 0 || plen >= sizeof(port) ||
		    strspn(colon + 1, "0123456789") < plen)
			return tally__refuse_option("%s", form);
		memcpy(port, colon + 1, plen);
		port[plen] = '\0';
		long p = strtol(port, &end, 10);
		if (p < 1 || p > 65535)
			return tally__refuse_option("%s", form);
		for (size_t i = 0; i < hlen; i++)
			if (host[i] <= ' ' || host[i] > '~' || host[i] == ';')
				return tally__refuse_option("%s", form);
		memcpy(s->seeds[s->nseeds].host, host, hlen);
		s->seeds[s->nseeds].host[hlen] = '\0';
		s->seeds[s->nseeds++].port = (int)p;
		v += len;
		vlen -= len;
		if (vlen > 0) { /* the ';' */
			v++;
			vlen--;
			if (vlen == 0)
				return tally__refuse_option("%s", form);
		}
	}
	return s->nseeds > 0 ? 0 : tally__refuse_option("%s", form);
}

/* durability=primary or replicas:N. */
static int parse_durability(struct redis_state *s, const char *v, size_t vlen)
{
	if (v != NULL && vlen == 7 && strncmp(v, "primary", 7) == 0) {
		s->replicas = 0;
		return 0;
	}
	if (v != NULL && vlen > 9 && vlen <= 11 &&
	    strncmp(v, "replicas:", 9) == 0 &&
	    strspn(v + 9, "0123456789") == vlen - 9) {
		s->replicas = atoi(v + 9);
		if (s->replicas >= 1 && s->replicas <= 16)
			return 0;
	}
	return tally__refuse_option(
		"durability= takes primary (applied once the server answers) or replicas:N, N from 1 to 16 (once N replicas confirmed it)");
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

/* mode= and flush_ms= each choose the contract: one of them, once. */
static int set_contract(struct redis_state *s, int mode, int *given)
{
	if (*given) {
		tally__explain_set(
			TALLY_EOPTION,
			"invalid backend option: mode= and flush_ms= each choose what an add promises (sync, async, or write-behind every N ms): give one");
		return TALLY_EOPTION;
	}
	*given = 1;
	s->mode = mode;
	return 0;
}

/* What the options say together: a cluster's, and WAIT's time. */
static int agree(struct redis_state *s, int url)
{
	if (url && s->nseeds > 0)
		return tally__refuse_option(
			"url= names one server, cluster= the nodes of a cluster: give one");
	if (s->shards != 0 && s->nseeds == 0)
		return tally__refuse_option(
			"shards= spreads a counter over the nodes of a cluster: it needs cluster=");
	if (s->nseeds > 0 && strpbrk(s->key, "{}") != NULL)
		return tally__refuse_option(
			"on a cluster, key= may not hold '{' or '}': the shards' keys are {KEY#i}, whose braces choose the slot");
	if (s->shards == 0)
		s->shards = 1;
	if (s->wait_ms != 0 && s->replicas == 0)
		return tally__refuse_option(
			"confirm_ms= is how long replicas have to confirm a request: it needs durability=replicas:N");
	if (s->replicas != 0 && s->wait_ms == 0)
		s->wait_ms = s->timeout_ms / 2 > 0 ? s->timeout_ms / 2 : 1;
	if (s->wait_ms >= s->timeout_ms)
		return tally__refuse_option(
			"confirm_ms=%d must be less than timeout_ms=%d: the reply waits for WAIT",
			s->wait_ms, s->timeout_ms);
	return 0;
}

/* Parse "k=v,k=v,flag" into s; *mode set by `keep` and `reset`. */
static int parse_options(struct redis_state *s, const char *opt,
			 const char **mode)
{
	int contract = 0, url = 0;

	while (opt != NULL && *opt != '\0') {
		size_t len = strcspn(opt, ",");
		const char *eq = memchr(opt, '=', len);
		size_t klen = eq ? (size_t)(eq - opt) : len;
		const char *v = eq ? eq + 1 : NULL;
		size_t vlen = eq ? len - klen - 1 : 0;
		int rc = 0;

		if (is(opt, klen, "url") && v) {
			rc = parse_url(s, v, vlen);
			url = 1;
		} else if (is(opt, klen, "cluster") && v) {
			rc = parse_seeds(s, v, vlen);
		} else if (is(opt, klen, "shards")) {
			rc = parse_ms(v, vlen, &s->shards) == 0 &&
					     s->shards <= MAX_SHARDS
				     ? 0
				     : tally__refuse_option(
					       "shards= takes 1 to %d",
					       MAX_SHARDS);
		} else if (is(opt, klen, "durability")) {
			rc = parse_durability(s, v, vlen);
		} else if (is(opt, klen, "confirm_ms")) {
			rc = parse_ms(v, vlen, &s->wait_ms);
		} else if (is(opt, klen, "key") && v && vlen > 0 &&
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
		else if (is(opt, klen, "inflight"))
			rc = parse_ms(v, vlen, &s->inflight) == 0 &&
					     s->inflight <= MAX_INFLIGHT
				     ? 0
				     : TALLY_EOPTION;
		else if (is(opt, klen, "mode") && v && vlen == 4 &&
			 strncmp(v, "sync", 4) == 0)
			rc = set_contract(s, REDIS_SYNC, &contract);
		else if (is(opt, klen, "mode") && v && vlen == 5 &&
			 strncmp(v, "async", 5) == 0)
			rc = set_contract(s, REDIS_ASYNC, &contract);
		else if (is(opt, klen, "flush_ms"))
			rc = parse_ms(v, vlen, &s->flush_ms) == 0 &&
					     s->flush_ms <= 3600000
				     ? set_contract(s, REDIS_BEHIND, &contract)
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
	return agree(s, url);
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
	s->inflight = DEFAULT_INFLIGHT;
	s->mode = REDIS_SYNC;
	return parse_options(s, options, mode);
}

#endif /* TALLY_HAVE_HIREDIS */
