/* redis: each process's clients of a counter, and how one talks to the
 * server -- connect, one command, retries until the deadline. */
#include "redis_int.h"

#ifdef TALLY_HAVE_HIREDIS
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* This process's clients; a forked child starts with none (atfork). */
static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct client *clients;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Threads take the process's connections to a counter in turn. */
static _Atomic unsigned next_lane;
static TALLY_THREAD_LOCAL int lane_hint = -1;

/* Forks this process has been through (counted in the child, from the
 * first client on): tells a forked child's copy of `last` from its own. */
static unsigned forks;

/* This thread's client, last used: no registry lookup (and no getpid()
 * system call) on the hot path.  A counter made later at the same address
 * has another id; a forked child another count of forks.  Initial-exec
 * (TALLY_THREAD_LOCAL): a __tls_get_addr() call per add was a third of a
 * write-behind add's time. */
static TALLY_THREAD_LOCAL struct {
	const struct redis_state *s;
	uint64_t state_id;
	unsigned forks;
	struct client *cl;
} last;

static void registry_lock(void)
{
	pthread_mutex_lock(&registry);
}

static void registry_unlock(void)
{
	pthread_mutex_unlock(&registry);
}

/* The child forgets the parent's clients: their connections, locks and
 * sequence numbers are the parent's (their memory is leaked, once). */
static void registry_child(void)
{
	forks++;
	clients = NULL;
	pthread_mutex_init(&registry, NULL);
}

static void install_atfork(void)
{
	pthread_atfork(registry_lock, registry_unlock, registry_child);
}

unsigned tally__redis_forks(void)
{
	return forks;
}

uint64_t tally__redis_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The registered client of s for lane, or NULL.  With the registry held. */
static struct client *find(const struct redis_state *s, unsigned lane)
{
	struct client *cl;

	for (cl = clients; cl != NULL; cl = cl->next)
		if (cl->s == s && cl->state_id == s->id && cl->lane == lane)
			break;
	return cl;
}

/* tally__redis_client_of() when this thread's last client is not s's: the
 * registry, out of line so that the hot path saves no registers. */
static TALLY_NOINLINE struct client *client_lookup(const struct redis_state *s)
{
	struct client *cl;

	/* From here on, a fork counts (before any client is cached). */
	pthread_once(&atfork_once, install_atfork);
	if (lane_hint < 0)
		lane_hint = (int)(atomic_fetch_add(&next_lane, 1) & 0xffff);
	unsigned lane = (unsigned)lane_hint % (unsigned)s->connections;
	registry_lock();
	cl = find(s, lane);
	registry_unlock();
	if (cl == NULL) {
		/* Made whole outside the registry's lock: a client starts
		 * its engine (a thread, a percpu sum whose pool has a lock
		 * that fork's handlers take before the registry's). */
		struct client *mine = tally__redis_client_new(s, lane);
		registry_lock();
		cl = find(s, lane); /* another thread's, made meanwhile */
		if (cl == NULL && mine != NULL) {
			mine->next = clients;
			clients = cl = mine;
			mine = NULL;
		}
		registry_unlock();
		if (mine != NULL)
			tally__redis_client_free(mine);
	}
	if (cl != NULL) {
		last.s = s;
		last.state_id = s->id;
		last.forks = forks;
		last.cl = cl;
	}
	return cl;
}

/* This thread's client of s (one of s->connections per process, taken in
 * turn by threads), made on first use; NULL when out of memory. */
struct client *tally__redis_client_of(const struct redis_state *s)
{
	if (last.s == s && last.state_id == s->id && last.forks == forks)
		return last.cl;
	return client_lookup(s);
}

/*
 * A write to a connection the server has closed raises SIGPIPE, whose
 * default action ends the program: a library must not.  Held off while
 * hiredis writes, and taken back when this write raised it (not when one
 * was pending already).  The engine's own writes use send(MSG_NOSIGNAL).
 */
struct pipe_hold {
	sigset_t set, old;
	int was;
};

static void hold_pipe(struct pipe_hold *h)
{
	sigset_t pending;

	sigemptyset(&h->set);
	sigaddset(&h->set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &h->set, &h->old);
	sigpending(&pending);
	h->was = sigismember(&pending, SIGPIPE);
}

static void release_pipe(struct pipe_hold *h)
{
	sigset_t pending;
	struct timespec zero = {0, 0};

	sigpending(&pending);
	if (!h->was && sigismember(&pending, SIGPIPE))
		while (sigtimedwait(&h->set, NULL, &zero) < 0 && errno == EINTR)
			;
	pthread_sigmask(SIG_SETMASK, &h->old, NULL);
}

redisReply *tally__redis_blocking(redisContext *c, int argc, const char **argv)
{
	struct pipe_hold h;

	hold_pipe(&h);
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	release_pipe(&h);
	return r;
}

int tally__redis_replies(redisContext *c, unsigned n, redisReply **out)
{
	struct pipe_hold h;
	unsigned k = 0;

	hold_pipe(&h);
	for (; k < n; k++) {
		void *r = NULL;
		if (redisGetReply(c, &r) != REDIS_OK || r == NULL)
			break;
		out[k] = r;
	}
	release_pipe(&h);
	if (k == n)
		return 0;
	while (k > 0)
		freeReplyObject(out[--k]);
	return -1;
}

void tally__redis_disconnect(struct client *cl)
{
	if (cl->c != NULL)
		redisFree(cl->c);
	cl->c = NULL;
	cl->piped = 0;
}

static struct timeval tv_of(int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000,
			     .tv_usec = (ms % 1000) * 1000};
	return tv;
}

/* Why a connection failed, for the message the caller gives up with:
 * `hard` when trying again at once would fail the same way (see struct
 * client). */
static void failed(struct tally__redis_why *w, int hard, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void failed(struct tally__redis_why *w, int hard, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->text, w->size, fmt, ap);
	va_end(ap);
	*w->hard = hard;
}

static struct tally__redis_why why_of(struct client *cl)
{
	struct tally__redis_why w = {cl->why, sizeof(cl->why), &cl->hard};
	return w;
}

/* One TCP connect to ai within ms: a connected, blocking socket, or -1 with
 * the reason in *err (an errno value; ETIMEDOUT when ms ran out). */
static int dial(const struct addrinfo *ai, int ms, int *err)
{
	int fd = socket(ai->ai_family,
			ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			ai->ai_protocol);
	uint64_t end = tally__redis_now_ms() + (uint64_t)ms;

	if (fd < 0) {
		*err = errno;
		return -1;
	}
	*err = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		*err = errno;
		while (*err == EINPROGRESS || *err == EINTR) {
			uint64_t now = tally__redis_now_ms();
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int n = now < end ? poll(&p, 1, (int)(end - now)) : 0;
			socklen_t len = sizeof(*err);
			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0)
				*err = ETIMEDOUT;
			else if (n < 0)
				*err = errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err,
					    &len) != 0)
				*err = errno;
			break;
		}
	}
	int one = 1, flags = fcntl(fd, F_GETFL);
	if (*err == 0 &&
	    (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0))
		*err = errno;
	if (*err != 0) {
		close(fd);
		return -1;
	}
	/* As hiredis's own connect does: a request is one small write. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* The address ai names, numerically ("127.0.0.1:6379", "[::1]:6379"). */
static void address_of(const struct addrinfo *ai, char *buf, size_t size)
{
	char host[64], port[8];

	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), port,
			sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(buf, size, "?");
	else
		snprintf(buf, size,
			 ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
			 port);
}

/* A socket connected to host:port within ms, trying each address the name
 * resolves to; -1 with the reason. */
static int connect_to(const char *name, int port_no, int ms,
		      struct tally__redis_why *w)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM},
			*res, *ai;
	char port[8], addr[80], host[320];
	int fd = -1, err = 0, rc;

	snprintf(port, sizeof(port), "%d", port_no);
	rc = getaddrinfo(name, port, &hints, &res);
	if (rc != 0) {
		failed(w, 1, "cannot resolve the host name: %s",
		       rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	snprintf(host, sizeof(host), "%s:%d", name, port_no);
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = dial(ai, ms, &err);
		if (fd >= 0)
			break;
		address_of(ai, addr, sizeof(addr));
		/* Named when it is not what the user wrote (a host name, or
		 * one of several addresses). */
		int same = strcmp(addr, host) == 0;
		if (err == ETIMEDOUT)
			failed(w, 0, "no answer to connect%s%s within %d ms",
			       same ? "" : " to ", same ? "" : addr, ms);
		else
			failed(w, 1, "cannot connect%s%s: %s",
			       same ? "" : " to ", same ? "" : addr,
			       strerror(err));
	}
	freeaddrinfo(res);
	return fd;
}

/* One command of the connection's own (AUTH, SELECT): 0, or -1 with the
 * reason, `hard` when the server refused it (an error reply). */
static int setup(redisContext *c, int argc, const char **argv, const char *what,
		 struct tally__redis_why *w)
{
	redisReply *r = tally__redis_blocking(c, argc, argv);
	int rc = 0;

	if (r == NULL) {
		failed(w, 0, "no reply to %s: %s", what, c->errstr);
		rc = -1;
	} else if (r->type == REDIS_REPLY_ERROR) {
		failed(w, 2, "refused %s: %s", what, r->str);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

redisContext *tally__redis_open(const struct redis_state *s, const char *host,
				int port, int ms, struct tally__redis_why *w)
{
	int fd = connect_to(host, port, ms, w);
	char what[200], db[16];

	if (fd < 0)
		return NULL;
	redisContext *c = redisConnectFd(fd);
	if (c == NULL) {
		close(fd);
		failed(w, 0, "out of memory");
		return NULL;
	}
	if (c->err || redisSetTimeout(c, tv_of(s->timeout_ms)) != REDIS_OK) {
		failed(w, 0, "%s", c->errstr);
		goto fail;
	}
	/* AUTH names the user, never the password. */
	if (s->user[0] != '\0') {
		const char *argv[] = {"AUTH", s->user, s->password};
		snprintf(what, sizeof(what), "AUTH as user '%s'", s->user);
		if (setup(c, 3, argv, what, w) != 0)
			goto fail;
	} else if (s->password[0] != '\0') {
		const char *argv[] = {"AUTH", s->password};
		if (setup(c, 2, argv, "AUTH (the URL's password)", w) != 0)
			goto fail;
	}
	if (s->db != 0) {
		snprintf(db, sizeof(db), "%d", s->db);
		snprintf(what, sizeof(what), "database %d (SELECT)", s->db);
		const char *argv[] = {"SELECT", db};
		if (setup(c, 2, argv, what, w) != 0)
			goto fail;
	}
	return c;
fail:
	redisFree(c);
	return NULL;
}

/* Connect cl to the node it talks to (within ms): 0, or -1 with the
 * reason. */
int tally__redis_connect(struct client *cl, int ms)
{
	struct tally__redis_why w = why_of(cl);

	cl->c = tally__redis_open(cl->s, cl->host, cl->port, ms, &w);
	return cl->c != NULL ? 0 : -1;
}

redisReply *tally__redis_command(struct client *cl, int argc, const char **argv,
				 uint64_t budget_ms, int *sent)
{
	const struct redis_state *s = cl->s;

	*sent = 0;
	if (cl->c == NULL) {
		int ms = budget_ms < (uint64_t)s->timeout_ms ? (int)budget_ms
							     : s->timeout_ms;
		if (tally__redis_connect(cl, ms) != 0)
			return NULL;
	}
	*sent = 1;
	uint64_t t0 = tally__redis_now_ms();
	redisReply *r = tally__redis_blocking(cl->c, argc, argv);
	if (r == NULL) {
		/* SO_RCVTIMEO's EAGAIN reads as "Resource temporarily
		 * unavailable": say what it means. */
		struct tally__redis_why w = why_of(cl);
		if (tally__redis_now_ms() - t0 + 5 >= (uint64_t)s->timeout_ms)
			failed(&w, 0, "no reply within %d ms", s->timeout_ms);
		else
			failed(&w, 0, "the connection failed: %s",
			       cl->c->errstr);
		tally__redis_disconnect(cl);
	}
	return r;
}

int tally__redis_give_up(struct client *cl, int rc)
{
	const struct redis_state *s = cl->s;
	struct tally__redis_why w = why_of(cl);

	if (cl->why[0] == '\0')
		failed(&w, 0, "no answer within %d ms", s->deadline_ms);
	tally__explain_set(
		rc, "redis server %s:%d: %s%s", cl->host, cl->port, cl->why,
		rc == TALLY_EUNKNOWN
			? "; the add may or may not have been applied"
			: "");
	return rc;
}

int tally__redis_transient(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	       (strncmp(r->str, "LOADING", 7) == 0 ||
		strncmp(r->str, "BUSY", 4) == 0 ||
		strncmp(r->str, "TRYAGAIN", 8) == 0 ||
		strncmp(r->str, "MASTERDOWN", 10) == 0 ||
		strncmp(r->str, "CLUSTERDOWN", 11) == 0);
}

redisReply *tally__redis_until_deadline(struct client *cl, int argc,
					const char **argv, uint64_t deadline,
					int *sent, int *rc)
{
	uint64_t pause = 20;

	for (;;) {
		uint64_t now = tally__redis_now_ms();
		int s;
		redisReply *r = tally__redis_command(
			cl, argc, argv, deadline > now ? deadline - now : 1,
			&s);
		*sent |= s;
		if (r != NULL && !tally__redis_transient(r))
			return r;
		int lost = r == NULL;
		struct tally__redis_why w = why_of(cl);
		if (r != NULL)
			failed(&w, 0, "%s", r->str);
		freeReplyObject(r);
		now = tally__redis_now_ms();
		/* A server that refuses the connection's own commands (AUTH,
		 * SELECT) will refuse them again; one that refuses
		 * connections, or a name that does not resolve, is given
		 * until the deadline only once the counter was made (a
		 * restarting server), not while it is being made. */
		if (now >= deadline ||
		    (lost && !s &&
		     (cl->hard == 2 || (cl->hard == 1 && cl->creating)))) {
			*rc = *sent ? TALLY_EUNKNOWN : TALLY_EREMOTE;
			return NULL;
		}
		sleep_ms(pause < deadline - now ? pause : deadline - now);
		if (pause < 500)
			pause *= 2;
	}
}

void tally__redis_forget(struct redis_state *s)
{
	struct client **p, *gone = NULL;

	registry_lock();
	for (p = &clients; *p != NULL;) {
		struct client *cl = *p;
		if (cl->s == s && cl->state_id == s->id) {
			*p = cl->next;
			cl->next = gone;
			gone = cl;
		} else {
			p = &cl->next;
		}
	}
	registry_unlock();
	if (last.s == s)
		last.s = NULL;
	while (gone != NULL) {
		struct client *cl = gone;
		gone = cl->next;
		tally__redis_client_free(cl);
	}
}

unsigned tally__redis_clients_of(const struct redis_state *s,
				 struct client **out, unsigned n)
{
	unsigned k = 0;

	registry_lock();
	for (struct client *cl = clients; cl != NULL && k < n; cl = cl->next)
		if (cl->s == s && cl->state_id == s->id)
			out[k++] = cl;
	registry_unlock();
	return k;
}

/* At exit, every client of this process sends what it still holds (async
 * and write-behind adds).  The list is read under the registry's lock and
 * walked without it while each flushes: only tally_destroy() frees a
 * client, and it must not race with exit. */
void tally__redis_flush_process(void)
{
	registry_lock();
	struct client *all = clients;
	registry_unlock();
	for (struct client *cl = all; cl != NULL; cl = cl->next)
		(void)tally__redis_engine_flush(cl);
}

#endif /* TALLY_HAVE_HIREDIS */
