/* many_counters: what many counters cost, for every backend built in: bytes
 * of resident memory per counter (after one CPU and after every CPU added to
 * each), and the cost of a create, a get and a destroy, at 10^3 and 10^6
 * counters, private (threads) and TALLY_PSHARED (shared with forked
 * children), with the machine's context.  Each measurement runs in a child
 * process of its own, so that one starts from the memory the last left.
 *
 * Usage: many_counters [--counts N,N...] [--backend B,B...]
 *                      [--mode private,shared] [--max-mb MB]
 * A run whose estimate (from the smaller count's bytes per counter) passes
 * --max-mb (default: a quarter of MemAvailable) is skipped and says so. */
#include "tally.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __clang__
#define COMPILER "clang " __clang_version__
#else
#define COMPILER "gcc " __VERSION__
#endif

#define MAX_LIST 16

struct result {
	int rc;		   /* 0, or the error that stopped the run */
	size_t made;	   /* counters created */
	double create_ns;  /* per create */
	double bytes_one;  /* per counter, after one CPU added to each */
	double bytes_all;  /* per counter, after every CPU added to each */
	double get_ns;	   /* per get */
	double destroy_ns; /* per destroy, in random order */
	int exact;	   /* every counter held what was added */
	char why[200];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Resident bytes of this process (/proc/self/statm). */
static double resident(void)
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f != NULL) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static long meminfo_kb(const char *key)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, strlen(key)) == 0) {
			kb = strtol(line + strlen(key), NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

/* One thread per online CPU, pinned to it, adds 1 to every counter. */
struct adder {
	pthread_t th;
	int cpu;
	tally **t;
	size_t n;
	int rc;
};

static void *add_all(void *arg)
{
	struct adder *a = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET((size_t)a->cpu, &set);
	sched_setaffinity(0, sizeof(set), &set); /* best effort */
	for (size_t i = 0; i < a->n && a->rc == 0; i++)
		a->rc = tally_add(a->t[i], 1);
	return NULL;
}

/* Every online CPU adds 1 to each counter: how many did. */
static int add_everywhere(tally **t, size_t n, int *rc)
{
	cpu_set_t mine;
	struct adder a[CPU_SETSIZE];
	int k = 0;

	*rc = 0;
	if (sched_getaffinity(0, sizeof(mine), &mine) != 0)
		return 0;
	for (int cpu = 0; cpu < CPU_SETSIZE && k < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET((size_t)cpu, &mine))
			continue;
		a[k] = (struct adder){.cpu = cpu, .t = t, .n = n};
		if (pthread_create(&a[k].th, NULL, add_all, &a[k]) != 0)
			break;
		k++;
	}
	for (int i = 0; i < k; i++) {
		pthread_join(a[i].th, NULL);
		if (a[i].rc != 0)
			*rc = a[i].rc;
	}
	return k;
}

static void shuffle(size_t *order, size_t n)
{
	uint64_t x = 0x9e3779b97f4a7c15u;

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n; i > 1; i--) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t j = (size_t)(x % i), tmp = order[i - 1];
		order[i - 1] = order[j];
		order[j] = tmp;
	}
}

static void measure(const char *backend, unsigned flags, size_t n,
		    struct result *r)
{
	tally **t = calloc(n, sizeof(*t));
	size_t *order = calloc(n, sizeof(*order));
	int64_t v, sum = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	if (t == NULL || order == NULL) {
		r->rc = TALLY_ENOMEM;
		snprintf(r->why, sizeof(r->why), "no memory for %zu handles",
			 n);
		return;
	}
	/* The program's own arrays are resident before the count starts: the
	 * bytes per counter are the library's. */
	shuffle(order, n);
	memset(t, 0, n * sizeof(*t));
	double base = resident();
	uint64_t t0 = now_ns();
	for (; r->made < n; r->made++) {
		rc = tally_create(&t[r->made], backend, 0, flags);
		if (rc != 0) {
			r->rc = rc;
			snprintf(r->why, sizeof(r->why),
				 "create %zu failed: %s", r->made + 1,
				 tally_explain(rc));
			break;
		}
	}
	r->create_ns =
		(double)(now_ns() - t0) / (double)(r->made ? r->made : 1);
	for (size_t i = 0; i < r->made; i++)
		tally_add(t[i], 1);
	r->bytes_one = (resident() - base) / (double)(r->made ? r->made : 1);
	int cpus = add_everywhere(t, r->made, &rc);
	if (rc != 0 && r->rc == 0) {
		r->rc = rc;
		snprintf(r->why, sizeof(r->why), "add failed: %s",
			 tally_explain(rc));
	}
	r->bytes_all = (resident() - base) / (double)(r->made ? r->made : 1);
	/* Gets: every counter, as often as makes at least 10^6 gets. */
	size_t rounds = r->made ? (1000000 + r->made - 1) / r->made : 0;
	r->exact = 1;
	t0 = now_ns();
	for (size_t k = 0; k < rounds; k++)
		for (size_t i = 0; i < r->made; i++) {
			tally_get(t[i], &v);
			sum += v;
			if (v != 1 + cpus)
				r->exact = 0;
		}
	size_t gets = rounds * r->made;
	r->get_ns = (double)(now_ns() - t0) / (double)(gets != 0 ? gets : 1);
	t0 = now_ns();
	for (size_t i = 0; i < n; i++)
		if (order[i] < r->made)
			tally_destroy(t[order[i]]);
	r->destroy_ns =
		(double)(now_ns() - t0) / (double)(r->made ? r->made : 1);
	(void)sum;
	free(t);
	free(order);
}

/* measure() in a child: its memory is its own, and a counter that the
 * kernel cannot give it kills only the child. */
static void measure_apart(const char *backend, unsigned flags, size_t n,
			  struct result *r)
{
	int fd[2];
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if (pipe(fd) != 0 || (pid = fork()) < 0) {
		r->rc = TALLY_ESYSTEM;
		snprintf(r->why, sizeof(r->why), "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		struct result mine;

		close(fd[0]);
		measure(backend, flags, n, &mine);
		ssize_t w = write(fd[1], &mine, sizeof(mine));
		_exit(w == (ssize_t)sizeof(mine) ? 0 : 1);
	}
	close(fd[1]);
	ssize_t got = read(fd[0], r, sizeof(*r));
	int status;
	close(fd[0]);
	waitpid(pid, &status, 0);
	if (got != (ssize_t)sizeof(*r)) {
		memset(r, 0, sizeof(*r));
		r->rc = TALLY_ESYSTEM;
		snprintf(r->why, sizeof(r->why), "the run died (status %d)",
			 status);
	}
}

static int split(char *s, char **out)
{
	int n = 0;

	for (char *p = strtok(s, ","); p != NULL && n < MAX_LIST;
	     p = strtok(NULL, ","))
		out[n++] = p;
	return n;
}

static unsigned possible_cpus(void)
{
	char buf[256];
	unsigned most = 0;
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");

	if (f != NULL) {
		if (fgets(buf, sizeof(buf), f) != NULL)
			for (char *p = buf; *p;) {
				if (*p < '0' || *p > '9') {
					p++;
					continue;
				}
				unsigned long c = strtoul(p, &p, 10);
				if (c + 1 > most)
					most = (unsigned)c + 1;
			}
		fclose(f);
	}
	return most;
}

static void context(void)
{
	struct utsname u;
	char model[512] = "?", line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (strncmp(line, "model name", 10) == 0) {
				char *c = strchr(line, ':');
				snprintf(model, sizeof(model), "%s",
					 c ? c + 2 : line);
				model[strcspn(model, "\n")] = '\0';
				break;
			}
		fclose(f);
	}
	uname(&u);
	printf("# many_counters: tally %s, %s, %s %s %s\n", tally_version(),
	       COMPILER, u.sysname, u.release, u.machine);
	printf("# cpu: %s; online %ld, possible %u; page %ld bytes; MemAvailable %ld MB\n",
	       model, sysconf(_SC_NPROCESSORS_ONLN), possible_cpus(),
	       sysconf(_SC_PAGESIZE), meminfo_kb("MemAvailable:") / 1024);
	printf("# bytes: resident memory per counter after one CPU added to each (1cpu) and after every online CPU did (allcpu)\n");
}

/* Deliberately unsynchronized (none): its counts may be short. */
static int racy(const char *backend)
{
	char name[64];
	tally_backend_info info;

	snprintf(name, sizeof(name), "%.*s", (int)strcspn(backend, ":"),
		 backend);
	return tally_backend_find(name, &info) == 0 &&
	       (info.caps & TALLY_CAP_RACY);
}

static void row(const char *b, const char *mode, size_t n,
		const struct result *r)
{
	/* A run cut short says how far it got, and no bytes per counter: the
	 * failure itself (a mapping refused) changes what is resident. */
	if (r->rc != 0) {
		printf("%-10s %-7s %8zu %9s %9s %10.3f %9s %10s %-5s %s\n", b,
		       mode, n, "-", "-", r->create_ns / 1000.0, "-", "-", "-",
		       r->why);
		return;
	}
	printf("%-10s %-7s %8zu %9.0f %9.0f %10.3f %9.3f %10.3f %-5s\n", b,
	       mode, n, r->bytes_one, r->bytes_all, r->create_ns / 1000.0,
	       r->get_ns, r->destroy_ns / 1000.0,
	       r->exact	 ? "yes"
	       : racy(b) ? "racy"
			 : "NO");
}

int main(int argc, char **argv)
{
	char counts_s[256] = "1000,1000000", modes_s[64] = "private,shared";
	char backends_s[512] = "";
	char *counts[MAX_LIST], *modes[MAX_LIST], *backends[MAX_LIST];
	long avail = meminfo_kb("MemAvailable:");
	double max_mb = avail > 0 ? (double)avail / 1024 / 4 : 1024;
	int bad = 0, nb = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--counts") == 0)
			snprintf(counts_s, sizeof(counts_s), "%s", argv[i + 1]);
		else if (strcmp(argv[i], "--mode") == 0)
			snprintf(modes_s, sizeof(modes_s), "%s", argv[i + 1]);
		else if (strcmp(argv[i], "--backend") == 0)
			snprintf(backends_s, sizeof(backends_s), "%s",
				 argv[i + 1]);
		else if (strcmp(argv[i], "--max-mb") == 0)
			max_mb = atof(argv[i + 1]);
		else
			bad = 1;
	}
	if (bad || argc % 2 == 0) {
		fprintf(stderr,
			"usage: many_counters [--counts N,N...] [--backend B,B...] [--mode private,shared] [--max-mb MB]\n");
		return 2;
	}
	int nc = split(counts_s, counts), nm = split(modes_s, modes);
	if (backends_s[0] != '\0')
		nb = split(backends_s, backends);
	else
		for (size_t i = 0; i < tally_backend_count() && nb < MAX_LIST;
		     i++) {
			tally_backend_info info;

			/* Remote backends measure a server, not this. */
			if (tally_backend_at(i, &info) == 0 && info.built_in &&
			    !(info.caps & TALLY_CAP_REMOTE))
				backends[nb++] = (char *)info.name;
		}
	context();
	printf("%-10s %-7s %8s %9s %9s %10s %9s %10s %-5s\n", "backend", "mode",
	       "counters", "B/1cpu", "B/allcpu", "create_us", "get_ns",
	       "destroy_us", "exact");
	for (int b = 0; b < nb; b++)
		for (int m = 0; m < nm; m++) {
			unsigned flags = strcmp(modes[m], "shared") == 0
						 ? TALLY_PSHARED
						 : 0;
			double per = 0;

			if (flags && tally_backend_check(backends[b], flags) ==
					     TALLY_EUNSUPPORTED) {
				printf("%-10s %-7s (not process-shared)\n",
				       backends[b], modes[m]);
				continue;
			}
			for (int c = 0; c < nc; c++) {
				size_t n = strtoul(counts[c], NULL, 10);
				struct result r;

				if (per > 0 &&
				    per * (double)n / 1048576.0 > max_mb) {
					printf("%-10s %-7s %8zu skipped: would need about %.0f MB (--max-mb %.0f)\n",
					       backends[b], modes[m], n,
					       per * (double)n / 1048576.0,
					       max_mb);
					continue;
				}
				measure_apart(backends[b], flags, n, &r);
				row(backends[b], modes[m], n, &r);
				fflush(stdout);
				if (r.bytes_all > per)
					per = r.bytes_all;
			}
		}
	return 0;
}
