/* redis: the exactly-once protocol -- a client's identity, creating the
 * counter, and what the server's replies mean.  The requests themselves,
 * their resends and the strict sequence: engine.c and scripts/add.lua. */
#include "redis_int.h"

#ifdef TALLY_HAVE_HIREDIS
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int tally__redis_new_identity(struct client *cl)
{
	if (random_id(cl->id) != 0)
		return -1;
	snprintf(cl->record, sizeof(cl->record), "%s.tally-id.%s", cl->key,
		 cl->id);
	cl->next_seq = 1;
	cl->cum_sent = cl->cum_acked = cl->acked_seq = 0; /* start again */
	cl->base_seq = cl->base_cum = 0;
	cl->epoch++;
	return 0;
}

struct client *tally__redis_client_new(const struct redis_state *s,
				       unsigned lane)
{
	/* Aligned for the lines that adds and waiters touch. */
	struct client *cl = aligned_alloc(64, (sizeof(*cl) + 63) / 64 * 64);

	if (cl == NULL)
		return NULL;
	memset(cl, 0, sizeof(*cl));
	cl->s = s;
	cl->state_id = s->id;
	cl->lane = lane;
	cl->asks_tail = &cl->asks;
	cl->doorbell = -1;
	snprintf(cl->key, sizeof(cl->key), "%s", s->key);
	if (s->nseeds == 0) {
		snprintf(cl->host, sizeof(cl->host), "%s", s->host);
		cl->port = s->port;
	}
	pthread_mutex_init(&cl->q, NULL);
	pthread_mutex_init(&cl->io, NULL);
	/* On a cluster the first id picks the shard, whose key the record
	 * names: a second id, with that record. */
	if (tally__redis_new_identity(cl) != 0 ||
	    (s->nseeds != 0 && (tally__redis_cluster_attach(cl) != 0 ||
				tally__redis_new_identity(cl) != 0)) ||
	    tally__redis_engine_start(cl) != 0) {
		tally__redis_cluster_detach(cl);
		pthread_mutex_destroy(&cl->q);
		pthread_mutex_destroy(&cl->io);
		free(cl);
		return NULL;
	}
	return cl;
}

void tally__redis_client_free(struct client *cl)
{
	tally__redis_engine_stop(cl);
	tally__redis_disconnect(cl);
	tally__redis_cluster_detach(cl);
	pthread_mutex_destroy(&cl->q);
	pthread_mutex_destroy(&cl->io);
	free(cl);
}

int tally__redis_wrong_type(const char *key, const char *type)
{

	if (strcmp(type, "string") == 0)
		tally__explain_set(
			TALLY_EWRONGTYPE,
			"redis key '%s' holds a string that is not a 64-bit integer",
			key);
	else
		tally__explain_set(
			TALLY_EWRONGTYPE,
			"redis key '%s' holds a %s, not an integer counter",
			key, type);
	return TALLY_EWRONGTYPE;
}

int tally__redis_parse_i64(const char *str, int64_t *value)
{
	char *end;

	errno = 0;
	long long v = strtoll(str, &end, 10);
	if (errno || *end != '\0' || end == str)
		return -1;
	*value = v;
	return 0;
}

int tally__redis_remote_error(struct client *cl, const redisReply *r)
{
	/* Also the reason a later give-up names (cl->why). */
	snprintf(cl->why, sizeof(cl->why), "%s",
		 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	tally__explain_set(TALLY_EREMOTE, "redis server %s:%d: %s", cl->host,
			   cl->port, cl->why);
	return TALLY_EREMOTE;
}

/* What init.lua answered for key: 0, or why not. */
static int initialized(struct client *cl, const char *key, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[1]->type == REDIS_REPLY_STRING)
		return r->element[0]->integer == 1
			       ? 0
			       : tally__redis_wrong_type(key,
							 r->element[1]->str);
	return tally__redis_remote_error(cl, r);
}

/* A cluster's counter: every shard made (or joined), the first holding
 * the initial value and the others 0, each on the node that serves it. */
static int initialize_shards(struct client *cl, int64_t initial,
			     const char *mode)
{
	const struct redis_state *s = cl->s;
	uint64_t deadline = tally__redis_now_ms() + (uint64_t)s->deadline_ms;
	char key[300], value[24], why[320] = "";

	for (unsigned i = 0; i < (unsigned)s->shards; i++) {
		tally__redis_shard_key(s, i, key, sizeof(key));
		snprintf(value, sizeof(value), "%lld",
			 i == 0 ? (long long)initial : 0LL);
		const char *argv[] = {"EVAL", tally__redis_init_script,
				      "1",    key,
				      value,  mode};
		redisReply *r = tally__redis_cluster_call(
			cl, key, 6, argv, deadline, why, sizeof(why));
		if (r == NULL) {
			/* A password or user the nodes refuse: the options
			 * were wrong, not the cluster. */
			int rc = tally__redis_cluster_refused(cl)
					 ? TALLY_EOPTION
					 : TALLY_EREMOTE;
			tally__explain_set(
				rc, "redis cluster: making shard '%s': %s", key,
				why);
			return rc;
		}
		if (r->type == REDIS_REPLY_ERROR &&
		    strncmp(r->str, "NOAUTH", 6) == 0) {
			tally__explain_set(
				TALLY_EOPTION,
				"redis cluster: making shard '%s': %s (cluster= gives no password: cluster=redis://[USER]:PASSWORD@HOST:PORT;...)",
				key, r->str);
			freeReplyObject(r);
			return TALLY_EOPTION;
		}
		int rc = initialized(cl, key, r);
		freeReplyObject(r);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int tally__redis_initialize(struct client *cl, int64_t initial,
			    const char *mode)
{
	char value[24];
	int rc = 0;

	if (cl->cluster != NULL)
		return initialize_shards(cl, initial, mode);
	snprintf(value, sizeof(value), "%lld", (long long)initial);
	const char *argv[] = {
		"EVAL", tally__redis_init_script, "1", cl->s->key, value, mode};
	int sent = 0;
	redisReply *r = tally__redis_until_deadline(
		cl, 6, argv,
		tally__redis_now_ms() + (uint64_t)cl->s->deadline_ms, &sent,
		&rc);
	/* A database the server does not have, a wrong password: the
	 * options were wrong, not the server. */
	if (r == NULL)
		return tally__redis_give_up(cl, cl->hard == 2 ? TALLY_EOPTION
							      : TALLY_EREMOTE);
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0) {
		tally__explain_set(
			TALLY_EOPTION,
			"redis server %s:%d: %s (the URL gives no password: redis://[USER]:PASSWORD@HOST)",
			cl->s->host, cl->s->port, r->str);
		freeReplyObject(r);
		return TALLY_EOPTION;
	}
	rc = initialized(cl, cl->key, r);
	freeReplyObject(r);
	return rc;
}

#endif /* TALLY_HAVE_HIREDIS */
