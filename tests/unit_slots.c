/* The redis backend's slot routing (backends/redis/slots.c): CRC16 and hash
 * tags, the CLUSTER SLOTS map from good and hostile replies, -MOVED and
 * -ASK.  `unit_slots live` checks the same code against a running cluster
 * ($TALLY_TEST_CLUSTER_PORT, one of its nodes on 127.0.0.1). */
#include "slots.h"
#include "tally.h"

#include <hiredis/hiredis.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- hash slots ---- */

static unsigned slot_of(const char *key)
{
	return tally__redis_key_slot(key, strlen(key));
}

static void test_crc16(void **unused)
{
	(void)unused;
	/* The check value of CRC-16/XMODEM, and Redis's own example. */
	assert_int_equal(tally__redis_crc16("123456789", 9), 0x31C3);
	assert_int_equal(tally__redis_crc16("", 0), 0);
	assert_int_equal(tally__redis_crc16("A", 1), 0x58E5);
}

static void test_key_slot(void **unused)
{
	(void)unused;
	/* What CLUSTER KEYSLOT answers (Redis 7.0). */
	assert_int_equal(slot_of("foo"), 12182);
	assert_int_equal(slot_of("bar"), 5061);
	assert_int_equal(slot_of("123456789"), 0x31C3 % 16384);
	assert_int_equal(slot_of("{user1000}.following"),
			 slot_of("{user1000}.followers"));
	assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
	/* An empty tag is no tag; the first '{' and the next '}' count. */
	assert_int_equal(slot_of("foo{}{bar}"),
			 tally__redis_crc16("foo{}{bar}", 10) % 16384);
	assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
	assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
	assert_int_equal(slot_of("{a"), tally__redis_crc16("{a", 2) % 16384);
	assert_int_equal(slot_of("a}b{"),
			 tally__redis_crc16("a}b{", 4) % 16384);
	/* The length counts, not a NUL: a key may hold any byte. */
	assert_int_equal(tally__redis_key_slot("foo\0bar", 3), 12182);
	assert_int_not_equal(tally__redis_key_slot("foo\0bar", 7), 12182);
	/* Shard keys of one counter, "{K#i}": each its own tag. */
	assert_int_equal(slot_of("{jobs#3}"), slot_of("{jobs#3}.tally-id.x"));
}

/* ---- replies, built by hiredis's own reader from RESP ---- */

/* RESP written with "\n" for readability, sent with "\r\n". */
static redisReply *resp(const char *text)
{
	size_t n = strlen(text), j = 0;
	char *buf = malloc(2 * n + 1);
	redisReader *rd = redisReaderCreate();
	void *reply = NULL;

	assert_non_null(buf);
	assert_non_null(rd);
	for (size_t i = 0; i < n; i++) {
		if (text[i] == '\n')
			buf[j++] = '\r';
		buf[j++] = text[i];
	}
	assert_int_equal(redisReaderFeed(rd, buf, j), REDIS_OK);
	assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
	assert_non_null(reply);
	redisReaderFree(rd);
	free(buf);
	return reply;
}

/* A map built from text, which must be one. */
static void build(struct tally__redis_slotmap *m, const char *text)
{
	redisReply *r = resp(text);
	char why[256] = "";
	int rc = tally__redis_slotmap_build(m, r, "10.0.0.9", why, sizeof(why));

	if (rc != 0)
		fail_msg("not a map: %s", why);
	freeReplyObject(r);
}

static const char *host_of(const struct tally__redis_slotmap *m, int node)
{
	assert_true(node >= 0 && (unsigned)node < m->nnodes);
	return m->nodes[node].host;
}

static int port_of(const struct tally__redis_slotmap *m, int node)
{
	assert_true(node >= 0 && (unsigned)node < m->nnodes);
	return m->nodes[node].port;
}

/* What Redis 7.0.15 answers for three primaries with a replica each:
 * [start, end, [ip, port, id, metadata]...], here out of order. */
static const char three[] = "*3\n"
			    "*4\n:5461\n:10922\n"
			    "*4\n$9\n127.0.0.1\n:7001\n$2\nid\n*0\n"
			    "*4\n$9\n127.0.0.1\n:7004\n$2\nid\n*0\n"
			    "*4\n:0\n:5460\n"
			    "*4\n$9\n127.0.0.1\n:7000\n$2\nid\n*0\n"
			    "*4\n$9\n127.0.0.1\n:7003\n$2\nid\n*0\n"
			    "*4\n:10923\n:16383\n"
			    "*4\n$9\n127.0.0.1\n:7002\n$2\nid\n*0\n"
			    "*4\n$9\n127.0.0.1\n:7005\n$2\nid\n*0\n";

static void test_map_three(void **unused)
{
	struct tally__redis_slotmap m;
	unsigned nr = 99;

	(void)unused;
	build(&m, three);
	assert_int_equal(m.nnodes, 6);
	assert_int_equal(m.nranges, 3);
	assert_int_equal(m.covered, 16384);
	assert_int_equal(
		port_of(&m, tally__redis_slotmap_lookup(&m, 0, 0, &nr)), 7000);
	assert_int_equal(nr, 1);
	assert_int_equal(
		port_of(&m, tally__redis_slotmap_lookup(&m, 5460, 0, NULL)),
		7000);
	assert_int_equal(
		port_of(&m, tally__redis_slotmap_lookup(&m, 5460, 1, NULL)),
		7003);
	assert_int_equal(
		port_of(&m, tally__redis_slotmap_lookup(&m, 5461, 0, NULL)),
		7001);
	assert_int_equal(
		port_of(&m, tally__redis_slotmap_lookup(&m, 12182, 0, NULL)),
		7002);
	assert_int_equal(
		port_of(&m, tally__redis_slotmap_lookup(&m, 16383, 1, NULL)),
		7005);
	assert_string_equal(
		host_of(&m, tally__redis_slotmap_lookup(&m, 1, 0, NULL)),
		"127.0.0.1");
	/* Past its replicas, past the slots. */
	assert_int_equal(tally__redis_slotmap_lookup(&m, 0, 2, NULL), -1);
	assert_int_equal(tally__redis_slotmap_lookup(&m, 16384, 0, NULL), -1);
	tally__redis_slotmap_free(&m);
	assert_null(m.nodes);
}

/* A primary with several ranges is one node; slots no node serves are
 * gaps that the lookup says; older servers' [host, port] entries; nodes
 * whose address is unknown (nil or "": the asked host; "?": none). */
static void test_map_shapes(void **unused)
{
	struct tally__redis_slotmap m;
	unsigned nr = 99;

	(void)unused;
	build(&m, "*3\n"
		  "*3\n:0\n:99\n*2\n$1\na\n:1\n"
		  "*3\n:200\n:299\n*2\n$1\na\n:1\n"
		  "*3\n:300\n:300\n*2\n$1\nb\n:1\n");
	assert_int_equal(m.nnodes, 2);
	assert_int_equal(m.covered, 201);
	assert_int_equal(tally__redis_slotmap_lookup(&m, 99, 0, NULL),
			 tally__redis_slotmap_lookup(&m, 200, 0, NULL));
	assert_int_equal(tally__redis_slotmap_lookup(&m, 100, 0, &nr), -1);
	assert_int_equal(nr, 99); /* untouched: no node serves slot 100 */
	assert_int_equal(tally__redis_slotmap_lookup(&m, 199, 0, NULL), -1);
	assert_int_equal(tally__redis_slotmap_lookup(&m, 301, 0, NULL), -1);
	assert_int_equal(tally__redis_slotmap_lookup(&m, 16383, 0, NULL), -1);
	assert_string_equal(
		host_of(&m, tally__redis_slotmap_lookup(&m, 300, 0, NULL)),
		"b");
	tally__redis_slotmap_free(&m);

	build(&m, "*0\n");
	assert_int_equal(m.covered, 0);
	assert_int_equal(tally__redis_slotmap_lookup(&m, 0, 0, NULL), -1);
	tally__redis_slotmap_free(&m);

	build(&m, "*1\n*5\n:0\n:16383\n"
		  "*3\n$-1\n:7000\n$2\nid\n"
		  "*3\n$1\n?\n:7001\n$2\nid\n"
		  "*3\n$0\n\n:7002\n$2\nid\n");
	assert_int_equal(m.nnodes, 2);
	assert_string_equal(
		host_of(&m, tally__redis_slotmap_lookup(&m, 0, 0, &nr)),
		"10.0.0.9");
	assert_int_equal(nr, 1); /* the "?" replica is left out */
	assert_int_equal(
		port_of(&m, tally__redis_slotmap_lookup(&m, 0, 1, NULL)), 7002);
	tally__redis_slotmap_free(&m);
}

/* Each must be refused with a reason, and leave the map untouched. */
static void refused(const char *text, const char *asked, const char *words)
{
	struct tally__redis_slotmap m, before;
	redisReply *r = resp(text);
	char why[256] = "";

	memset(&m, 0x5a, sizeof(m));
	before = m;
	assert_int_equal(
		tally__redis_slotmap_build(&m, r, asked, why, sizeof(why)),
		TALLY_EREMOTE);
	if (strstr(why, words) == NULL)
		fail_msg("refused as \"%s\", not for \"%s\"", why, words);
	assert_memory_equal(&m, &before, sizeof(m));
	freeReplyObject(r);
}

#define NODE(port) "*3\n$1\nh\n:" #port "\n$2\nid\n"

static void test_map_refused(void **unused)
{
	(void)unused;
	refused(":1\n", "h", "not an array");
	refused("-ERR This instance has cluster support disabled\n", "h",
		"not an array");
	refused("$5\nslots\n", "h", "not an array");
	refused("*1\n:0\n", "h", "a range that is not");
	refused("*1\n*2\n:0\n:1\n", "h", "a range that is not");
	refused("*1\n*3\n$1\n0\n:1\n" NODE(1), "h", "a range that is not");
	refused("*1\n*3\n:0\n*0\n" NODE(1), "h", "a range that is not");
	refused("*1\n*3\n:5\n:4\n" NODE(1), "h", "not within");
	refused("*1\n*3\n:-1\n:4\n" NODE(1), "h", "not within");
	refused("*1\n*3\n:0\n:16384\n" NODE(1), "h", "not within");
	refused("*1\n*3\n:0\n:9223372036854775807\n" NODE(1), "h",
		"not within");
	refused("*2\n*3\n:0\n:100\n" NODE(1) "*3\n:100\n:200\n" NODE(2), "h",
		"slot 100 is in two ranges");
	refused("*2\n*3\n:50\n:60\n" NODE(1) "*3\n:0\n:16383\n" NODE(2), "h",
		"slot 50 is in two ranges");
	refused("*2\n*3\n:7\n:7\n" NODE(1) "*3\n:7\n:7\n" NODE(1), "h",
		"two ranges");
	refused("*1\n*3\n:0\n:1\n:7000\n", "h", "a node that is not");
	refused("*1\n*3\n:0\n:1\n*1\n$1\nh\n", "h", "a node that is not");
	refused("*1\n*3\n:0\n:1\n*2\n:1\n:7000\n", "h", "a node that is not");
	refused("*1\n*3\n:0\n:1\n*2\n$1\nh\n$4\n7000\n", "h",
		"a node that is not");
	refused("*1\n*3\n:0\n:1\n*2\n+h\n:7000\n", "h", "a node that is not");
	refused("*1\n*3\n:0\n:1\n" NODE(0), "h", "port 0, not 1..65535");
	refused("*1\n*3\n:0\n:1\n" NODE(65536), "h", "port 65536");
	refused("*1\n*3\n:0\n:1\n" NODE(-1), "h", "port -1");
	refused("*1\n*4\n:0\n:1\n" NODE(1) NODE(99999), "h", "port 99999");
	refused("*1\n*3\n:0\n:1\n*2\n$3\na b\n:1\n", "h", "host name");
	refused("*1\n*3\n:0\n:1\n*2\n$3\na\tb\n:1\n", "h", "host name");
	refused("*1\n*3\n:0\n:1\n*2\n$3\na\377b\n:1\n", "h", "host name");
	/* No address for a primary: "?", or "" with no host asked. */
	refused("*1\n*3\n:0\n:1\n*2\n$1\n?\n:1\n", "h", "no known address");
	refused("*1\n*3\n:0\n:1\n*2\n$0\n\n:1\n", NULL, "no known address");
	refused("*1\n*3\n:0\n:1\n*2\n$-1\n:1\n", "", "no known address");
	/* A range refused after one that was taken: nothing is kept. */
	refused("*2\n*3\n:0\n:1\n" NODE(1) "*3\n:2\n:3\n*2\n$1\n?\n:1\n", "h",
		"no known address");
}

/* Bytes hiredis hands over that the "\n" helper cannot write, and replies
 * too large to write by hand. */
static void test_map_hostile(void **unused)
{
	struct tally__redis_slotmap m;
	redisReader *rd;
	void *reply;
	char why[256] = "", buf[512];
	size_t cap = 1 << 22, n = 0;
	char *big = malloc(cap);

	(void)unused;
	assert_non_null(big);
	/* A NUL inside a host. */
	static const char nul[] = "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n"
				  ":1\r\n";
	rd = redisReaderCreate();
	assert_int_equal(redisReaderFeed(rd, nul, sizeof(nul) - 1), REDIS_OK);
	assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
	assert_int_equal(
		tally__redis_slotmap_build(&m, reply, "h", why, sizeof(why)),
		TALLY_EREMOTE);
	assert_non_null(strstr(why, "host name"));
	freeReplyObject(reply);

	/* A host of 255 bytes is one; of 256, not. */
	for (int len = 255; len <= 256; len++) {
		int k = snprintf(buf, sizeof(buf),
				 "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$%d\r\n", len);
		memset(buf + k, 'x', (size_t)len);
		k += len;
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, "\r\n:1\r\n");
		assert_int_equal(redisReaderFeed(rd, buf, (size_t)k), REDIS_OK);
		assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
		assert_int_equal(tally__redis_slotmap_build(&m, reply, "h", why,
							    sizeof(why)),
				 len == 255 ? 0 : TALLY_EREMOTE);
		if (len == 255) {
			assert_int_equal(strlen(m.nodes[0].host), 255);
			tally__redis_slotmap_free(&m);
		}
		freeReplyObject(reply);
	}

	/* More replicas than a range may have (16). */
	n = (size_t)snprintf(big, cap, "*1\r\n*20\r\n:0\r\n:1\r\n");
	for (int i = 0; i < 18; i++)
		n += (size_t)snprintf(big + n, cap - n,
				      "*2\r\n$1\r\nh\r\n:%d\r\n", i + 1);
	assert_int_equal(redisReaderFeed(rd, big, n), REDIS_OK);
	assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
	assert_int_equal(
		tally__redis_slotmap_build(&m, reply, "h", why, sizeof(why)),
		TALLY_EREMOTE);
	assert_non_null(strstr(why, "more than 16 replicas"));
	freeReplyObject(reply);

	/* 16384 one-slot ranges on 1024 nodes: a map; one node more, or
	 * one range more than there are slots: not. */
	for (int ranges = 16384; ranges <= 16385; ranges++) {
		for (int nodes = 1024; nodes <= 1025; nodes++) {
			if (ranges == 16385 && nodes == 1025)
				continue;
			n = (size_t)snprintf(big, cap, "*%d\r\n", ranges);
			for (int i = 0; i < ranges; i++)
				n += (size_t)snprintf(
					big + n, cap - n,
					"*3\r\n:%d\r\n:%d\r\n*2\r\n$1\r\nh\r\n:%d\r\n",
					i, i, 1 + i % nodes);
			assert_true(n < cap);
			assert_int_equal(redisReaderFeed(rd, big, n), REDIS_OK);
			assert_int_equal(redisReaderGetReply(rd, &reply),
					 REDIS_OK);
			int rc = tally__redis_slotmap_build(&m, reply, "h", why,
							    sizeof(why));
			if (ranges == 16384 && nodes == 1024) {
				assert_int_equal(rc, 0);
				assert_int_equal(m.nnodes, 1024);
				assert_int_equal(m.covered, 16384);
				assert_int_equal(
					port_of(&m,
						tally__redis_slotmap_lookup(
							&m, 16383, 0, NULL)),
					1 + 16383 % 1024);
				tally__redis_slotmap_free(&m);
			} else {
				assert_int_equal(rc, TALLY_EREMOTE);
				assert_non_null(strstr(
					why,
					ranges == 16385
						? "more than there are slots"
						: "more than 1024 nodes"));
			}
			freeReplyObject(reply);
		}
	}
	redisReaderFree(rd);
	free(big);
}

/* ---- redirects ---- */

static void redirect(const char *err, enum tally__redis_redirect_kind kind,
		     unsigned slot, const char *host, int port)
{
	struct tally__redis_redirect r;

	memset(&r, 0x5a, sizeof(r));
	if (tally__redis_redirect_parse(err, strlen(err), &r) != kind)
		fail_msg("\"%s\" is not parsed as redirect kind %d", err, kind);
	assert_int_equal(r.kind, kind);
	assert_int_equal(r.slot, slot);
	assert_string_equal(r.host, host);
	assert_int_equal(r.port, port);
}

static void not_redirect(const char *err, size_t len)
{
	struct tally__redis_redirect r, before;

	memset(&r, 0x5a, sizeof(r));
	before = r;
	if (tally__redis_redirect_parse(err, len, &r) !=
	    TALLY__REDIS_NO_REDIRECT)
		fail_msg("\"%.*s\" is taken for a redirect", (int)len, err);
	assert_memory_equal(&r, &before, sizeof(r));
}

#define NOT(s) not_redirect(s, strlen(s))

static void test_redirects(void **unused)
{
	char buf[300];

	(void)unused;
	redirect("MOVED 3999 127.0.0.1:6381", TALLY__REDIS_MOVED, 3999,
		 "127.0.0.1", 6381);
	redirect("-MOVED 3999 127.0.0.1:6381", TALLY__REDIS_MOVED, 3999,
		 "127.0.0.1", 6381);
	redirect("ASK 3999 127.0.0.1:6381", TALLY__REDIS_ASK, 3999, "127.0.0.1",
		 6381);
	redirect("-ASK 0 h:1", TALLY__REDIS_ASK, 0, "h", 1);
	redirect("MOVED 16383 node-7.example.com:65535", TALLY__REDIS_MOVED,
		 16383, "node-7.example.com", 65535);
	redirect("MOVED 3999 ::1:7000", TALLY__REDIS_MOVED, 3999, "::1", 7000);
	redirect("ASK 12 fe80::1:2:3:7000", TALLY__REDIS_ASK, 12, "fe80::1:2:3",
		 7000);
	/* Redis 7: "" is the host that sent the error. */
	redirect("MOVED 3999 :7000", TALLY__REDIS_MOVED, 3999, "", 7000);
	redirect("MOVED 07 h:007", TALLY__REDIS_MOVED, 7, "h", 7);

	NOT("");
	NOT("-");
	NOT("ERR unknown command");
	NOT("MOVED");
	NOT("MOVED ");
	NOT("MOVED 3999");
	NOT("MOVED 3999 ");
	NOT("MOVED 3999 h");
	NOT("MOVED 3999 h:");
	NOT("MOVED 3999 :");
	NOT("MOVED 3999 h:0");
	NOT("MOVED 3999 h:65536");
	NOT("MOVED 3999 h:99999999999999999999");
	NOT("MOVED 3999 h:-1");
	NOT("MOVED 3999 h:+1");
	NOT("MOVED 3999 h:1 ");
	NOT("MOVED 3999 h:1\r\n");
	NOT("MOVED 3999 h:1x");
	NOT("MOVED 3999 h:7000 extra");
	NOT("MOVED 3999  h:1");
	NOT("MOVED 3999 a b:1");
	NOT("MOVED 16384 h:1");
	NOT("MOVED -1 h:1");
	NOT("MOVED +1 h:1");
	NOT("MOVED 99999999999999999999 h:1");
	NOT("MOVED  3999 h:1");
	NOT("MOVED x h:1");
	NOT("MOVED 3999");
	NOT("moved 3999 h:1");
	NOT("MOVEDX 3999 h:1");
	NOT("ASKING");
	NOT("ASK 1");
	NOT("--MOVED 1 h:1");
	NOT("TRYAGAIN Multiple keys request during rehashing of slot");
	not_redirect("MOVED 1 a\0b:1", 13);
	/* A host of 255 bytes is one; of 256, not. */
	for (int len = 255; len <= 256; len++) {
		int k = snprintf(buf, sizeof(buf), "MOVED 1 ");

		memset(buf + k, 'x', (size_t)len);
		snprintf(buf + k + len, sizeof(buf) - (size_t)(k + len), ":1");
		if (len == 255) {
			struct tally__redis_redirect r;

			assert_int_equal(tally__redis_redirect_parse(
						 buf, strlen(buf), &r),
					 TALLY__REDIS_MOVED);
			assert_int_equal(strlen(r.host), 255);
		} else {
			NOT(buf);
		}
	}
	/* Only len bytes are read: "MOVED 1 h:12|345". */
	{
		struct tally__redis_redirect r;

		assert_int_equal(
			tally__redis_redirect_parse("MOVED 1 h:12345", 12, &r),
			TALLY__REDIS_MOVED);
		assert_int_equal(r.port, 12);
	}
}

/* ---- against a running cluster ---- */

struct live {
	struct tally__redis_slotmap m;
	redisContext *c[8]; /* by node index */
	char id[8][64];	    /* each node's CLUSTER MYID */
};

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r == NULL)
		fail_msg("no reply: %s", c->errstr);
	return r;
}

static void live_open(struct live *l)
{
	const char *p = getenv("TALLY_TEST_CLUSTER_PORT");
	struct timeval tv = {2, 0};
	redisContext *c;
	redisReply *r;
	char why[256] = "";

	if (p == NULL)
		fail_msg("unit_slots live: set TALLY_TEST_CLUSTER_PORT");
	c = redisConnectWithTimeout("127.0.0.1", atoi(p), tv);
	assert_true(c != NULL && c->err == 0);
	r = cmd(c, "CLUSTER SLOTS");
	if (tally__redis_slotmap_build(&l->m, r, "127.0.0.1", why,
				       sizeof(why)) != 0)
		fail_msg("CLUSTER SLOTS from port %s: %s", p, why);
	freeReplyObject(r);
	redisFree(c);
	assert_int_equal(l->m.covered, 16384);
	assert_true(l->m.nnodes >= 3 && l->m.nnodes <= 8);
	for (unsigned i = 0; i < l->m.nnodes; i++) {
		l->c[i] = redisConnectWithTimeout(l->m.nodes[i].host,
						  l->m.nodes[i].port, tv);
		assert_true(l->c[i] != NULL && l->c[i]->err == 0);
		r = cmd(l->c[i], "CLUSTER MYID");
		assert_int_equal(r->type, REDIS_REPLY_STRING);
		snprintf(l->id[i], sizeof(l->id[i]), "%s", r->str);
		freeReplyObject(r);
	}
}

static void live_close(struct live *l)
{
	for (unsigned i = 0; i < l->m.nnodes; i++)
		redisFree(l->c[i]);
	tally__redis_slotmap_free(&l->m);
}

/* The redirect in r names node `want` of the map. */
static void redirected(const struct live *l, const redisReply *r,
		       enum tally__redis_redirect_kind kind, unsigned slot,
		       int want)
{
	struct tally__redis_redirect rd;

	assert_int_equal(r->type, REDIS_REPLY_ERROR);
	if (tally__redis_redirect_parse(r->str, r->len, &rd) != kind)
		fail_msg("\"%s\": not the redirect expected", r->str);
	assert_int_equal(rd.slot, slot);
	assert_string_equal(rd.host, l->m.nodes[want].host);
	assert_int_equal(rd.port, l->m.nodes[want].port);
}

/* 100 random keys, some with a tag: the server hashes them as we do; the
 * node the map names serves each; another node sends us there. */
static void test_live_routing(void **unused)
{
	struct live l = {0};
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	char key[64];

	(void)unused;
	print_message("seed %u\n", seed);
	srand(seed);
	live_open(&l);
	for (int i = 0; i < 100; i++) {
		if (i % 4 == 0)
			snprintf(key, sizeof(key), "x{t%d}%d", rand(), rand());
		else
			snprintf(key, sizeof(key), "k%d-%d", rand(), i);
		unsigned slot = slot_of(key);
		int node = tally__redis_slotmap_lookup(&l.m, slot, 0, NULL);
		int other = (node + 1) % (int)l.m.nnodes;
		redisReply *r = cmd(l.c[0], "CLUSTER KEYSLOT %s", key);

		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		assert_int_equal(r->integer, slot);
		freeReplyObject(r);
		assert_true(node >= 0);
		r = cmd(l.c[node], "GET %s", key);
		if (r->type == REDIS_REPLY_ERROR)
			fail_msg("GET %s on its node: %s", key, r->str);
		freeReplyObject(r);
		r = cmd(l.c[other], "GET %s", key);
		redirected(&l, r, TALLY__REDIS_MOVED, slot, node);
		freeReplyObject(r);
	}
	live_close(&l);
}

/* A slot half-way from one node to another: the source sends a key it no
 * longer has with -ASK to the target, which serves it after ASKING only. */
static void test_live_ask(void **unused)
{
	struct live l = {0};
	const char *key = "{tally-ask}k";
	unsigned slot = slot_of(key);
	int src, dst;
	redisReply *r;

	(void)unused;
	live_open(&l);
	src = tally__redis_slotmap_lookup(&l.m, slot, 0, NULL);
	/* Another primary (a replica takes no slot). */
	dst = tally__redis_slotmap_lookup(&l.m, (slot + 8192) % 16384, 0, NULL);
	assert_true(dst >= 0 && dst != src);
	r = cmd(l.c[dst], "CLUSTER SETSLOT %u IMPORTING %s", slot, l.id[src]);
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);
	r = cmd(l.c[src], "CLUSTER SETSLOT %u MIGRATING %s", slot, l.id[dst]);
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);

	r = cmd(l.c[src], "GET %s", key);
	redirected(&l, r, TALLY__REDIS_ASK, slot, dst);
	freeReplyObject(r);
	r = cmd(l.c[dst], "GET %s", key); /* without ASKING: not yet its */
	redirected(&l, r, TALLY__REDIS_MOVED, slot, src);
	freeReplyObject(r);
	r = cmd(l.c[dst], "ASKING");
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);
	r = cmd(l.c[dst], "GET %s", key);
	assert_int_equal(r->type, REDIS_REPLY_NIL);
	freeReplyObject(r);

	for (int i = 0; i < 2; i++) {
		r = cmd(l.c[i == 0 ? src : dst], "CLUSTER SETSLOT %u STABLE",
			slot);
		assert_int_equal(r->type, REDIS_REPLY_STATUS);
		freeReplyObject(r);
	}
	live_close(&l);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest offline[] = {
		cmocka_unit_test(test_crc16),
		cmocka_unit_test(test_key_slot),
		cmocka_unit_test(test_map_three),
		cmocka_unit_test(test_map_shapes),
		cmocka_unit_test(test_map_refused),
		cmocka_unit_test(test_map_hostile),
		cmocka_unit_test(test_redirects),
	};
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_live_routing),
		cmocka_unit_test(test_live_ask),
	};

	if (argc > 1 && strcmp(argv[1], "live") == 0)
		return cmocka_run_group_tests_name("live", live, NULL, NULL);
	return cmocka_run_group_tests_name("offline", offline, NULL, NULL);
}
