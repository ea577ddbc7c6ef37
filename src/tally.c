/* The public entry points: validation at the edge, then one-line dispatch. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const error_names[] = {
#define TALLY__ERR_NAME(name, value, msg) [-(value)] = "TALLY_" #name,
	TALLY_ERRNO_MAP(TALLY__ERR_NAME)
#undef TALLY__ERR_NAME
};

static const char *const error_messages[] = {
#define TALLY__ERR_MSG(name, value, msg) [-(value)] = msg,
	TALLY_ERRNO_MAP(TALLY__ERR_MSG)
#undef TALLY__ERR_MSG
};

#define N_ERRORS (sizeof(error_names) / sizeof(error_names[0]))

const char *tally_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err == TALLY_RECOVERED)
		return "success; the lock was recovered from a holder that died";
	if (err < 0 && (size_t)-err < N_ERRORS && error_messages[-err])
		return error_messages[-err];
	return "unknown error";
}

const char *tally_errname(int err)
{
	if (err == 0)
		return "TALLY_OK";
	if (err == TALLY_RECOVERED)
		return "TALLY_RECOVERED";
	if (err < 0 && (size_t)-err < N_ERRORS && error_names[-err])
		return error_names[-err];
	return "TALLY_E?";
}

/* The last detailed error of this thread (tally_explain()). */
static _Thread_local struct {
	int err;
	char text[320];
} explained;

void tally__explain_set(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(explained.text, sizeof(explained.text), fmt, ap);
	va_end(ap);
	explained.err = err;
}

/* Entry points that can fail in many ways forget the last record first, so
 * that an error they return without one is never explained by an older
 * one with the same code. */
void tally__explain_clear(void)
{
	explained.err = 0;
}

const char *tally_explain(int err)
{
	if (err < 0 && explained.err == err)
		return explained.text;
	return tally_strerror(err);
}

const char *tally_version(void)
{
	return TALLY_VERSION_STRING;
}

static void describe(const struct tally_backend *b, tally_backend_info *info)
{
	info->name = b->name;
	info->summary = b->summary;
	info->caps = b->caps;
	info->built_in = b->add != NULL;
}

size_t tally_backend_count(void)
{
	return tally__backend_count();
}

int tally_backend_at(size_t i, tally_backend_info *info)
{
	const struct tally_backend *b = tally__backend_at(i);

	if (b == NULL || info == NULL)
		return TALLY_EINVAL;
	describe(b, info);
	return 0;
}

int tally_backend_find(const char *name, tally_backend_info *info)
{
	if (name == NULL || info == NULL)
		return TALLY_EINVAL;
	const struct tally_backend *b =
		tally__backend_lookup(name, strlen(name));
	if (b == NULL)
		return TALLY_ENOBACKEND;
	describe(b, info);
	return 0;
}

int tally__resolve(const char *spec, const struct tally_backend **ops,
		   const char **options)
{
	if (spec == NULL) {
		spec = getenv(TALLY_ENV_BACKEND);
		if (spec == NULL || *spec == '\0')
			spec = TALLY_DEFAULT_BACKEND;
	}
	const char *colon = strchr(spec, ':');
	size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
	const struct tally_backend *b = tally__backend_lookup(spec, len);

	if (b == NULL)
		return TALLY_ENOBACKEND;
	if (b->add == NULL)
		return TALLY_ENOTBUILT;
	/* A backend with a lock takes the core's wait_ms, options of its own
	 * or not (tally__split_options() refuses any other). */
	if (colon != NULL && !b->takes_options && !(b->caps & TALLY_CAP_LOCKED))
		return TALLY_EOPTION;
	*ops = b;
	*options = colon ? colon + 1 : NULL;
	return 0;
}

/* The longest wait_ms (and tally_add_wait() bound): a day. */
#define WAIT_MS_MAX 86400000u

int tally__refuse_option(const char *fmt, ...)
{
	char text[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	tally__explain_set(TALLY_EOPTION, "invalid backend option: %s", text);
	return TALLY_EOPTION;
}

/* Was o's key given before it, in options?  (An empty key is left to the
 * backend, which refuses it as a typo.) */
static int given_before(const char *options, const struct tally__opt *o)
{
	struct tally__opt p;

	if (o->klen == 0)
		return 0;
	while (tally__opt_next(&options, &p) && p.key != o->key)
		if (p.klen == o->klen && memcmp(p.key, o->key, o->klen) == 0)
			return 1;
	return 0;
}

/* The option wait_ms, the core's own handle option. */
static int wait_option(const struct tally_backend *ops,
		       const struct tally__opt *o, struct tally__knobs *k)
{
	unsigned ms;

	if (!(ops->caps & TALLY_CAP_LOCKED))
		return tally__refuse_option(
			"the %s backend has no lock to wait for: wait_ms has no effect on it",
			ops->name);
	if (tally__opt_uint(o, 0, WAIT_MS_MAX, &ms) != 0)
		return tally__refuse_option(
			"wait_ms takes whole milliseconds, 0 (no bound) to %u",
			WAIT_MS_MAX);
	k->wait_ns = ms == 0 ? -1 : (int64_t)ms * 1000000;
	return 0;
}

int tally__split_options(const struct tally_backend *ops, const char *options,
			 struct tally__knobs *k, char *buf, size_t size,
			 const char **counter)
{
	const char *walk = options;
	struct tally__opt o;
	size_t used = 0;
	int rc;

	k->wait_ns = TALLY__WAIT_UNSET;
	k->path = 0;
	k->life = NULL;
	*counter = NULL;
	while (tally__opt_next(&walk, &o)) {
		if (given_before(options, &o))
			return tally__refuse_option(
				"the option %.*s is given twice", (int)o.klen,
				o.key);
		if (tally__opt_is(&o, "wait_ms")) {
			if ((rc = wait_option(ops, &o, k)) != 0)
				return rc;
			continue;
		}
		rc = ops->knob != NULL ? ops->knob(&o, k) : 0;
		if (rc < 0)
			return rc;
		if (rc == 1)
			continue;
		/* The counter's own: key, and "=value" when it has one (an
		 * empty option, as in "a,,b", is kept: the backend refuses
		 * it as the typo it is). */
		size_t len = o.klen + (o.val ? o.vlen + 1 : 0);
		if (used + len + 2 > size)
			return TALLY_EOPTION; /* cannot be: buf fits all */
		if (*counter != NULL)
			buf[used++] = ',';
		memcpy(buf + used, o.key, len);
		used += len;
		buf[used] = '\0';
		*counter = buf;
	}
	if (*counter != NULL && !ops->takes_options)
		return TALLY_EOPTION; /* wait_ms is all it takes */
	return 0;
}

void tally__knobs_default(struct tally__knobs *k, int shared)
{
	if (k->wait_ns == TALLY__WAIT_UNSET)
		k->wait_ns =
			shared ? (int64_t)TALLY_DEFAULT_WAIT_MS * 1000000 : -1;
}

/* What tally_create() and tally_backend_check() refuse before anything is
 * made: unknown flags, the spec, and sharing a backend that cannot be.  The
 * counter's options are copied into buf (see tally__split_options()). */
static int resolve_for(const char *backend, unsigned flags,
		       const struct tally_backend **ops, struct tally__knobs *k,
		       char *buf, size_t size, const char **options)
{
	const char *all;
	int rc;

	if ((flags & ~(unsigned)TALLY_PSHARED) != 0)
		return TALLY_EINVAL;
	rc = tally__resolve(backend, ops, &all);
	if (rc != 0)
		return rc;
	if ((flags & TALLY_PSHARED) && !((*ops)->caps & TALLY_CAP_PSHARED))
		return TALLY_EUNSUPPORTED;
	if (all != NULL && strlen(all) >= size)
		return tally__refuse_option(
			"backend options of at most %zu characters", size - 1);
	rc = tally__split_options(*ops, all, k, buf, size, options);
	if (rc != 0)
		return rc;
	tally__knobs_default(k, (flags & TALLY_PSHARED) != 0);
	return 0;
}

/*
 * tally_create() without the counter.  A backend without a check op has an
 * init whose only effect is on its state (a lock initialized, a value set):
 * run it on a scratch state in private memory, with the caller's flags so
 * that the same options are refused, and undo it.
 */
int tally_backend_check(const char *backend, unsigned flags)
{
	const struct tally_backend *ops;
	struct tally__knobs k;
	char buf[TALLY__OPTIONS_MAX];
	const char *options;
	tally *t;
	int rc;

	tally__explain_clear();
	rc = resolve_for(backend, flags, &ops, &k, buf, sizeof(buf), &options);
	if (rc != 0)
		return rc;
	if (ops->check != NULL)
		return options != NULL ? ops->check(options) : 0;
	/* Placed as tally_create() places it: a state's size may follow
	 * its flags (ops->size). */
	rc = flags & TALLY_PSHARED ? tally__place_shared(&t, ops)
				   : tally__place_private(&t, ops);
	if (rc != 0)
		return rc;
	rc = ops->init(t->state, 0, flags, options);
	if (rc == 0 && ops->destroy != NULL)
		ops->destroy(t->state);
	tally__unplace(t);
	return rc;
}

/*
 * The rule is the redis backend's reading of its URL (options.c there): in
 * each option's value, what comes between "://" and the last '@' before
 * the next ',' is USER:PASSWORD, split at its first ':'.
 */
char *tally_backend_redact(const char *backend, char *buf, size_t size)
{
	const char *p = backend != NULL ? backend : "";
	size_t n = 0;

	if (size == 0)
		return buf;
	while (*p != '\0' && n + 1 < size) {
		const char *scheme = strstr(p, "://");
		if (scheme == NULL) {
			buf[n++] = *p++;
			continue;
		}
		const char *user = scheme + 3, *end = user + strcspn(user, ",");
		const char *at = NULL, *colon = NULL;
		for (const char *q = user; q < end; q++)
			if (*q == '@')
				at = q;
		if (at != NULL)
			colon = memchr(user, ':', (size_t)(at - user));
		/* Up to the password, then *** for it; the rest goes on. */
		const char *stop = colon != NULL ? colon + 1 : user;
		while (p < stop && n + 1 < size)
			buf[n++] = *p++;
		if (colon != NULL) {
			for (const char *m = "***"; *m && n + 1 < size; m++)
				buf[n++] = *m;
			p = at;
		}
	}
	buf[n] = '\0';
	return buf;
}

int tally__keep_about(tally *t, const char *name, const char *options)
{
	char shown[TALLY__OPTIONS_MAX];
	size_t nl = strlen(name), ol;
	char *about;

	/* What tally_describe() shows: never a password. */
	if (options != NULL)
		options = tally_backend_redact(options, shown, sizeof(shown));
	ol = options != NULL ? strlen(options) : 0;

	if (nl == 0 && ol == 0) {
		free(t->about);
		t->about = NULL;
		return 0;
	}
	about = malloc(nl + ol + 2);
	if (about == NULL)
		return TALLY_ENOMEM;
	memcpy(about, name, nl + 1);
	memcpy(about + nl + 1, ol != 0 ? options : "", ol + 1);
	free(t->about);
	t->about = about;
	return 0;
}

const char *tally__about_options(const tally *t)
{
	return t->about != NULL ? t->about + strlen(t->about) + 1 : "";
}

int tally_create(tally **out, const char *backend, int64_t initial,
		 unsigned flags)
{
	const struct tally_backend *ops;
	struct tally__knobs k;
	char buf[TALLY__OPTIONS_MAX];
	const char *options;
	tally *t;
	int rc;

	tally__explain_clear();
	if (out == NULL)
		return TALLY_EINVAL;
	rc = resolve_for(backend, flags, &ops, &k, buf, sizeof(buf), &options);
	if (rc != 0)
		return rc;

	rc = (flags & TALLY_PSHARED) ? tally__place_shared(&t, ops)
				     : tally__place_private(&t, ops);
	if (rc != 0)
		return rc;
	rc = tally__keep_about(t, "", options);
	if (rc == 0)
		rc = ops->init(t->state, initial, flags, options);
	if (rc != 0) {
		if (rc == TALLY_ESYSTEM)
			tally__explain_set(
				rc, "initializing the %s backend's lock: %s",
				ops->name, strerror(errno));
		tally__unplace(t);
		return rc;
	}
	t->ops = ops;
	k.life = t->knobs.life; /* placed: the shared mapping's life table */
	t->knobs = k;
	tally__arm(t);
	t->flags = flags;
	t->creator = getpid();
	*out = t;
	return 0;
}

int tally_create_inline1(tally **out, const char *backend, int64_t initial,
			 unsigned flags)
{
	return tally_create(out, backend, initial, flags);
}

int tally_add(tally *t, int64_t delta)
{
	if (t == NULL)
		return TALLY_EINVAL;
	return t->add(t->state, delta, &t->knobs);
}

int tally_add_wait(tally *t, int64_t delta, int64_t wait_ms)
{
	if (t == NULL || wait_ms < 0 || wait_ms > (int64_t)WAIT_MS_MAX)
		return TALLY_EINVAL;
	struct tally__knobs k = t->knobs;

	k.wait_ns = wait_ms * 1000000;
	return t->add(t->state, delta, &k);
}

int64_t tally_wait_limit(const tally *t)
{
	if (t == NULL)
		return -1;
	if (!(t->ops->caps & TALLY_CAP_LOCKED) || t->knobs.wait_ns < 0)
		return 0;
	return t->knobs.wait_ns / 1000000;
}

int tally_add_fetch(tally *t, int64_t delta, int64_t *after)
{
	if (t == NULL || after == NULL)
		return TALLY_EINVAL;
	if (t->ops->add_fetch == NULL)
		return TALLY_EUNSUPPORTED;
	return t->ops->add_fetch(t->state, delta, after);
}

int tally_add_cs(tally *t, int64_t delta, void (*inside)(void *arg), void *arg)
{
	if (t == NULL || inside == NULL)
		return TALLY_EINVAL;
	if (t->ops->add_cs == NULL)
		return TALLY_EUNSUPPORTED;
	return t->ops->add_cs(t->state, delta, &t->knobs, inside, arg);
}

int tally_get(tally *t, int64_t *value)
{
	if (t == NULL || value == NULL)
		return TALLY_EINVAL;
	return t->ops->get(t->state, value);
}

const char *tally_backend_name(const tally *t)
{
	return t ? t->ops->name : NULL;
}

const char *tally_backend_path(const tally *t)
{
	if (t == NULL || t->ops->path == NULL)
		return NULL;
	return t->ops->path(t->state, &t->knobs);
}

int tally_flush(tally *t)
{
	if (t == NULL)
		return TALLY_EINVAL;
	return t->ops->flush ? t->ops->flush(t->state) : 0;
}

void tally_destroy(tally *t)
{
	if (t == NULL)
		return;
	/* Every process sends its own adds, the creator's or a child's. */
	if (t->ops->flush)
		(void)t->ops->flush(t->state);
	/* A forked child's copy of the handle, or a named counter that other
	 * programs may still use, must not tear down the shared lock. */
	if (!t->named && t->creator == getpid() && t->ops->destroy)
		t->ops->destroy(t->state);
	tally__unplace(t);
}

/* Everything here is the handle's own, fixed at creation (the path is the
 * backend's answer for this thread): no lock, nothing to allocate. */
int tally_describe(const tally *t, tally_handle_info *info)
{
	if (t == NULL || info == NULL)
		return TALLY_EINVAL;
	*info = (tally_handle_info){
		.backend = t->ops->name,
		.caps = t->ops->caps,
		.flags = t->flags & (unsigned)TALLY_PSHARED,
		.named = t->named != 0,
		.wait_ms = tally_wait_limit(t),
		.path = tally_backend_path(t),
		.name = t->about != NULL && t->about[0] ? t->about : NULL,
		.options = tally__about_options(t),
	};
	return 0;
}
