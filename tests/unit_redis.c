/* The redis backend against a private server ($TALLY_TEST_REDIS_URL): the
 * same invariants as every backend, plus what only a server has. */
#include "tally.h"
#include "workload.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

static char spec[512];

/* "redis:url=URL,key=unit-PID-what" */
static const char *backend_at(const char *url, const char *what,
			      const char *extra)
{
	snprintf(spec, sizeof(spec), "redis:url=%s,key=unit-%ld-%s%s", url,
		 (long)getpid(), what, extra);
	return spec;
}

/* The same on the test server, as its default user. */
static const char *backend(const char *what, const char *extra)
{
	return backend_at(getenv("TALLY_TEST_REDIS_URL"), what, extra);
}

/* A command on the test server, around tally (to plant keys of any type). */
static void server(const char *fmt, const char *key)
{
	const char *url = getenv("TALLY_TEST_REDIS_URL");
	const char *colon = strrchr(url, ':');
	redisContext *c = redisConnect("127.0.0.1", atoi(colon + 1));

	assert_true(c != NULL && c->err == 0);
	redisReply *r = redisCommand(c, fmt, key);
	assert_non_null(r);
	assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	redisFree(c);
}

static redisContext *connect_test_server(void)
{
	const char *url = getenv("TALLY_TEST_REDIS_URL");
	redisContext *c =
		redisConnect("127.0.0.1", atoi(strrchr(url, ':') + 1));

	assert_true(c != NULL && c->err == 0);
	return c;
}

/* What the server itself holds under unit-PID-what, read on a connection
 * of the test's own: no engine, no unsent sum of this process. */
static int64_t server_value(const char *what)
{
	char key[96];
	redisContext *c = connect_test_server();

	snprintf(key, sizeof(key), "unit-%ld-%s", (long)getpid(), what);
	redisReply *r = redisCommand(c, "GET %s", key);
	assert_true(r != NULL && r->type == REDIS_REPLY_STRING);
	int64_t v = strtoll(r->str, NULL, 10);
	freeReplyObject(r);
	redisFree(c);
	return v;
}

/* Split MONITOR's line ('123.4 [0 ip:port] "EVALSHA" "sha" ...') into its
 * quoted arguments (ours hold no quotes or escapes); returns the count. */
static int monitored_args(char *line, char **argv, int max)
{
	int n = 0;

	for (char *p = strchr(line, '"'); p != NULL && n < max;) {
		char *end = strchr(p + 1, '"');
		if (end == NULL)
			break;
		*end = '\0';
		argv[n++] = p + 1;
		p = strchr(end + 1, '"');
	}
	return n;
}

/*
 * A request that arrives again after it was applied -- a resend, or the
 * first attempt delayed in the network behind its resend, even behind the
 * next request -- changes nothing.  Both EVALSHAs the backend sent (caught
 * with MONITOR) are replayed verbatim, twice each: every copy answers
 * "already applied" (the last one with the value it left), and the counter
 * stays where it was.
 */
static void test_request_replayed_changes_nothing(void **state)
{
	static char line[2][1024];
	redisContext *mon = connect_test_server();
	redisReply *r = redisCommand(mon, "MONITOR");
	struct timeval five = {.tv_sec = 5};
	tally *t;
	int64_t v, after;
	char *argv[2][16];
	int argc[2] = {0, 0}, seen = 0;
	void *reply;

	(void)state;
	assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	/* What MONITOR shows comes at once; a server that shows nothing
	 * fails the test, in 5 s, rather than hanging it. */
	redisSetTimeout(mon, five);
	assert_int_equal(tally_create(&t, backend("replay", ""), 5, 0), 0);
	assert_int_equal(tally_add_fetch(t, 10, &after), 0);
	assert_true(after == 15);
	assert_int_equal(tally_add(t, 100), 0);
	while (seen < 2 && redisGetReply(mon, &reply) == REDIS_OK) {
		r = reply;
		if (r->type == REDIS_REPLY_STATUS &&
		    strstr(r->str, "\"EVALSHA\"") != NULL &&
		    strstr(r->str, "-replay\"") != NULL) {
			snprintf(line[seen], sizeof(line[seen]), "%s", r->str);
			argc[seen] = monitored_args(line[seen], argv[seen], 16);
			seen++;
		}
		freeReplyObject(r);
	}
	redisFree(mon);
	/* EVALSHA sha 2 key record seq delta ttl sum-so-far */
	assert_int_equal(argc[0], 9);
	assert_int_equal(argc[1], 9);
	assert_string_equal(argv[0][6], "10");
	assert_string_equal(argv[1][6], "100");
	assert_string_equal(argv[1][8], "110");

	redisContext *c = connect_test_server();
	for (int copy = 0; copy < 4; copy++) {
		int i = copy % 2;
		r = redisCommandArgv(c, argc[i], (const char **)argv[i], NULL);
		assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY &&
			    r->elements == 2);
		assert_int_equal(r->element[0]->integer, 1);
		if (i == 1)
			assert_string_equal(r->element[1]->str, "115");
		freeReplyObject(r);
	}
	redisFree(c);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 115);
	tally_destroy(t);
}

/* A key of another type, or a string that is no integer, is named and left
 * alone: create refuses (with keep or without), and only `reset` writes. */
static void test_wrong_type_named_never_overwritten(void **state)
{
	static const struct {
		const char *plant, *holds;
	} cases[] = {
		{"RPUSH %s a b", "holds a list, not an integer counter"},
		{"SET %s hello", "holds a string that is not a 64-bit integer"},
		{"SET %s 99999999999999999999",
		 "holds a string that is not a 64-bit integer"},
		{"HSET %s f v", "holds a hash, not an integer counter"},
	};
	char key[64], want[160];
	tally *t;
	int64_t v;

	(void)state;
	snprintf(key, sizeof(key), "unit-%ld-typed", (long)getpid());
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		server("DEL %s", key);
		server(cases[i].plant, key);
		snprintf(want, sizeof(want), "redis key '%s' %s", key,
			 cases[i].holds);
		for (int keep = 0; keep < 2; keep++) {
			int rc = tally_create(
				&t, backend("typed", keep ? ",keep" : ""), 5,
				0);
			assert_int_equal(rc, TALLY_EWRONGTYPE);
			assert_string_equal(tally_explain(rc), want);
		}
		/* A counter made before the key changed type: add and get
		 * refuse, naming it, and change nothing. */
		server("DEL %s", key);
		assert_int_equal(tally_create(&t, backend("typed", ""), 1, 0),
				 0);
		server("DEL %s", key);
		server(cases[i].plant, key);
		int rc = tally_add(t, 1);
		assert_int_equal(rc, TALLY_EWRONGTYPE);
		assert_string_equal(tally_explain(rc), want);
		rc = tally_get(t, &v);
		assert_int_equal(rc, TALLY_EWRONGTYPE);
		assert_string_equal(tally_explain(rc), want);
		tally_destroy(t);
		/* Asked in so many words: overwritten. */
		assert_int_equal(
			tally_create(&t, backend("typed", ",reset"), 5, 0), 0);
		assert_int_equal(tally_add(t, 1), 0);
		assert_int_equal(tally_get(t, &v), 0);
		assert_int_equal(v, 6);
		tally_destroy(t);
	}
}

struct ticketer {
	tally *t;
	int64_t got[500];
};

static void *take_tickets(void *arg)
{
	struct ticketer *tk = arg;

	for (int i = 0; i < 500; i++)
		if (tally_add_fetch(tk->t, 1, &tk->got[i]) != 0)
			tk->got[i] = -1;
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Adds combined into one request still hand each caller its own value:
 * 4 threads x 500 tickets are exactly 1..2000. */
static void test_add_fetch_tickets(void **state)
{
	static struct ticketer tk[4];
	static int64_t all[2000];
	pthread_t th[4];
	tally *t;

	(void)state;
	/* One connection combining all four threads, then three. */
	for (int conns = 1; conns <= 3; conns += 2) {
		assert_int_equal(
			tally_create(
				&t,
				backend("tickets",
					conns == 1 ? "" : ",connections=3"),
				0, 0),
			0);
		for (int i = 0; i < 4; i++) {
			tk[i].t = t;
			assert_int_equal(pthread_create(&th[i], NULL,
							take_tickets, &tk[i]),
					 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			memcpy(all + 500 * i, tk[i].got, sizeof(tk[i].got));
		}
		qsort(all, 2000, sizeof(all[0]), cmp_i64);
		for (int i = 0; i < 2000; i++)
			assert_true(all[i] == i + 1);
		tally_destroy(t);
	}
}

static pid_t server_pid(void)
{
	const char *file = getenv("TALLY_TEST_REDIS_PIDFILE");
	FILE *f = file ? fopen(file, "r") : NULL;
	long pid = 0;

	if (f != NULL) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return (pid_t)pid;
}

struct pause {
	pid_t pid;
	unsigned ms;
};

static void *pause_server(void *arg)
{
	struct pause *p = arg;
	struct timespec ts = {.tv_sec = (time_t)(p->ms / 1000),
			      .tv_nsec = (long)(p->ms % 1000) * 1000000};

	kill(p->pid, SIGSTOP);
	nanosleep(&ts, NULL);
	kill(p->pid, SIGCONT);
	return NULL;
}

/*
 * The server stops answering (SIGSTOP) after it has the request: the reply
 * is lost, the add is sent again with the same identity, and when the server
 * comes back within the deadline both copies arrive -- applied once.  Past
 * the deadline the add says the outcome is unknown, and it is applied at
 * most once.
 */
static void test_lost_reply_applied_once(void **state)
{
	/* static: the pause thread outlives a failed assertion, and must
	 * still find the server to resume. */
	static struct pause p;
	pthread_t th;
	tally *t;
	int64_t v;

	(void)state;
	p.pid = server_pid();
	if (p.pid <= 0)
		skip();
	assert_int_equal(
		tally_create(
			&t, backend("once", ",timeout_ms=150,deadline_ms=4000"),
			0, 0),
		0);
	assert_int_equal(tally_add(t, 1), 0); /* connected, script loaded */
	p.ms = 700;			      /* about four lost replies */
	assert_int_equal(pthread_create(&th, NULL, pause_server, &p), 0);
	usleep(50000);
	assert_int_equal(tally_add(t, 10), 0);
	pthread_join(th, NULL);
	assert_int_equal(tally_get(t, &v), 0);
	assert_int_equal(v, 11);
	tally_destroy(t);

	assert_int_equal(
		tally_create(&t,
			     backend("once", ",timeout_ms=100,deadline_ms=300"),
			     0, 0),
		0);
	assert_int_equal(tally_add(t, 1), 0);
	p.ms = 900;
	assert_int_equal(pthread_create(&th, NULL, pause_server, &p), 0);
	usleep(50000);
	int rc = tally_add(t, 10);
	assert_int_equal(rc, TALLY_EUNKNOWN);
	pthread_join(th, NULL);
	assert_int_equal(tally_add(t, 100), 0); /* the next add is definite */
	usleep(100000);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 101 || v == 111);
	tally_destroy(t);
}

static void test_wraps_like_every_backend(void **state)
{
	tally *t;
	int64_t v;

	(void)state;
	assert_int_equal(tally_create(&t, backend("wrap", ""), INT64_MAX, 0),
			 0);
	/* INCRBY refuses to overflow; tally wraps modulo 2^64 instead. */
	assert_int_equal(tally_add(t, 1), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(tally_add(t, -1), 0);
	assert_int_equal(tally_add(t, INT64_MIN), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == -1);
	tally_destroy(t);
}

static void test_keep_joins_an_existing_counter(void **state)
{
	tally *a, *b;
	int64_t v;

	(void)state;
	assert_int_equal(tally_create(&a, backend("keep", ""), 40, 0), 0);
	assert_int_equal(tally_add(a, 2), 0);
	/* `keep` joins without resetting; without it, create resets. */
	assert_int_equal(tally_create(&b, backend("keep", ",keep"), 0, 0), 0);
	assert_int_equal(tally_get(b, &v), 0);
	assert_int_equal(v, 42);
	tally_destroy(b);
	assert_int_equal(tally_create(&b, backend("keep", ""), 7, 0), 0);
	assert_int_equal(tally_get(a, &v), 0);
	assert_int_equal(v, 7);
	tally_destroy(a);
	tally_destroy(b);
}

static void test_bad_options_and_unreachable_server(void **state)
{
	static const char *const bad[] = {
		"redis:url=http://x",	 "redis:url=redis://",
		"redis:url=redis://h:0", "redis:url=redis://h:99999",
		"redis:url=redis://h/x", "redis:key=",
		"redis:timeout_ms=0",	 "redis:colour=blue",
		"redis:keep=1",		 "redis:connections=0",
		"redis:connections=65",	 "redis:deadline_ms=x",
	};
	tally *t = (tally *)0x1;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tally_create(&t, bad[i], 0, 0), TALLY_EOPTION);
	/* Port 1 on loopback: refused at once. */
	assert_int_equal(
		tally_create(&t, "redis:url=redis://127.0.0.1:1", 0, 0),
		TALLY_EREMOTE);
	assert_ptr_equal(t, (tally *)0x1);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* tally_create(spec) fails with want, within a tenth of its 5 s timeout,
 * and tally_explain() says each of the words. */
static void expect_fails_fast(const char *b, int want, const char *words[])
{
	tally *t = (tally *)0x1;
	double t0 = now_s();
	int rc = tally_create(&t, b, 0, 0);
	double took = now_s() - t0;
	const char *why = tally_explain(rc);

	assert_int_equal(rc, want);
	assert_ptr_equal(t, (tally *)0x1);
	if (took > 0.5)
		fail_msg("%s: took %.2f s to fail (timeout_ms=5000)", b, took);
	for (int i = 0; words[i] != NULL; i++)
		if (strstr(why, words[i]) == NULL)
			fail_msg("%s: '%s' does not say '%s'", b, why,
				 words[i]);
}

/* What cannot work fails at once and says why, naming the address: a port
 * nobody listens on (the system's reason), a name that does not resolve,
 * and a database the server does not have (bad input: TALLY_EOPTION, with
 * the server's own words). */
static void test_connect_failures_fast_and_named(void **state)
{
	const char *url = getenv("TALLY_TEST_REDIS_URL");
	char db99[300];

	(void)state;
	expect_fails_fast(
		"redis:url=redis://127.0.0.1:1,timeout_ms=5000", TALLY_EREMOTE,
		(const char *[]){"127.0.0.1:1", strerror(ECONNREFUSED), NULL});
	expect_fails_fast(
		"redis:url=redis://nosuch.invalid:6379,timeout_ms=5000",
		TALLY_EREMOTE,
		(const char *[]){"nosuch.invalid:6379",
				 "cannot resolve the host name", NULL});
	snprintf(db99, sizeof(db99), "redis:url=%s/99,timeout_ms=5000", url);
	expect_fails_fast(db99, TALLY_EOPTION,
			  (const char *[]){strrchr(url, '/') + 1, "database 99",
					   "DB index is out of range", NULL});
}

/* redis://USER:PASSWORD@HOST authenticates as an ACL user (made here on
 * the test server), and the password shows nowhere: not in
 * tally_describe()'s options, not in a refusal's message. */
static void test_acl_user_authenticates_password_never_shown(void **state)
{
	const char *url = getenv("TALLY_TEST_REDIS_URL");
	char user[64], pw[64], b[400];
	redisContext *c = connect_test_server();
	tally_handle_info d;
	tally *t;
	int64_t v;

	(void)state;
	snprintf(user, sizeof(user), "unit-%ld", (long)getpid());
	snprintf(pw, sizeof(pw), ">pw-%ld-x", (long)getpid());
	redisReply *r = redisCommand(
		c, "ACL SETUSER %s reset on %s ~* &* +@all", user, pw);
	assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	snprintf(b, sizeof(b),
		 "redis:url=redis://%s:pw-%ld-x@%s,key=unit-%ld-acl", user,
		 (long)getpid(), url + 8, (long)getpid());
	assert_int_equal(tally_create(&t, b, 7, 0), 0);
	assert_int_equal(tally_add(t, 1), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_int_equal(v, 8);
	assert_int_equal(tally_describe(t, &d), 0);
	assert_non_null(strstr(d.options, ":***@"));
	assert_null(strstr(d.options, "pw-"));
	tally_destroy(t);
	/* The wrong password: refused, bad input, and not echoed. */
	snprintf(b, sizeof(b), "redis:url=redis://%s:nope-%ld@%s", user,
		 (long)getpid(), url + 8);
	int rc = tally_create(&t, b, 0, 0);
	assert_int_equal(rc, TALLY_EOPTION);
	assert_non_null(strstr(tally_explain(rc), "WRONGPASS"));
	assert_non_null(strstr(tally_explain(rc), user));
	assert_null(strstr(tally_explain(rc), "nope-"));
	r = redisCommand(c, "ACL DELUSER %s", user);
	freeReplyObject(r);
	redisFree(c);
}

struct refused_add {
	tally *t;
	int rc;
	char why[320];
};

static void *add_once(void *arg)
{
	struct refused_add *a = arg;

	a->rc = tally_add(a->t, 1);
	snprintf(a->why, sizeof(a->why), "%s", tally_explain(a->rc));
	return NULL;
}

/* The server's own reason reaches tally_explain() for every failed add,
 * also for the adds that another thread's request carried: four threads
 * on one connection, as an ACL user who may not run EVALSHA. */
static void test_server_error_reaches_every_add(void **state)
{
	const char *url = getenv("TALLY_TEST_REDIS_URL");
	static struct refused_add a[4];
	char user[64], b[400];
	redisContext *c = connect_test_server();
	pthread_t th[4];
	tally *t;

	(void)state;
	snprintf(user, sizeof(user), "unit-%ld-np", (long)getpid());
	redisReply *r = redisCommand(
		c, "ACL SETUSER %s reset on >pw ~* &* +@all -evalsha", user);
	assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	snprintf(b, sizeof(b), "redis:url=redis://%s:pw@%s,key=unit-%ld-np",
		 user, url + 8, (long)getpid());
	assert_int_equal(tally_create(&t, b, 0, 0), 0);
	for (int i = 0; i < 4; i++) {
		a[i].t = t;
		assert_int_equal(pthread_create(&th[i], NULL, add_once, &a[i]),
				 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].rc, TALLY_EREMOTE);
		if (strstr(a[i].why, "NOPERM") == NULL)
			fail_msg("add %d: '%s' does not say NOPERM", i,
				 a[i].why);
	}
	tally_destroy(t);
	r = redisCommand(c, "ACL DELUSER %s", user);
	freeReplyObject(r);
	redisFree(c);
}

/* Threads and forked processes, each with connections of their own. */
/* The lesson's inc workload, exact, in every contract: sync with one
 * request in flight or the default four, async, write-behind. */
static void test_workloads_exact(void **state)
{
	static const enum crew_mode modes[] = {CREW_THREADS, CREW_PROCESSES};
	static const char *const contracts[] = {"", ",inflight=1",
						",mode=async", ",flush_ms=5"};
	struct wl_config cfg;
	struct wl_result *res = malloc(sizeof(*res));

	(void)state;
	assert_non_null(res);
	for (size_t c = 0; c < sizeof(contracts) / sizeof(contracts[0]); c++)
		for (int m = 0; m < 2; m++) {
			/* Neither ThreadSanitizer nor qemu-user can follow
			 * a thread started in a process forked from one
			 * with threads (the async and write-behind engines'
			 * own; qemu aborts in its vCPU setup): those run in
			 * the other builds, natively. */
			if ((UNDER_TSAN || getenv("TALLY_TEST_EMULATOR")) &&
			    m == 1 && contracts[c][0] != '\0' &&
			    strstr(contracts[c], "inflight") == NULL)
				continue;
			for (unsigned workers = 1; workers <= 4; workers *= 2) {
				tally *t;

				wl_defaults(WL_INC, &cfg);
				cfg.mode = modes[m];
				cfg.workers = workers;
				cfg.iters = 2000;
				assert_int_equal(
					tally_create(
						&t,
						backend("inc", contracts[c]), 0,
						m ? TALLY_PSHARED : 0),
					0);
				enum harness_verdict v = wl_run(t, &cfg, res);
				if (v != HARNESS_EXACT)
					fail_msg("redis%s, %u %s: %s",
						 contracts[c], workers,
						 crew_mode_name(modes[m]),
						 res->reason);
				tally_destroy(t);
				assert_true(res->expected ==
					    (int64_t)(2000 * workers *
						      (workers + 1) / 2));
			}
		}
	free(res);
}

/* A command on the test server from its own connection, its reply freed;
 * a thread body for doing it while adds run. */
static void *flush_scripts(void *arg)
{
	(void)arg;
	usleep(20000);
	server("SCRIPT FLUSH", "");
	return NULL;
}

static void *kill_clients(void *arg)
{
	(void)arg;
	usleep(20000);
	/* Every normal connection but this one: the backend's, with
	 * requests in flight. */
	server("CLIENT KILL TYPE normal SKIPME yes", "");
	return NULL;
}

/*
 * A CLIENT KILL that lands after the server ran the requests in flight and
 * before their replies went out, the moment a reset costs the most: the
 * server is stopped (for less than a reply timeout) while requests reach
 * it, the kill is written behind them, and it resumes -- it runs what came
 * first, the requests, then the kill, and their replies go with the
 * connection.  Sent again, each must find its number taken.
 */
static void *kill_clients_behind_requests(void *arg)
{
	pid_t pid = server_pid();
	redisContext *c = connect_test_server();
	void *reply = NULL;
	int done = 0;

	(void)arg;
	usleep(20000);
	kill(pid, SIGSTOP);
	usleep(20000); /* the requests in flight, and new ones, arrive */
	redisAppendCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
	while (!done && redisBufferWrite(c, &done) == REDIS_OK)
		;
	usleep(20000);
	kill(pid, SIGCONT);
	if (redisGetReply(c, &reply) == REDIS_OK)
		freeReplyObject(reply);
	redisFree(c);
	return NULL;
}

struct adder {
	tally *t;
	int n;
	int rc;		   /* the first failed add's, told by the main thread */
	char why[320];	   /* and its words */
	_Atomic int *made; /* where given: the adds made, by all adders */
	int paced;	   /* a 1 ms rest every 100 adds */
};

static void *add_many(void *arg)
{
	struct adder *a = arg;

	for (int i = 0; i < a->n && a->rc == 0; i++) {
		if ((a->rc = tally_add(a->t, 1)) != 0)
			snprintf(a->why, sizeof(a->why), "%s",
				 tally_explain(a->rc));
		else if (a->made != NULL)
			atomic_fetch_add(a->made, 1);
		if (a->paced && i % 100 == 99)
			usleep(1000);
	}
	return NULL;
}

/* Four threads add while fault() strikes, on the server at url (NULL: the
 * test server's); afterwards (a flush for the modes that send later) the
 * count is exact, and the server itself holds it.  The adders rest 1 ms
 * every 100 adds, so that the fault lands while adds are still being made
 * in every mode (unpaced, async adds are all made within a few ms). */
static void exact_through_at(const char *url, const char *what,
			     const char *contract, void *(*fault)(void *))
{
	enum { THREADS = 4, EACH = 3000 };
	char extra[128];
	pthread_t th[THREADS], f;
	struct adder a[THREADS];
	tally *t;
	int64_t v;

	/* A fault the backend gets through costs it a few hundred ms; the
	 * deadline only makes one it does not get through fail quickly. */
	snprintf(extra, sizeof(extra), "%s,timeout_ms=300,deadline_ms=3000",
		 contract);
	if (url == NULL)
		url = getenv("TALLY_TEST_REDIS_URL");
	assert_int_equal(tally_create(&t, backend_at(url, what, extra), 0, 0),
			 0);
	for (int i = 0; i < THREADS; i++) {
		a[i] = (struct adder){.t = t, .n = EACH, .paced = 1};
		assert_int_equal(pthread_create(&th[i], NULL, add_many, &a[i]),
				 0);
	}
	assert_int_equal(pthread_create(&f, NULL, fault, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_join(f, NULL);
	for (int i = 0; i < THREADS; i++)
		if (a[i].rc != 0)
			fail_msg("%s%s: an add failed: %s", what, contract,
				 a[i].why);
	int rc = tally_flush(t);
	if (rc != 0)
		fail_msg("%s%s: flush: %s", what, contract, tally_explain(rc));
	assert_int_equal(tally_get(t, &v), 0);
	if (v != THREADS * EACH)
		fail_msg("%s%s: the counter holds %lld, not %d", what, contract,
			 (long long)v, THREADS * EACH);
	v = server_value(what);
	if (v != THREADS * EACH)
		fail_msg("%s%s: the server holds %lld, not %d", what, contract,
			 (long long)v, THREADS * EACH);
	tally_destroy(t);
}

static void exact_through(const char *what, const char *contract,
			  void *(*fault)(void *))
{
	exact_through_at(NULL, what, contract, fault);
}

/* The script vanishes (SCRIPT FLUSH) while requests are in flight: each is
 * loaded again and sent again in order, applied once. */
static void test_script_flush_mid_run_exact(void **state)
{
	(void)state;
	exact_through("sflush", "", flush_scripts);
	exact_through("sflush", ",mode=async", flush_scripts);
	exact_through("sflush", ",flush_ms=2", flush_scripts);
}

/* The server closes the connection (CLIENT KILL) while requests are in
 * flight: they go again on a new one, with their numbers, applied once. */
static void test_connection_killed_mid_run_exact(void **state)
{
	(void)state;
	exact_through("ckill", "", kill_clients);
	exact_through("ckill", ",inflight=16", kill_clients);
	exact_through("ckill", ",mode=async", kill_clients);
	exact_through("ckill", ",flush_ms=2", kill_clients);
}

/* The ACL user of the next test, made before it and removed after it
 * whatever it did. */
static char nokill_user[64];

static int make_nokill_user(void **state)
{
	redisContext *c = connect_test_server();

	(void)state;
	snprintf(nokill_user, sizeof(nokill_user), "unit-%ld-nokill",
		 (long)getpid());
	redisReply *r = redisCommand(
		c, "ACL SETUSER %s reset on >pw ~* &* +@all -client|kill",
		nokill_user);
	int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
	freeReplyObject(r);
	redisFree(c);
	return ok ? 0 : -1;
}

static int remove_nokill_user(void **state)
{
	redisContext *c = connect_test_server();

	(void)state;
	redisReply *r = redisCommand(c, "ACL DELUSER %s", nokill_user);
	freeReplyObject(r);
	redisFree(c);
	return 0;
}

/*
 * A server that forbids CLIENT KILL (an ACL user without client|kill, as
 * managed servers often have): the backend never fences an old connection,
 * so the strict sequence is its only guard against a late copy, and that
 * holds.  First the user is shown unable to CLIENT KILL; then, as that
 * user, each mode stays exact through a connection reset (CLIENT KILL by
 * the test's own admin connection: at a moment it happens to strike, and
 * just after the server ran the requests in flight, their replies lost)
 * and through SCRIPT FLUSH.
 */
static void test_client_kill_forbidden_by_acl_exact(void **state)
{
	const char *url = getenv("TALLY_TEST_REDIS_URL");
	static const char *const contracts[] = {"", ",mode=async",
						",flush_ms=2"};
	char as_user[300];
	redisContext *c = connect_test_server();

	(void)state;
	redisReply *r = redisCommand(c, "AUTH %s pw", nokill_user);
	assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
	assert_true(r != NULL && r->type == REDIS_REPLY_ERROR);
	if (strstr(r->str, "NOPERM") == NULL)
		fail_msg("CLIENT KILL as %s: %s", nokill_user, r->str);
	freeReplyObject(r);
	redisFree(c);
	snprintf(as_user, sizeof(as_user), "redis://%s:pw@%s", nokill_user,
		 url + strlen("redis://"));
	for (size_t i = 0; i < sizeof(contracts) / sizeof(contracts[0]); i++) {
		exact_through_at(as_user, "nokill", contracts[i], kill_clients);
		exact_through_at(as_user, "nokill", contracts[i],
				 kill_clients_behind_requests);
		exact_through_at(as_user, "nokill", contracts[i],
				 flush_scripts);
	}
}

struct stop {
	pid_t pid;
	unsigned ms;	     /* how long the server stays stopped */
	_Atomic int *made;   /* the adders' count */
	int made_at_resume;  /* what it said as the server resumed */
	_Atomic int resumed; /* set just before SIGCONT */
};

static void *resume_later(void *arg)
{
	struct stop *s = arg;
	struct timespec ts = {.tv_sec = (time_t)(s->ms / 1000),
			      .tv_nsec = (long)(s->ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
	s->made_at_resume = atomic_load(s->made);
	atomic_store(&s->resumed, 1);
	kill(s->pid, SIGCONT);
	return NULL;
}

/* Four threads add; once a quarter of their adds are made, the server
 * stops for PAUSE_MS (four reply timeouts, a tenth of the deadline) while
 * they go on (sync: waiting).  The flush starts while it is stopped (sync:
 * each add is its own flush, and they are still being made when it
 * resumes); afterwards the server holds exactly what was added. */
static void exact_through_pause(const char *contract)
{
	enum { THREADS = 4, EACH = 3000, PAUSE_MS = 400 };
	int sync = strstr(contract, "mode=async") == NULL &&
		   strstr(contract, "flush_ms") == NULL;
	char extra[128];
	pthread_t th[THREADS], r;
	struct adder a[THREADS];
	_Atomic int made = 0;
	struct stop s = {.pid = server_pid(), .ms = PAUSE_MS, .made = &made};
	tally *t;
	int64_t v;

	snprintf(extra, sizeof(extra), "%s,timeout_ms=100,deadline_ms=4000",
		 contract);
	assert_int_equal(tally_create(&t, backend("paused", extra), 0, 0), 0);
	for (int i = 0; i < THREADS; i++) {
		a[i] = (struct adder){
			.t = t, .n = EACH, .made = &made, .paced = 1};
		assert_int_equal(pthread_create(&th[i], NULL, add_many, &a[i]),
				 0);
	}
	double t0 = now_s();
	while (atomic_load(&made) < THREADS * EACH / 4 && now_s() - t0 < 5)
		usleep(200);
	kill(s.pid, SIGSTOP);
	assert_int_equal(pthread_create(&r, NULL, resume_later, &s), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	int flush_while_stopped = !atomic_load(&s.resumed);
	int rc = tally_flush(t);
	pthread_join(r, NULL);
	for (int i = 0; i < THREADS; i++)
		if (a[i].rc != 0)
			fail_msg("paused%s: an add failed: %s", contract,
				 a[i].why);
	if (rc != 0)
		fail_msg("paused%s: flush: %s", contract, tally_explain(rc));
	if (sync && s.made_at_resume == THREADS * EACH)
		fail_msg(
			"paused%s: every add was made before the server resumed: the pause missed the run",
			contract);
	if (!sync && !flush_while_stopped)
		fail_msg(
			"paused%s: the flush started after the server resumed: the pause missed it",
			contract);
	v = server_value("paused");
	if (v != THREADS * EACH)
		fail_msg("paused%s: the server holds %lld, not %d", contract,
			 (long long)v, THREADS * EACH);
	assert_int_equal(tally_get(t, &v), 0);
	assert_int_equal(v, THREADS * EACH);
	tally_destroy(t);
}

/*
 * The server stops (SIGSTOP) with requests in flight and resumes within
 * the deadline.  Each request in flight loses its reply (the connection is
 * given up after timeout_ms, and new ones get no answer while it is
 * stopped); the server, resumed, runs the first copies still queued on
 * the connections given up, and the client sends each again, with its
 * number, on a new one: applied once.  In async and write-behind mode the
 * flush waits through the pause.
 */
static void test_server_paused_mid_flush_exact(void **state)
{
	(void)state;
	if (server_pid() <= 0)
		skip();
	exact_through_pause("");
	exact_through_pause(",mode=async");
	exact_through_pause(",flush_ms=2");
}

/* What a child that adds until it is killed has done, in a page it shares
 * with the test (the child writes, the test reads once it is dead). */
struct ledger {
	_Atomic int64_t added; /* every add it began, counted before */
	_Atomic int64_t acked; /* those it was told are applied */
	_Atomic int made;      /* its tally_create returned */
	_Atomic int flushing;  /* inside tally_flush (sync: tally_add) */
	_Atomic int rc;	       /* a create, add or flush that failed */
	char why[320];	       /* and its words */
};

/*
 * The child's life: it makes the counter (after the fork: a process has
 * clients of its own), then adds, and flushes every 64 adds (sync: each
 * add is its own flush), until it is killed -- 20 s at most.  The deltas
 * shrink by one an add, so that a request applied twice adds more than
 * every add still pending: in sync mode any double count shows as a
 * server total above what was added.
 */
static void add_until_killed(struct ledger *l, const char *b, int sync)
{
	tally *t;
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(20);
	if ((rc = tally_create(&t, b, 0, 0)) != 0)
		goto fail;
	atomic_store(&l->made, 1);
	for (int64_t d = INT64_C(1) << 30;; d--) {
		atomic_fetch_add(&l->added, d);
		atomic_store(&l->flushing, sync);
		if ((rc = tally_add(t, d)) != 0)
			goto fail;
		if (sync) {
			atomic_fetch_add(&l->acked, d);
			atomic_store(&l->flushing, 0);
			continue;
		}
		if (d % 64 != 0)
			continue;
		int64_t before = atomic_load(&l->added);
		atomic_store(&l->flushing, 1);
		if ((rc = tally_flush(t)) != 0)
			goto fail;
		atomic_store(&l->acked, before);
		atomic_store(&l->flushing, 0);
	}
fail:
	snprintf(l->why, sizeof(l->why), "%s", tally_explain(rc));
	atomic_store(&l->rc, rc);
	_exit(3);
}

/* Until what holds, or the child fails, or s seconds pass: whether it
 * held. */
static int child_until(const struct ledger *l,
		       int (*what)(const struct ledger *, int64_t), int64_t arg,
		       double s)
{
	double t0 = now_s();

	while (!what(l, arg) && atomic_load(&l->rc) == 0 && now_s() - t0 < s)
		usleep(100);
	return what(l, arg);
}

static int acked_over(const struct ledger *l, int64_t n)
{
	return atomic_load(&l->acked) > n;
}

static int in_flush(const struct ledger *l, int64_t n)
{
	(void)n;
	return atomic_load(&l->flushing);
}

enum kill_when {
	KILL_LIVE,    /* the server answers */
	KILL_STOPPED, /* the server stopped past a reply timeout */
	KILL_RESUMED, /* just after: its copies and resends answered */
	KILL_WHENS
};

/* One round: a child adds, and is SIGKILLed in a flush; then the server
 * holds at least what it was told was applied, and at most what it added.
 * 0, or 1 when the kill missed the flush (the round is tried again). */
static int kill_round(const char *b, int sync, enum kill_when when,
		      unsigned delay_us, struct ledger *l)
{
	static const char *const name[] = {"live", "stopped", "resumed"};
	pid_t spid = server_pid();
	int status;

	memset(l, 0, sizeof(*l));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		add_until_killed(l, b, sync);
	int ok = child_until(l, acked_over, 0, 5);
	if (ok && when != KILL_LIVE) {
		int64_t before = atomic_load(&l->acked);
		kill(spid, SIGSTOP);
		usleep(150000); /* its requests time out, and go again */
		if (when == KILL_RESUMED) {
			kill(spid, SIGCONT);
			ok = child_until(l, acked_over, before, 3);
		}
	}
	if (ok)
		ok = child_until(l, in_flush, 0, 2);
	if (ok) {
		struct timespec ts = {.tv_nsec = (long)delay_us * 1000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	kill(spid, SIGCONT);
	usleep(20000); /* what the child left queued runs */
	if (atomic_load(&l->rc) != 0)
		fail_msg("%s, %s: the child failed: %s", b, name[when], l->why);
	if (!ok && !atomic_load(&l->made))
		fail_msg(
			"%s, %s: the child's tally_create did not return within 5 s",
			b, name[when]);
	if (!ok)
		fail_msg(
			"%s, %s: the child had nothing acknowledged, or no flush, within the time given",
			b, name[when]);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("%s, %s: the child ended by itself", b, name[when]);
	int64_t v = server_value("sigkill"), acked = atomic_load(&l->acked),
		added = atomic_load(&l->added);
	if (v < acked)
		fail_msg(
			"%s, %s: the server holds %lld, less than the %lld acknowledged",
			b, name[when], (long long)v, (long long)acked);
	if (v > added)
		fail_msg(
			"%s, %s: the server holds %lld, more than the %lld added: counted twice",
			b, name[when], (long long)v, (long long)added);
	return !atomic_load(&l->flushing);
}

/* Rounds of each kind for one contract, each tried until the kill lands
 * in a flush (a few tries at most). */
static void killed_mid_flush(const char *contract, struct ledger *l)
{
	int sync = strstr(contract, "mode=async") == NULL &&
		   strstr(contract, "flush_ms") == NULL;
	char extra[128];

	snprintf(extra, sizeof(extra), "%s,timeout_ms=100,deadline_ms=4000",
		 contract);
	const char *b = backend("sigkill", extra);
	for (int round = 0; round < 2 * KILL_WHENS; round++) {
		enum kill_when when = (enum kill_when)(round % KILL_WHENS);
		int tries = 0;

		while (kill_round(b, sync, when, (unsigned)(round * 97 % 300),
				  l) != 0)
			if (++tries == 5)
				fail_msg("%s: 5 kills missed the flush", b);
	}
}

/*
 * A client SIGKILLed in a flush, with requests in flight: the server ends
 * up with at least every add the client was told is applied, and at most
 * every add it made -- never one twice.  Kills land while the server
 * answers, while it is stopped (the flush waiting, requests on the wire
 * and timed out: the server runs them once it resumes), and just after it
 * resumed (the timed-out requests both ran and went again: found applied).
 */
static void test_client_killed_mid_flush(void **state)
{
	struct ledger *l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	(void)state;
	assert_true(l != MAP_FAILED);
	if (server_pid() <= 0)
		skip();
	killed_mid_flush("", l);
	/* A forked child's own engine thread: neither ThreadSanitizer nor
	 * qemu-user follows it (see test_workloads_exact). */
	if (!UNDER_TSAN && getenv("TALLY_TEST_EMULATOR") == NULL) {
		killed_mid_flush(",mode=async", l);
		killed_mid_flush(",flush_ms=2", l);
	}
	munmap(l, sizeof(*l));
}

/* async: an add returns before it is applied, and a flush waits for it;
 * write-behind: another reader sees the adds after a flush interval, not
 * before they are sent.  tally_get() counts this process's unsent sum. */
static void test_async_and_write_behind(void **state)
{
	tally *t, *other;
	int64_t v;

	(void)state;
	assert_int_equal(
		tally_create(&t, backend("async", ",mode=async"), 7, 0), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(tally_add(t, 2), 0);
	assert_int_equal(tally_flush(t), 0);
	assert_int_equal(tally_create(&other, backend("async", ",keep"), 0, 0),
			 0);
	assert_int_equal(tally_get(other, &v), 0);
	assert_true(v == 2007);
	tally_destroy(other);
	tally_destroy(t);

	assert_int_equal(
		tally_create(&t, backend("behind", ",flush_ms=300"), 0, 0), 0);
	assert_int_equal(tally_create(&other, backend("behind", ",keep"), 0, 0),
			 0);
	assert_int_equal(tally_add(t, 5), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 5); /* the server's 0 and the 5 not yet sent */
	assert_int_equal(tally_get(other, &v), 0);
	assert_true(v == 0 || v == 5); /* 5 only if a flush just ran */
	double t0 = now_s();
	do {
		assert_int_equal(tally_get(other, &v), 0);
	} while (v != 5 && now_s() - t0 < 5);
	assert_true(v == 5);
	assert_int_equal(tally_add(t, 1), 0);
	assert_int_equal(tally_flush(t), 0);
	assert_int_equal(tally_get(other, &v), 0);
	assert_true(v == 6);
	tally_destroy(other);
	tally_destroy(t);
}

/* An unreachable server: async adds return at once, and the flush says
 * how much was not applied, by the server's address and reason. */
/* This client's record key on the test server (the only one under KEY),
 * or with forget, every record under KEY deleted. */
static void record_of(const char *key, char *out, size_t size, int forget)
{
	redisContext *c = connect_test_server();
	redisReply *r = redisCommand(c, "KEYS %s.tally-id.*", key);

	assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY &&
		    r->elements >= 1);
	if (!forget) {
		assert_int_equal(r->elements, 1);
		snprintf(out, size, "%s", r->element[0]->str);
	}
	for (size_t i = 0; forget && i < r->elements; i++)
		freeReplyObject(redisCommand(c, "DEL %s", r->element[i]->str));
	freeReplyObject(r);
	redisFree(c);
}

/* Two adds of 1, then the server forgets KEY and every record whole (a
 * restart without persistence): an add of delta goes in, the next flush
 * tells the loss in the words told, and the counter reads delta. */
static void forgotten_whole(tally *t, redisContext *c, const char *key,
			    int64_t delta, const char *told)
{
	char rec[256];
	int64_t v;

	assert_int_equal(tally_add(t, 1), 0);
	assert_int_equal(tally_add(t, 1), 0);
	record_of(key, rec, sizeof(rec), 1);
	freeReplyObject(redisCommand(c, "DEL %s", key));
	assert_int_equal(tally_add(t, delta), 0);
	assert_int_equal(tally_flush(t), TALLY_EREMOTE);
	assert_non_null(strstr(tally_explain(TALLY_EREMOTE), told));
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == delta);
}

/*
 * A server that forgets what it acknowledged is told, exactly.  The state
 * of a replica three requests behind is planted (counter and record as
 * they were after request 7 of 10: a failover to it); the next add finds
 * the hole (TALLYGAP), goes in under a new identity, and the next flush
 * (sync: nothing else to wait for) says that 3 requests carrying 27 were
 * lost, once.  Then the server forgets the counter and the record whole (a
 * restart without persistence): the same, with all this identity had; and
 * again, with only what came since.
 */
static void test_server_forgetting_is_told(void **state)
{
	char key[128], rec[256];
	tally *t;
	int64_t v;

	(void)state;
	snprintf(key, sizeof(key), "unit-%ld-forget", (long)getpid());
	assert_int_equal(tally_create(&t, backend("forget", ""), 0, 0), 0);
	for (int i = 1; i <= 10; i++)
		assert_int_equal(tally_add(t, i), 0);
	record_of(key, rec, sizeof(rec), 0);
	redisContext *c = connect_test_server();
	freeReplyObject(redisCommand(c, "SET %s 28", key));
	freeReplyObject(redisCommand(c, "SET %s %s", rec, "7 28 28"));
	assert_int_equal(tally_add(t, 100), 0);
	assert_int_equal(tally_flush(t), TALLY_EREMOTE);
	assert_non_null(strstr(tally_explain(TALLY_EREMOTE),
			       "3 acknowledged requests carrying 27 lost"));
	assert_int_equal(tally_flush(t), 0); /* told once */
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 128);

	forgotten_whole(t, c, key, 5,
			"3 acknowledged requests carrying 102 lost");
	/* Forgotten whole again: only what came since is told (5, 1, 1),
	 * not the first loss a second time. */
	forgotten_whole(t, c, key, 2,
			"3 acknowledged requests carrying 7 lost");
	redisFree(c);
	tally_destroy(t);
}

static void test_flush_tells_what_was_not_applied(void **state)
{
	tally *t;

	(void)state;
	/* A counter made while the server answers, then pointed nowhere is
	 * not possible; a port nobody listens on refuses creation.  So the
	 * server is paused past the deadline instead. */
	static struct pause p; /* static: see test_lost_reply_applied_once */
	pthread_t th;

	p = (struct pause){.pid = server_pid(), .ms = 1500};
	if (p.pid <= 0)
		skip();
	assert_int_equal(
		tally_create(
			&t,
			backend("lost",
				",mode=async,timeout_ms=100,deadline_ms=400"),
			0, 0),
		0);
	assert_int_equal(pthread_create(&th, NULL, pause_server, &p), 0);
	usleep(50000);
	for (int i = 0; i < 100; i++)
		assert_int_equal(tally_add(t, 3), 0);
	int rc = tally_flush(t);
	pthread_join(th, NULL);
	assert_true(rc == TALLY_EUNKNOWN || rc == TALLY_EREMOTE);
	const char *why = tally_explain(rc);
	if (strstr(why, "127.0.0.1") == NULL || strstr(why, "request") == NULL)
		fail_msg("the flush says: %s", why);
	assert_int_equal(tally_flush(t), 0); /* told once */
	tally_destroy(t);
}

int main(void)
{
	if (getenv("TALLY_TEST_REDIS_URL") == NULL) {
		fprintf(stderr, "unit_redis: set TALLY_TEST_REDIS_URL\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wraps_like_every_backend),
		cmocka_unit_test(test_keep_joins_an_existing_counter),
		cmocka_unit_test(test_bad_options_and_unreachable_server),
		cmocka_unit_test(test_connect_failures_fast_and_named),
		cmocka_unit_test(test_server_error_reaches_every_add),
		cmocka_unit_test(
			test_acl_user_authenticates_password_never_shown),
		cmocka_unit_test(test_workloads_exact),
		cmocka_unit_test(test_wrong_type_named_never_overwritten),
		cmocka_unit_test(test_add_fetch_tickets),
		cmocka_unit_test(test_lost_reply_applied_once),
		cmocka_unit_test(test_request_replayed_changes_nothing),
		cmocka_unit_test(test_script_flush_mid_run_exact),
		cmocka_unit_test(test_connection_killed_mid_run_exact),
		cmocka_unit_test_setup_teardown(
			test_client_kill_forbidden_by_acl_exact,
			make_nokill_user, remove_nokill_user),
		cmocka_unit_test(test_server_paused_mid_flush_exact),
		cmocka_unit_test(test_client_killed_mid_flush),
		cmocka_unit_test(test_async_and_write_behind),
		cmocka_unit_test(test_flush_tells_what_was_not_applied),
		cmocka_unit_test(test_server_forgetting_is_told),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
