/* redis: Redis Cluster's slot routing, written once -- CRC16 and hash tags,
 * the CLUSTER SLOTS map, -MOVED and -ASK.  The engine asks; nothing here
 * talks to a server, so that all of it is tested without one. */
#include "slots.h"

#include "tally.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bit by bit rather than by a 512-byte table: a counter hashes its few
 * shard keys once, when it is made, never per add. */
uint16_t tally__redis_crc16(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	unsigned crc = 0;

	while (len--) {
		crc ^= (unsigned)*p++ << 8;
		for (int i = 0; i < 8; i++)
			crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
	}
	return (uint16_t)crc;
}

unsigned tally__redis_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;
		const char *close = memchr(open + 1, '}', rest);

		/* "{}" is no tag: the whole key is hashed, as Redis does. */
		if (close != NULL && close > open + 1) {
			key = open + 1;
			len = (size_t)(close - key);
		}
	}
	return tally__redis_crc16(key, len) % TALLY__REDIS_NSLOTS;
}

/* Hosts come from the network and end up in messages and in
 * getaddrinfo(): visible ASCII only, no spaces, no NUL. */
static int host_ok(const char *s, size_t len)
{
	if (len > TALLY__REDIS_HOST_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return 0;
	return 1;
}

/* Decimal digits only (no sign, no spaces, no "0x"), at most max. */
static int parse_uint(const char *s, size_t len, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > max)
			return -1;
	}
	*out = v;
	return 0;
}

enum tally__redis_redirect_kind
tally__redis_redirect_parse(const char *err, size_t len,
			    struct tally__redis_redirect *out)
{
	enum tally__redis_redirect_kind kind;
	const char *end = err + len, *p, *sp, *colon;
	unsigned slot, port;

	if (len > 0 && err[0] == '-')
		err++;
	if (end - err > 6 && memcmp(err, "MOVED ", 6) == 0) {
		kind = TALLY__REDIS_MOVED;
		p = err + 6;
	} else if (end - err > 4 && memcmp(err, "ASK ", 4) == 0) {
		kind = TALLY__REDIS_ASK;
		p = err + 4;
	} else {
		return TALLY__REDIS_NO_REDIRECT;
	}
	sp = memchr(p, ' ', (size_t)(end - p));
	if (sp == NULL ||
	    parse_uint(p, (size_t)(sp - p), TALLY__REDIS_NSLOTS - 1, &slot))
		return TALLY__REDIS_NO_REDIRECT;
	p = sp + 1;
	/* The last colon: "::1:7000" is host ::1, port 7000. */
	for (colon = end; colon > p && colon[-1] != ':'; colon--)
		;
	if (colon == p ||
	    parse_uint(colon, (size_t)(end - colon), 65535, &port) ||
	    port == 0 || !host_ok(p, (size_t)(colon - 1 - p)))
		return TALLY__REDIS_NO_REDIRECT;
	out->kind = kind;
	out->slot = slot;
	out->port = (int)port;
	memcpy(out->host, p, (size_t)(colon - 1 - p));
	out->host[colon - 1 - p] = '\0';
	return kind;
}

#ifdef TALLY_HAVE_HIREDIS
/* A cluster of more than this many nodes, or a range with more replicas,
 * is a reply to refuse: Redis advises 1000 nodes at most, and these bound
 * what a hostile reply can make us allocate and compare. */
#define MAX_NODES    1024
#define MAX_REPLICAS 16

static int fail(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return TALLY_EREMOTE;
}

/* A node entry, [host, port, id, ...]: the index of its host:port in
 * m->nodes (added when new), -2 when it has no known address ("?", or ""
 * with no asked_host), or -1 (why) when it is malformed. */
static int node_of(struct tally__redis_slotmap *m, const redisReply *e,
		   const char *asked_host, char *why, size_t whylen)
{
	const char *host;
	size_t hlen;
	long long port;

	if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
	    (e->element[0]->type != REDIS_REPLY_STRING &&
	     e->element[0]->type != REDIS_REPLY_NIL) ||
	    e->element[1]->type != REDIS_REPLY_INTEGER) {
		fail(why, whylen,
		     "CLUSTER SLOTS: a node that is not [host, port, ...]");
		return -1;
	}
	host = e->element[0]->str;
	hlen = e->element[0]->type == REDIS_REPLY_STRING ? e->element[0]->len
							 : 0;
	port = e->element[1]->integer;
	/* Redis 7 gives a node whose address it does not know as NULL or ""
	 * (the host this reply came from), or "?" (none known). */
	if (hlen == 0) {
		host = asked_host;
		hlen = host != NULL ? strlen(host) : 0;
	}
	if (hlen == 0 || (hlen == 1 && host[0] == '?'))
		return -2;
	if (!host_ok(host, hlen)) {
		fail(why, whylen,
		     "CLUSTER SLOTS: a node's host is not a host name of at most 255 printable characters");
		return -1;
	}
	if (port < 1 || port > 65535) {
		fail(why, whylen,
		     "CLUSTER SLOTS: node %.*s has port %lld, not 1..65535",
		     (int)hlen, host, port);
		return -1;
	}
	for (unsigned i = 0; i < m->nnodes; i++)
		if (m->nodes[i].port == port &&
		    strlen(m->nodes[i].host) == hlen &&
		    memcmp(m->nodes[i].host, host, hlen) == 0)
			return (int)i;
	if (m->nnodes == MAX_NODES) {
		fail(why, whylen, "CLUSTER SLOTS: more than %d nodes",
		     MAX_NODES);
		return -1;
	}
	memcpy(m->nodes[m->nnodes].host, host, hlen);
	m->nodes[m->nnodes].host[hlen] = '\0';
	m->nodes[m->nnodes].port = (int)port;
	return (int)m->nnodes++;
}

/* One range, [start, end, primary, replicas...], into m->ranges and
 * m->serve (*nserve of it used so far): 0, or an error (why). */
static int range_of(struct tally__redis_slotmap *m, unsigned *nserve,
		    const redisReply *e, const char *asked_host, char *why,
		    size_t whylen)
{
	struct tally__redis_range *rg = &m->ranges[m->nranges];
	long long start, end;
	int node;

	if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
	    e->element[0]->type != REDIS_REPLY_INTEGER ||
	    e->element[1]->type != REDIS_REPLY_INTEGER)
		return fail(
			why, whylen,
			"CLUSTER SLOTS: a range that is not [start, end, primary, ...]");
	start = e->element[0]->integer;
	end = e->element[1]->integer;
	if (start < 0 || end >= TALLY__REDIS_NSLOTS || start > end)
		return fail(
			why, whylen,
			"CLUSTER SLOTS: range %lld-%lld is not within 0-16383",
			start, end);
	if (e->elements - 3 > MAX_REPLICAS)
		return fail(
			why, whylen,
			"CLUSTER SLOTS: range %lld-%lld has more than %d replicas",
			start, end, MAX_REPLICAS);
	rg->start = (unsigned)start;
	rg->end = (unsigned)end;
	rg->first = *nserve;
	rg->nreplicas = 0;
	for (size_t i = 2; i < e->elements; i++) {
		node = node_of(m, e->element[i], asked_host, why, whylen);
		if (node == -1)
			return TALLY_EREMOTE;
		/* A replica with no address cannot be asked for anything;
		 * a primary with none leaves its slots unroutable. */
		if (node == -2 && i == 2)
			return fail(
				why, whylen,
				"CLUSTER SLOTS: the primary of slots %lld-%lld has no known address",
				start, end);
		if (node == -2)
			continue;
		m->serve[(*nserve)++] = (unsigned)node;
		if (i > 2)
			rg->nreplicas++;
	}
	m->nranges++;
	return 0;
}

static int by_start(const void *a, const void *b)
{
	const struct tally__redis_range *x = a, *y = b;

	return (x->start > y->start) - (x->start < y->start);
}

void tally__redis_slotmap_free(struct tally__redis_slotmap *m)
{
	free(m->nodes);
	free(m->ranges);
	free(m->serve);
	memset(m, 0, sizeof(*m));
}

int tally__redis_slotmap_build(struct tally__redis_slotmap *out,
			       const redisReply *r, const char *asked_host,
			       char *why, size_t whylen)
{
	struct tally__redis_slotmap m = {0};
	size_t entries = 0;
	unsigned nserve = 0;
	int rc;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return fail(why, whylen,
			    "CLUSTER SLOTS: the reply is not an array");
	/* Ranges do not overlap, so there can be no more than slots. */
	if (r->elements > TALLY__REDIS_NSLOTS)
		return fail(
			why, whylen,
			"CLUSTER SLOTS: %zu ranges, more than there are slots",
			r->elements);
	/* Room for every node entry, bounded before range_of() refuses a
	 * range with too many: no allocation as large as a hostile reply. */
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];

		if (e->type == REDIS_REPLY_ARRAY && e->elements > 2)
			entries += e->elements - 2 < MAX_REPLICAS + 1
					   ? e->elements - 2
					   : MAX_REPLICAS + 1;
	}
	/* No more nodes than node entries: a map of 3 nodes is 3 nodes. */
	m.nodes = calloc(entries < MAX_NODES ? entries + 1 : MAX_NODES,
			 sizeof(*m.nodes));
	m.ranges = calloc(r->elements + 1, sizeof(*m.ranges));
	m.serve = calloc(entries + 1, sizeof(*m.serve));
	if (m.nodes == NULL || m.ranges == NULL || m.serve == NULL) {
		snprintf(why, whylen, "CLUSTER SLOTS: out of memory");
		rc = TALLY_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < r->elements; i++) {
		rc = range_of(&m, &nserve, r->element[i], asked_host, why,
			      whylen);
		if (rc != 0)
			goto fail;
	}
	qsort(m.ranges, m.nranges, sizeof(*m.ranges), by_start);
	for (unsigned i = 0; i < m.nranges; i++) {
		if (i > 0 && m.ranges[i].start <= m.ranges[i - 1].end) {
			rc = fail(why, whylen,
				  "CLUSTER SLOTS: slot %u is in two ranges",
				  m.ranges[i].start);
			goto fail;
		}
		m.covered += m.ranges[i].end - m.ranges[i].start + 1;
	}
	*out = m;
	return 0;
fail:
	tally__redis_slotmap_free(&m);
	return rc;
}

int tally__redis_slotmap_lookup(const struct tally__redis_slotmap *m,
				unsigned slot, unsigned i, unsigned *nreplicas)
{
	const struct tally__redis_range *rg;
	unsigned lo = 0, hi = m->nranges;

	/* The last range that starts at or before slot. */
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (m->ranges[mid].start <= slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || slot > m->ranges[lo - 1].end)
		return -1;
	rg = &m->ranges[lo - 1];
	if (nreplicas != NULL)
		*nreplicas = rg->nreplicas;
	if (i > rg->nreplicas)
		return -1;
	return (int)m->serve[rg->first + i];
}
#endif /* TALLY_HAVE_HIREDIS */
