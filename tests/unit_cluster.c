/* The redis backend over a Redis Cluster, through the public API, against
 * the private three-primary cluster of tests/redis_cluster.cmake
 * ($TALLY_TEST_CLUSTER_PORT: its first node on 127.0.0.1, the others on
 * the next two ports).  Threads add and read a sharded counter in every
 * mode (also under ThreadSanitizer); tickets, a shard of another type,
 * joining with keep, and durability=replicas:N on a cluster without
 * replicas. */
#include "tally.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int port;

/* "redis:cluster=127.0.0.1:PORT;127.0.0.1:PORT+1,key=KEY" and options. */
static const char *spec(const char *key, const char *options)
{
	static char buf[512];

	snprintf(buf, sizeof(buf),
		 "redis:cluster=127.0.0.1:%d;127.0.0.1:%d,key=%s%s", port,
		 port + 1, key, options);
	return buf;
}

/* A command on the node that holds key (the one that does not answer
 * -MOVED), blocking. */
static redisReply *on_key_node(const char *fmt, const char *key)
{
	for (int i = 0; i < 3; i++) {
		redisContext *c = redisConnect("127.0.0.1", port + i);
		assert_true(c != NULL && !c->err);
		redisReply *r = redisCommand(c, fmt, key);
		redisFree(c);
		assert_non_null(r);
		if (r->type == REDIS_REPLY_ERROR &&
		    strncmp(r->str, "MOVED", 5) == 0) {
			freeReplyObject(r);
			continue;
		}
		return r;
	}
	fail_msg("no node holds %s", key);
	return NULL;
}

#define THREADS 8
#define ADDS	3000

struct crew {
	tally *t;
	int64_t initial, expected;
	_Atomic int stop;
	_Atomic int bad_read;
	int64_t seen;
};

struct worker {
	struct crew *crew;
	int k;
	int rc;
};

static void *adder(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < ADDS && w->rc == 0; i++)
		w->rc = tally_add(w->crew->t, w->k + 1);
	return NULL;
}

/* Reads while the adds go on: every value between the initial one and the
 * final (all deltas are positive), never an error. */
static void *reader(void *arg)
{
	struct crew *c = arg;

	while (!atomic_load(&c->stop)) {
		int64_t v;
		if (tally_get(c->t, &v) != 0 || v < c->initial ||
		    v > c->expected)
			atomic_store(&c->bad_read, 1);
		else
			c->seen = v;
	}
	return NULL;
}

static void threads_exact(const char *key, const char *options)
{
	struct crew c = {.initial = 7};
	struct worker w[THREADS];
	pthread_t th[THREADS], rd;
	int64_t v;

	c.expected = c.initial + (int64_t)ADDS * THREADS * (THREADS + 1) / 2;
	assert_int_equal(tally_create(&c.t, spec(key, options), c.initial, 0),
			 0);
	assert_int_equal(pthread_create(&rd, NULL, reader, &c), 0);
	for (int k = 0; k < THREADS; k++) {
		w[k] = (struct worker){.crew = &c, .k = k};
		assert_int_equal(pthread_create(&th[k], NULL, adder, &w[k]), 0);
	}
	for (int k = 0; k < THREADS; k++) {
		pthread_join(th[k], NULL);
		assert_int_equal(w[k].rc, 0);
	}
	atomic_store(&c.stop, 1);
	pthread_join(rd, NULL);
	assert_int_equal(tally_flush(c.t), 0);
	assert_int_equal(tally_get(c.t, &v), 0);
	assert_true(v == c.expected);
	assert_false(atomic_load(&c.bad_read));
	tally_destroy(c.t);
}

/* 8 threads over 3 connections (so 3 clients, on shards of their own) and
 * a reader, in each contract: exact, and no read out of range. */
static void test_threads_every_mode_exact(void **unused)
{
	(void)unused;
	threads_exact("uc-sync", ",shards=3,connections=3");
	threads_exact("uc-async", ",shards=3,connections=3,mode=async");
	threads_exact("uc-behind", ",shards=3,connections=3,flush_ms=2");
	threads_exact("uc-one", ",shards=1,connections=2");
}

/* A fetch-and-add over several shards would not be atomic: refused,
 * saying why; over one shard, tickets as on one server. */
static void test_tickets_need_one_shard(void **unused)
{
	tally *t;
	int64_t a = 0, b = 0;

	(void)unused;
	assert_int_equal(tally_create(&t, spec("uc-tix3", ",shards=3"), 0, 0),
			 0);
	assert_int_equal(tally_add_fetch(t, 1, &a), TALLY_EUNSUPPORTED);
	assert_non_null(strstr(tally_explain(TALLY_EUNSUPPORTED), "shards=1"));
	tally_destroy(t);
	assert_int_equal(tally_create(&t, spec("uc-tix1", ""), 0, 0), 0);
	assert_int_equal(tally_add_fetch(t, 1, &a), 0);
	assert_int_equal(tally_add_fetch(t, 1, &b), 0);
	assert_true(a == 1 && b == 2);
	tally_destroy(t);
}

/* The name of shard 1 of counter key (made first): {KEY#1} or {KEY#1.J},
 * found with SCAN on the nodes. */
static void shard_one(const char *key, char *out, size_t size)
{
	char pattern[128];

	snprintf(pattern, sizeof(pattern), "{%s#1*", key);
	out[0] = '\0';
	for (int i = 0; i < 3; i++) {
		redisContext *c = redisConnect("127.0.0.1", port + i);
		assert_true(c != NULL && !c->err);
		redisReply *r =
			redisCommand(c, "SCAN 0 MATCH %s COUNT 10000", pattern);
		assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY);
		for (size_t k = 0; k < r->element[1]->elements; k++) {
			const char *name = r->element[1]->element[k]->str;
			if (strstr(name, ".tally-") == NULL)
				snprintf(out, size, "%s", name);
		}
		freeReplyObject(r);
		redisFree(c);
	}
	assert_true(out[0] == '{');
}

/* A shard key that holds a list: the counter is refused, naming the shard
 * and its type, and the list is left alone; reset overwrites it. */
static void test_shard_of_another_type(void **unused)
{
	tally *t;
	int64_t v;
	redisReply *r;
	char one[128];

	(void)unused;
	assert_int_equal(tally_create(&t, spec("uc-list", ",shards=3"), 0, 0),
			 0);
	tally_destroy(t);
	shard_one("uc-list", one, sizeof(one));
	freeReplyObject(on_key_node("DEL %s", one));
	freeReplyObject(on_key_node("RPUSH %s x", one));
	assert_int_equal(tally_create(&t, spec("uc-list", ",shards=3"), 0, 0),
			 TALLY_EWRONGTYPE);
	const char *why = tally_explain(TALLY_EWRONGTYPE);
	assert_non_null(strstr(why, one));
	assert_non_null(strstr(why, "list"));
	r = on_key_node("TYPE %s", one);
	assert_string_equal(r->str, "list");
	freeReplyObject(r);
	assert_int_equal(
		tally_create(&t, spec("uc-list", ",shards=3,reset"), 4, 0), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 4);
	tally_destroy(t);
}

/* keep joins every shard as it is: the sum carries on. */
static void test_keep_joins_every_shard(void **unused)
{
	tally *t;
	int64_t v;

	(void)unused;
	assert_int_equal(
		tally_create(&t, spec("uc-keep", ",shards=3,connections=3"), 10,
			     0),
		0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(tally_add(t, 1), 0);
	tally_destroy(t);
	assert_int_equal(
		tally_create(&t, spec("uc-keep", ",shards=3,keep"), 99, 0), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 15);
	tally_destroy(t);
}

/* durability=replicas:1 where no primary has a replica: each add is
 * applied, but not confirmed however often it asks until its deadline, so
 * it is reported (of unknown outcome), with how many replicas confirmed
 * it. */
static void test_unconfirmed_add_reported(void **unused)
{
	tally *t;
	int64_t v;
	const char *opts =
		",durability=replicas:1,confirm_ms=20,timeout_ms=200,deadline_ms=500";

	(void)unused;
	assert_int_equal(tally_create(&t, spec("uc-wait", opts), 0, 0), 0);
	assert_int_equal(tally_add(t, 3), TALLY_EUNKNOWN);
	assert_non_null(
		strstr(tally_explain(TALLY_EUNKNOWN), "0 of the 1 replicas"));
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 3); /* applied on the primary */
	tally_destroy(t);
}

int main(void)
{
	const char *p = getenv("TALLY_TEST_CLUSTER_PORT");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_every_mode_exact),
		cmocka_unit_test(test_tickets_need_one_shard),
		cmocka_unit_test(test_shard_of_another_type),
		cmocka_unit_test(test_keep_joins_every_shard),
		cmocka_unit_test(test_unconfirmed_add_reported),
	};

	if (p == NULL || (port = atoi(p)) <= 0) {
		fprintf(stderr, "unit_cluster: set TALLY_TEST_CLUSTER_PORT\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
