/* redis: Redis Cluster's slot routing -- a key's hash slot, the map of which
 * node serves each slot (from CLUSTER SLOTS), and -MOVED / -ASK redirects.
 * Private to this folder; nothing here talks to a server. */
#ifndef TALLY_REDIS_SLOTS_H
#define TALLY_REDIS_SLOTS_H

#include <stddef.h>
#include <stdint.h>

/* A cluster has this many slots, always (the Redis Cluster specification). */
#define TALLY__REDIS_NSLOTS 16384
/* The longest host name (RFC 1035's 255 octets; an address is shorter). */
#define TALLY__REDIS_HOST_MAX 255

/* CRC16-XMODEM of len bytes: what Redis Cluster hashes keys with. */
uint16_t tally__redis_crc16(const void *buf, size_t len);

/* The slot of a key: crc16 of its hash tag (what lies between its first
 * '{' and the next '}', when that is not empty) or else of the whole key,
 * modulo TALLY__REDIS_NSLOTS. */
unsigned tally__redis_key_slot(const char *key, size_t len);

/* What an error reply asks of the client.  MOVED: the slot lives on
 * host:port now (update the map, send again); ASK: this one command only,
 * to host:port, after ASKING.  host "" means the host the error came from
 * (Redis 7 says so when a node's address is unknown: "MOVED 1 :7000"). */
enum tally__redis_redirect_kind {
	TALLY__REDIS_NO_REDIRECT = 0,
	TALLY__REDIS_MOVED,
	TALLY__REDIS_ASK,
};
struct tally__redis_redirect {
	enum tally__redis_redirect_kind kind;
	unsigned slot;
	int port;
	char host[TALLY__REDIS_HOST_MAX + 1];
};

/* Parse an error reply's text, len bytes, with or without its leading '-'
 * (hiredis drops it): "MOVED <slot> <host>:<port>" or "ASK ...", the port
 * after the last ':' (an IPv6 host has colons of its own).  Returns the
 * kind, and fills *out only for a well-formed redirect; anything else
 * (another error, a slot or port out of range, junk) is
 * TALLY__REDIS_NO_REDIRECT, to be treated as the error it is. */
enum tally__redis_redirect_kind
tally__redis_redirect_parse(const char *err, size_t len,
			    struct tally__redis_redirect *out);

#ifdef TALLY_HAVE_HIREDIS
#include <hiredis/hiredis.h>

/* A node of the cluster, once per host:port however many ranges it serves:
 * its index in the map is what a caller keys its connections by. */
struct tally__redis_node {
	char host[TALLY__REDIS_HOST_MAX + 1];
	int port;
};

/* A range of slots, start..end inclusive, and who serves it: first is its
 * primary's entry in map->serve, the nreplicas after it its replicas'. */
struct tally__redis_range {
	unsigned start, end;
	unsigned first, nreplicas;
};

/* Which node serves which slot, from one CLUSTER SLOTS reply.  Built whole
 * or not at all; read-only once built (threads may share one). */
struct tally__redis_slotmap {
	struct tally__redis_node *nodes;
	unsigned nnodes;
	struct tally__redis_range *ranges; /* by start, none overlapping */
	unsigned nranges;
	unsigned *serve;  /* node indices: each range's primary, replicas */
	unsigned covered; /* slots some node serves; < NSLOTS: gaps */
};

/*
 * Build *out from a CLUSTER SLOTS reply that the node at asked_host sent
 * (a node whose address it gives as "" or NULL is that host; Redis 7 does
 * so when it does not know its own).  Every part of the reply is checked:
 * the types, 0 <= start <= end < NSLOTS, no slot twice, hosts of at most
 * HOST_MAX printable bytes, ports 1..65535.  Returns 0, TALLY_EREMOTE with
 * why (a reply that is not a map, said in words), or TALLY_ENOMEM; *out is
 * written only on success.  Gaps are no error here: the lookup says them.
 */
int tally__redis_slotmap_build(struct tally__redis_slotmap *out,
			       const redisReply *r, const char *asked_host,
			       char *why, size_t whylen);
void tally__redis_slotmap_free(struct tally__redis_slotmap *m);

/* The node that serves slot: i = 0 its primary, 1..nreplicas its replicas.
 * Returns its index in m->nodes, or -1 when no node serves slot (a gap, or
 * slot out of range) or i is past its replicas.  *nreplicas (NULL: not
 * wanted) gets how many replicas the slot has, when some node serves it. */
int tally__redis_slotmap_lookup(const struct tally__redis_slotmap *m,
				unsigned slot, unsigned i, unsigned *nreplicas);
#endif /* TALLY_HAVE_HIREDIS */

#endif /* TALLY_REDIS_SLOTS_H */
