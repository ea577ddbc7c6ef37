/* percpu: one slot per possible CPU, in CPU-major arenas shared by many
 * counters; each add a Linux restartable sequence (rseq) on the slot of the
 * CPU the thread runs on, an exact atomic add where rseq cannot run.  get
 * sums the slots. */
#include "arena.h"
#include "backend.h"
#include "tsan.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/*
 * Where the restartable sequence is compiled in: Linux, x86-64 or aarch64,
 * glibc 2.35 or later (<sys/rseq.h>: the rseq area glibc registers for every
 * thread, at __rseq_offset from the thread pointer, with signature RSEQ_SIG;
 * a library must use that one and never register its own), and not under
 * ThreadSanitizer, which cannot see an add hidden in assembly as
 * synchronized: there every add takes the atomic path.
 */
#if defined(__linux__) && !defined(TALLY_TSAN) &&                              \
	(defined(__x86_64__) || defined(__aarch64__)) &&                       \
	defined(__has_include)
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#if defined(RSEQ_SIG)
#define PERCPU_RSEQ 1
#endif
#endif
#endif

/*
 * One slot per possible CPU of the host (src/arena.h), counted when the
 * counter is made, at most PERCPU_SLOTS_MAX.  A named counter records its
 * own count, so that a library on a host with more or fewer CPUs reads it
 * exactly: it sums the slots the counter has, and a CPU numbered past them
 * has no slot of its own: its adds take the atomic path into slot
 * cpu % slots (see percpu_add).  Building with -DTALLY_PERCPU_SLOTS=N caps
 * the count at N (the tests build N = 1 to exercise that fold on a small
 * machine).
 */
#ifdef TALLY_PERCPU_SLOTS
#define PERCPU_SLOTS_MAX TALLY_PERCPU_SLOTS
#else
#define PERCPU_SLOTS_MAX 8192
#endif

/*
 * One CPU's slot of a counter.  Two words, so that the two paths never
 * write the same word in different ways:
 *   own     written only by restartable sequences running on this slot's
 *           CPU, with a plain (unlocked) read-modify-write; correct because
 *           at most one thread runs on a CPU at a time, and the kernel
 *           restarts a sequence that was preempted, migrated or signalled
 *           before it committed.
 *   shared  written only by atomic adds (the fallback, from any CPU).
 * A plain add and a locked add to different words of one line never lose
 * each other's update (cache coherence works on lines, and neither
 * instruction writes bytes outside its own word), so threads, processes and
 * separate programs on different paths may share one counter.  Reads load
 * both words atomically (aligned 64-bit accesses do not tear on either
 * architecture).
 *
 * Where the slots are (the state says, see below):
 *   in a CPU-major arena (every counter made by tally_create, private or
 *           TALLY_PSHARED): one region per CPU, the counter's slot at the
 *           same offset in every region, 16 bytes per CPU.  A region's
 *           lines are written by its own CPU only (and by atomic adds
 *           whose thread last ran there), so counters that share a line
 *           share it on one CPU, never across two;
 *   inline  (a named counter): one slot per line after the state's own,
 *           since the object holds one counter.
 */
struct percpu_slot {
	_Alignas(8) _Atomic uint64_t own;
	_Alignas(8) _Atomic uint64_t shared;
};

/*
 * The state: where the slots are, written by init and only read after, so
 * that it may sit beside the handle's own read-mostly words (descriptor,
 * backend.h).  Offsets, not pointers: a named counter's state is in an
 * object that other programs map at other addresses.
 *   off     from the state's own address to CPU 0's slot;
 *   shift   from one CPU's slot to the next: 1 << shift bytes (an arena's
 *           region, a power of two, or a line), a shift rather than a
 *           multiply on the add's path;
 *   slots   how many CPUs have one (CPUs 0 .. slots-1);
 *   where   PLACE_PRIVATE, PLACE_SHARED: the arena it came from (destroy
 *           gives it back); PLACE_NAMED: inline.
 */
struct percpu_state {
	int64_t off;
	uint32_t shift;
	uint16_t slots;
	uint16_t where;
};

enum { PLACE_PRIVATE, PLACE_SHARED, PLACE_NAMED };

/* A named counter's slots: on their own lines after the state's. */
#define NAMED_STRIDE TALLY_CACHELINE
#define NAMED_SHIFT  7
_Static_assert(1 << NAMED_SHIFT == NAMED_STRIDE, "NAMED_SHIFT is a line");

_Static_assert(sizeof(struct percpu_state) <= NAMED_STRIDE,
	       "the state is one line in a named counter");
_Static_assert(PERCPU_SLOTS_MAX >= 1 && PERCPU_SLOTS_MAX <= UINT16_MAX,
	       "slots is a uint16_t");

static inline struct percpu_slot *slot_of(const struct percpu_state *s,
					  uint32_t cpu)
{
	return (struct percpu_slot *)((uintptr_t)s + (uintptr_t)s->off +
				      ((uintptr_t)cpu << s->shift));
}

/* The slots a counter made on this host has. */
static unsigned host_slots(void)
{
	unsigned n = tally__possible_cpus();

	return n < PERCPU_SLOTS_MAX ? n : PERCPU_SLOTS_MAX;
}

/* The handle option path=auto|atomic (k->path): the handle's own choice,
 * not the counter's (both paths add into every counter), so a handle with
 * path=atomic joins a named counter made without it, and the reverse. */
enum { PATH_AUTO, PATH_ATOMIC };

/* The atomic path: exact from any CPU, any thread, any process.  sched_getcpu
 * only spreads the adds (a stale CPU number costs speed, not counts); with
 * rseq registered, glibc answers it from the rseq area, else from the vDSO.
 * acq_rel for the same reason as backends/atomic.c.  Not inlined, so that
 * the fast path saves no registers for a call it does not make. */
static __attribute__((noinline)) int add_atomic(struct percpu_state *s,
						int64_t delta)
{
	int cpu = sched_getcpu();
	uint32_t i = cpu < 0 ? 0 : (uint32_t)cpu % s->slots;

	atomic_fetch_add_explicit(&slot_of(s, i)->shared, (uint64_t)delta,
				  memory_order_acq_rel);
	return 0;
}

#ifdef PERCPU_RSEQ
#define PERCPU_STR_(x) #x
#define PERCPU_STR(x)  PERCPU_STR_(x)

/* This thread's rseq area, registered by glibc (struct rseq, <sys/rseq.h>). */
static inline struct rseq *rseq_area(void)
{
	return (struct rseq *)(void *)((char *)__builtin_thread_pointer() +
				       __rseq_offset);
}

/*
 * The restartable sequence, modelled on rseq_addv() of the Linux kernel's
 * rseq selftests (their x86 and arm64 headers, in the kernel's tree, not
 * this one): add delta to *v if this thread is still on CPU `cpu`.  Returns
 * 0 when the add committed, -1 when the kernel aborted the sequence
 * (preemption, migration, a signal) or the thread is no longer on `cpu`:
 * then nothing was written, and the caller tries again.
 *
 * The kernel knows the sequence by a descriptor (struct rseq_cs, 32-byte
 * aligned, in section __rseq_cs): start_ip, post_commit_offset (the length:
 * an IP in [start_ip, start_ip + post_commit_offset) is inside), abort_ip.
 * Storing the descriptor's address in rseq->rseq_cs arms it.  Whenever the
 * kernel preempts, migrates or delivers a signal to this thread with its IP
 * inside, it moves the IP to abort_ip instead of resuming, after checking
 * that the 4 bytes before abort_ip are the signature registered with the
 * area (RSEQ_SIG; otherwise it kills the process).  The commit is the last
 * instruction inside, the store to *v: before it nothing is visible, so a
 * restart never counts twice; after it the sequence is done, so an abort
 * never loses a committed add.  The kernel clears rseq->rseq_cs lazily when
 * it finds the IP outside, so the sequence never clears it.
 *
 * Inputs in registers rather than "m" operands on the TLS area, as the
 * selftests do: gcc 8 miscompiled asm goto with TLS memory operands.  No
 * outputs: asm goto could not have them before gcc 11.
 */
#if defined(__x86_64__)
/* ud1 RSEQ_SIG(%rip), %edi: opcode, then the signature as its operand. */
#define PERCPU_SIGNATURE                                                       \
	".byte 0x0f, 0xb9, 0x3d\n\t"                                           \
	".long " PERCPU_STR(RSEQ_SIG) "\n"
static inline __attribute__((always_inline)) int
rseq_add(struct rseq *rs, _Atomic uint64_t *v, uint64_t delta, uint32_t cpu)
{
	__asm__ goto(
		/* The descriptor, out of line: version 0, flags 0 (restart on
		 * preemption, migration and signal delivery alike). */
		".pushsection __rseq_cs, \"aw\"\n\t.balign 32\n"
		"3:\n\t.long 0, 0\n\t"	    /* version, flags */
		".quad 1f, 2f - 1f, 4f\n\t" /* start, length, abort */
		".popsection\n\t"
		/* Its address in __rseq_cs_ptr_array, where debuggers and
		 * tools look for every descriptor of a binary. */
		".pushsection __rseq_cs_ptr_array, \"aw\"\n\t.quad 3b\n\t.popsection\n\t"
		/* Arm: rs->rseq_cs = &descriptor (rseq_cs is at offset 8). */
		"leaq 3b(%%rip), %%rax\n\tmovq %%rax, 8(%[rs])\n"
		/* start_ip: from here to 2: the kernel restarts us. */
		"1:\n\t"
		/* Still on the CPU whose slot v is?  (cpu_id, offset 4) */
		"cmpl %[cpu], 4(%[rs])\n\t"
		/* No: abort, the caller reads the CPU again. */
		"jnz 4f\n\t"
		/* The commit: one unlocked add to this CPU's own word. */
		"addq %[delta], %[v]\n"
		/* post-commit IP: the add is done. */
		"2:\n\t"
		/* The abort handler, out of line in __rseq_failure. */
		".pushsection __rseq_failure, \"ax\"\n\t"
		/* RSEQ_SIG as the operand of an undefined instruction
		 * (ud1 RSEQ_SIG(%rip), %edi): the kernel finds the
		 * signature in the 4 bytes just before abort_ip, and a
		 * disassembler sees one instruction, not garbage. */
		PERCPU_SIGNATURE
		/* abort_ip: back to C, which retries. */
		"4:\n\tjmp %l[abort]\n\t.popsection\n\t"
		:
		: [rs] "r"(rs), [cpu] "r"(cpu), [v] "m"(*(uint64_t *)v),
		  [delta] "er"(delta)
		: "memory", "cc", "rax"
		: abort);
	return 0;
abort:
	return -1;
}
#elif defined(__aarch64__)
/* Not tested on aarch64 hardware (none was available): assembled only.
 * glibc's <sys/rseq.h> gives RSEQ_SIG_CODE, the signature in instruction
 * byte order (brk #0x45e0), which .inst emits. */
#ifndef RSEQ_SIG_CODE
#error "aarch64 <sys/rseq.h> without RSEQ_SIG_CODE"
#endif
/* The signature as an instruction word (brk #0x45e0). */
#define PERCPU_SIGNATURE ".inst " PERCPU_STR(RSEQ_SIG_CODE) "\n"
static inline __attribute__((always_inline)) int
rseq_add(struct rseq *rs, _Atomic uint64_t *v, uint64_t delta, uint32_t cpu)
{
	__asm__ goto(
		/* The descriptor: version 0, flags 0, start, length, abort. */
		".pushsection __rseq_cs, \"aw\"\n\t.balign 32\n"
		"3:\n\t.long 0, 0\n\t.quad 1f, 2f - 1f, 4f\n\t.popsection\n\t"
		/* Its address, for debuggers and tools. */
		".pushsection __rseq_cs_ptr_array, \"aw\"\n\t.quad 3b\n\t.popsection\n\t"
		/* Arm: rs->rseq_cs = &descriptor (PC-relative address). */
		"adrp x15, 3b\n\tadd x15, x15, :lo12:3b\n\tstr x15, [%[rs], #8]\n"
		/* start_ip: from here to 2: the kernel restarts us. */
		"1:\n\t"
		/* Still on the CPU whose slot v is?  (cpu_id, offset 4) */
		"ldr w15, [%[rs], #4]\n\tsub w15, w15, %w[cpu]\n\t"
		/* No: abort, the caller reads the CPU again. */
		"cbnz w15, 4f\n\t"
		/* Load this CPU's own word and add delta to it. */
		"ldr x15, [%[v]]\n\tadd x15, x15, %[delta]\n\t"
		/* The commit: store-release (a get that sees this add sees
		 * what this thread wrote before it). */
		"stlr x15, [%[v]]\n"
		/* post-commit IP: the add is done; skip the handler. */
		"2:\n\tb 5f\n\t"
		/* RSEQ_SIG just before abort_ip, as the kernel requires;
		 * as an instruction it is brk, never executed. */
		PERCPU_SIGNATURE
		/* abort_ip: back to C, which retries. */
		"4:\n\tb %l[abort]\n"
		"5:\n\t"
		:
		: [rs] "r"(rs), [cpu] "r"(cpu), [v] "r"(v), [delta] "r"(delta)
		: "memory", "x15"
		: abort);
	return 0;
abort:
	return -1;
}
#endif
#endif /* PERCPU_RSEQ */

/* A named counter: the state's line, then one slot per line. */
static size_t percpu_size(unsigned flags)
{
	if (flags & TALLY__NAMED)
		return NAMED_STRIDE + (size_t)host_slots() * NAMED_STRIDE;
	return sizeof(struct percpu_state);
}

/*
 * The slots come from an arena (private, or shared with the processes
 * forked later for TALLY_PSHARED), zero in every CPU's region; a named
 * counter's follow the state.  The initial value is in CPU 0's atomic word.
 */
static int percpu_init(void *state, int64_t initial, unsigned flags,
		       const char *options)
{
	struct percpu_state *s = state;
	unsigned n = host_slots();

	if (options != NULL)
		return TALLY_EOPTION; /* path, its one option, is a knob */
	s->slots = (uint16_t)n;
	if (flags & TALLY__NAMED) {
		s->off = NAMED_STRIDE;
		s->shift = NAMED_SHIFT;
		s->where = PLACE_NAMED;
		for (unsigned i = 0; i < n; i++) {
			atomic_init(&slot_of(s, i)->own, 0);
			atomic_init(&slot_of(s, i)->shared, 0);
		}
	} else {
		int shared = (flags & TALLY_PSHARED) != 0;
		size_t stride;
		void *p = tally__pool_alloc(sizeof(struct percpu_slot), n,
					    shared, &stride);

		if (p == NULL)
			return TALLY_ENOMEM;
		s->off = (int64_t)((uintptr_t)p - (uintptr_t)s);
		/* A page-multiple of a power-of-two target (arena.c): a power
		 * of two itself. */
		s->shift = (uint32_t)__builtin_ctzl(stride);
		s->where = shared ? PLACE_SHARED : PLACE_PRIVATE;
	}
	atomic_store_explicit(&slot_of(s, 0)->shared, (uint64_t)initial,
			      memory_order_relaxed);
	return 0;
}

static void percpu_destroy(void *state)
{
	struct percpu_state *s = state;

	if (s->where != PLACE_NAMED)
		tally__pool_free(slot_of(s, 0), sizeof(struct percpu_slot),
				 s->slots, s->where == PLACE_SHARED);
}

/*
 * A named counter made by a library on this or another host shape: its
 * state must say that its slots are inline, one per line, and fit the
 * bytes it was given.  Read once here; the object is the user's own
 * (src/named.c checked its owner and mode), so what add reads later is
 * what was checked.
 */
static int percpu_join(const void *state, size_t size)
{
	struct percpu_state s;

	memcpy(&s, state, sizeof(s));
	if (s.where == PLACE_NAMED && s.off == NAMED_STRIDE &&
	    s.shift == NAMED_SHIFT && s.slots >= 1 &&
	    NAMED_STRIDE + (size_t)s.slots * NAMED_STRIDE == size)
		return 0;
	tally__explain_set(
		TALLY_EBADOBJECT,
		"its percpu state is not one this tally can read: %u slots of 2^%u bytes at %lld in %zu bytes (a named percpu counter has N slots of %d bytes at %d, in %d * (N + 1) bytes)",
		(unsigned)s.slots, (unsigned)s.shift, (long long)s.off, size,
		NAMED_STRIDE, NAMED_STRIDE, NAMED_STRIDE);
	return TALLY_EBADOBJECT;
}

/*
 * Why a slot indexed by CPU is exact across threads, processes and separate
 * programs: an own word is written only by a sequence that checked, inside
 * itself, that its thread runs on that CPU.  Any other thread, of any
 * process, that wants to run on that CPU must first preempt the one inside
 * the sequence, and the kernel then aborts it before it resumes; a thread
 * that migrates away is aborted the same way.  So the read-modify-write of
 * one own word never overlaps another.  Every other add (no rseq in this
 * thread, a CPU without a slot of its own, the path=atomic option, a TSan
 * or non-Linux build) is atomic into a shared word.
 *
 * The fast path is a release (x86 stores are; aarch64 uses stlr) and get an
 * acquire: a get that sees an add sees what the adder wrote before it.
 */
static int percpu_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct percpu_state *s = state;

#ifdef PERCPU_RSEQ
	if (k->path == PATH_AUTO) {
		struct rseq *rs = rseq_area();

		for (;;) {
			/* The kernel keeps cpu_id current while rseq is
			 * registered; glibc sets it to
			 * RSEQ_CPU_ID_REGISTRATION_FAILED (-2, huge as
			 * unsigned) when registration failed or was turned
			 * off (GLIBC_TUNABLES=glibc.pthread.rseq=0), so one
			 * comparison also catches that. */
			uint32_t cpu = *(volatile uint32_t *)&rs->cpu_id;

			if (cpu >= s->slots)
				break;
			if (rseq_add(rs, &slot_of(s, cpu)->own, (uint64_t)delta,
				     cpu) == 0)
				return 0;
		}
	}
#else
	(void)k;
#endif
	return add_atomic(s, delta);
}

/*
 * Exact once the adds have finished.  While adds run it is not an atomic
 * snapshot (slots are read one after another), as with sharded.  It reads
 * the slots the counter has, one per possible CPU of the host that made it:
 * two words each.
 */
static int percpu_get(void *state, int64_t *value)
{
	struct percpu_state *s = state;
	uint64_t sum = 0;

	for (uint32_t i = 0; i < s->slots; i++) {
		struct percpu_slot *slot = slot_of(s, i);

		sum += atomic_load_explicit(&slot->own, memory_order_acquire);
		sum += atomic_load_explicit(&slot->shared,
					    memory_order_acquire);
	}
	*value = (int64_t)sum;
	return 0;
}

/* Which path this thread's adds on this counter take. */
static const char *percpu_path(const void *state, const struct tally__knobs *k)
{
	const struct percpu_state *s = state;

#ifdef PERCPU_RSEQ
	if (k->path == PATH_AUTO &&
	    *(volatile uint32_t *)&rseq_area()->cpu_id < s->slots)
		return "rseq";
#else
	(void)k;
	(void)s;
#endif
	return "atomic";
}

static int percpu_knob(const struct tally__opt *o, struct tally__knobs *k)
{
	static const char *const words[] = {"auto", "atomic", NULL};
	int w;

	if (!tally__opt_is(o, "path"))
		return 0;
	if ((w = tally__opt_word(o, words)) < 0)
		return TALLY_EOPTION;
	k->path = (unsigned)w;
	return 1;
}

const struct tally_backend tally_backend_percpu = {
	.name = "percpu",
	.summary =
		"per-CPU slots, each add a restartable sequence (rseq); atomic fallback",
	.caps = TALLY_CAP_LOCKFREE | TALLY_CAP_PSHARED | TALLY_CAP_NAMED,
	.state_size = sizeof(struct percpu_state),
	.state_align = _Alignof(struct percpu_state),
	.takes_options = 1,
	.descriptor = 1,
	.size = percpu_size,
	.join = percpu_join,
	.init = percpu_init,
	.add = percpu_add,
	.get = percpu_get,
	.destroy = percpu_destroy,
	.path = percpu_path,
	.knob = percpu_knob,
};
