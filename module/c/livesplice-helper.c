// SPDX-License-Identifier: GPL-2.0
/*
 * livesplice helper: the only livesplice code that runs in the kernel.
 *
 * It replaces functions of the running kernel by writing a 5-byte "jmp rel32"
 * into each of them, all in one stop_machine, after checking that no task is
 * inside the code and that every site still holds the bytes the loader
 * expects.  Every task (and every online CPU's idle task) is walked before
 * the stop; inside it only the tasks that ran since their walk are checked
 * again (docs/design.md, "The stack check").
 *
 * Everything that can be decided in userspace was: the addresses
 * of the symbols it needs arrive in the "addrs" parameter and are only
 * checked here with sprint_symbol(); the bytes expected at each site arrive
 * in "expect".  The metadata of the update (functions, relocations) is in a
 * generated file linked into the same module.
 *
 * Functions of a module are patched whenever that module is there: at
 * apply, when it is loaded, in the same stop_machine as the rest; else
 * from the module notifier when it loads (MODULE_STATE_COMING: relocated,
 * read-only, none of its code has run yet), with text_poke and no
 * stop_machine.  The module's symbols are then looked up by name in its
 * own symbol table (the loader says which of several of one name), and
 * the bytes at its sites are checked as for vmlinux, except where the
 * loader marked a byte as a relocation field that depends on where the
 * module lands.  A mismatch refuses the module's load.  When it goes
 * (MODULE_STATE_GOING), its state is dropped; it is patched again when it
 * comes back.
 *
 * Control and state are in /sys/module/<name>/livesplice/.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpu.h>
#include <linux/bsearch.h>
#include <linux/delay.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/sched/task_stack.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/stop_machine.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/vmalloc.h>
#include <asm/asm.h>
#include <asm/sync_core.h>
#include <asm/unaligned.h>
#include <asm/unwind.h>

#include "livesplice.h"

static char *expect;
module_param(expect, charp, 0400);
MODULE_PARM_DESC(expect, "bytes expected at each function's site, 10 characters per function: two hex digits per byte, or xx for any");

static int retries = 5;
module_param(retries, int, 0644);
MODULE_PARM_DESC(retries, "how many times to retry when a task is in the way (default 5)");

static int retry_ms = 100;
module_param(retry_ms, int, 0644);
MODULE_PARM_DESC(retry_ms, "pause before each retry in milliseconds (default 100)");

static int walk_delay_ms;
module_param(walk_delay_ms, int, 0644);
MODULE_PARM_DESC(walk_delay_ms, "test hook: pause between the walk of every task and the stop, in milliseconds (default 0)");

#define LS_CALIBRATE_RUNS	7
#define LS_SNAPSHOT_TRIES	10
#define LS_ERROR_LEN		384

typedef void *(*ls_poke_fn)(void *addr, const void *opcode, size_t len);
typedef int (*ls_stop_fn)(cpu_stop_fn_t fn, void *data,
			  const struct cpumask *cpus);

/*
 * Per function: the patch site and its bytes.  A module's function has
 * old == 0 while its module is not there.
 */
struct ls_site {
	unsigned long old;		/* old function */
	unsigned long size;		/* its size in the running kernel */
	unsigned long site;		/* old + site_offset */
	void *map;			/* a writable mapping of its page(s), */
	u8 *alias;			/* and site in it, during an operation */
	u8 expect[LS_JMP_LEN];		/* what the loader expects there */
	bool any[LS_JMP_LEN];		/* where any byte will do */
	u8 orig[LS_JMP_LEN];		/* what was there at apply */
	u8 jmp[LS_JMP_LEN];		/* e9 rel32 to the replacement */
};

/* Per object of __livesplice_objects. */
struct ls_obj {
	struct module *mod;		/* a module, while it is there */
	bool funcs;			/* the update replaces functions of it */
	bool patched;			/* its sites hold our jumps */
	bool in_op;			/* part of the stop_machine under way */
};

/* Per cold part: where it runs, when known (start == 0 while not). */
struct ls_range {
	unsigned long start, size;
};

enum ls_state {
	LS_LOADED,
	LS_APPLIED,
};

static DEFINE_MUTEX(ls_lock);	/* serializes control writes, guards below */

static struct {
	ls_poke_fn text_poke;
	struct mutex *text_mutex;	/* the kernel's, taken around text writes */
	ls_stop_fn stop_machine_cpuslocked;
	struct task_struct *(*idle_task)(int cpu);
	unsigned long *total_forks;
	unsigned long long (*nr_context_switches)(void);
	struct mutex *module_mutex;
	struct module *(*find_module)(const char *name);
	struct ls_site *sites;
	struct ls_range *parts;
	struct ls_obj *objs;
	unsigned long *resolved;	/* per symbol: its address, when known */
	struct module **held;		/* per fix-up: the exporter it holds */
	bool notifier;			/* ls_nb is registered */
	enum ls_state state;
	char error[LS_ERROR_LEN];
	u64 apply_stop_ns, apply_work_ns;
	u64 undo_stop_ns, undo_work_ns;
	u64 apply_stop_tasks, undo_stop_tasks;	/* tasks walked in the stop */
	u64 apply_stop_pass, undo_stop_pass;	/* 1: it needed the pass */
	u64 empty_stop_ns, empty_bare_stop_ns;
	u64 rewrite_stop_ns;
} ls;

/* A task found in the way of an operation. */
struct ls_busy {
	pid_t pid;
	char comm[TASK_COMM_LEN];
	unsigned long addr;
	bool unreliable;		/* its stack could not be walked to the end */
	bool idle;			/* it is a CPU's idle task */
	bool main_loop;			/* addr is in its thread's main function */
	bool ran;			/* it ran after its walk, */
	bool in_stop;			/* and was seen in the stop */
};

/* What the walk before the stop saw of one task. */
struct ls_seen {
	struct task_struct *task;	/* a reference is held */
	unsigned long switches;		/* nvcsw + nivcsw when it was walked */
	bool recheck;			/* it ran during its walk: walk it in the stop */
};

/*
 * The walk of every task before the stop.  The pass over it, before the
 * stop and in the stop when the snapshot cannot tell who ran (see
 * ls_snapshot), looks again at the tasks that have been switched out since
 * their walk (their switch count moved: every task that ran since was, for
 * the stop to run), those forked since, and those that ran during it.
 * full: the walk could not record every task, so the pass looks at them
 * all.
 */
struct ls_walk {
	struct ls_seen *seen;		/* sorted by task */
	unsigned int nr, cap;
	unsigned long forks;		/* total_forks before the walk */
	bool full;
};

/* Shared between a control write and its stop_machine callback. */
struct ls_stop {
	bool undo;
	bool empty;			/* calibration: do nothing in the stop, */
	bool bare;			/* nor before it */
	bool rewrite;			/* but write the sites' own bytes back */
	bool in_stop;			/* the stop's checks are running */
	bool rehearse;			/* just before the stop (ls_rehearse) */
	bool pass;			/* the stop needed the pass over the walk */
	struct ls_walk *walk;
	struct task_struct **snap;	/* per CPU: its task at the snapshot */
	unsigned long long snap_switches;	/* nr_context_switches() then */
	unsigned long snap_forks;	/* total_forks then */
	unsigned long lo, hi;		/* bounds of the code in the way */
	int result;			/* 0, -EBUSY or -EILSEQ */
	struct ls_busy busy;		/* -EBUSY: the task in the way */
	unsigned int func;		/* -EILSEQ: which function */
	u8 found[LS_JMP_LEN];
	u8 scratch[LS_JMP_LEN];		/* a rehearsal's writes */
	unsigned int walked;		/* tasks walked inside the stop */
	u64 work_ns;
};

static bool ls_inside(unsigned long addr, unsigned long start,
		      unsigned long size)
{
	return addr >= start && addr <= start + size;
}

/* Is function i part of the operation under way? */
static bool ls_in_op(unsigned int i)
{
	return ls.objs[__livesplice_funcs[i].object].in_op;
}

/* Do the bytes at s's site hold what the loader expects? */
static bool ls_expected(const struct ls_site *s, const u8 *live)
{
	unsigned int k;

	for (k = 0; k < LS_JMP_LEN; k++)
		if (!s->any[k] && live[k] != s->expect[k])
			return false;
	return true;
}

/* Print s's expected bytes, "xx" where any will do. */
static void ls_expect_text(const struct ls_site *s, char *buf)
{
	unsigned int k;

	for (k = 0; k < LS_JMP_LEN; k++, buf += 3)
		if (s->any[k])
			strscpy(buf, "xx ", 4);
		else
			snprintf(buf, 4, "%02x ", s->expect[k]);
	buf[-1] = '\0';
}

/*
 * Is addr in code that must not be on any stack for this operation?  Not
 * an old function's first byte: no frame of it returns there (that is a
 * call ending the function before it, or a pointer to it, as in the
 * stop's own bounds), and a task interrupted there has not entered it: it
 * goes on into whatever the site holds.  A replacement's first byte
 * counts, for undo: the module goes away after it.
 */
static bool ls_addr_busy(unsigned long addr, bool undo)
{
	const struct ls_func *f;
	unsigned int i;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		f = &__livesplice_funcs[i];
		if (!ls_in_op(i))
			continue;
		if (addr != ls.sites[i].old &&
		    ls_inside(addr, ls.sites[i].old, ls.sites[i].size))
			return true;
		if (undo && ls_inside(addr, (unsigned long)f->new_addr,
				      f->new_size))
			return true;
	}
	/* The new cold parts are inside new_size; the old ones apart. */
	for (i = 0; i < __livesplice_nr_parts; i++)
		if (ls_in_op(__livesplice_parts[i].func) &&
		    ls_inside(addr, ls.parts[i].start, ls.parts[i].size))
			return true;
	return false;
}

/*
 * Is the function of state's frame the main function of kernel thread t:
 * does it return into kthread(), or straight into ret_from_fork
 * (kthreadd)?  Such a function never returns while the thread runs.
 */
static bool ls_thread_main(struct task_struct *t, struct unwind_state *state)
{
	char sym[KSYM_SYMBOL_LEN];
	unsigned long addr;

	if (!(t->flags & PF_KTHREAD))
		return false;
	unwind_next_frame(state);
	if (unwind_done(state) || unwind_error(state))
		return false;
	addr = unwind_get_return_address(state);
	if (!addr)
		return false;
	sprint_symbol(sym, addr);
	return str_has_prefix(sym, "kthread+") ||
	       str_has_prefix(sym, "ret_from_fork+");
}

/* A task whose stack is already gone has nothing on it. */
static bool ls_has_stack(struct task_struct *t)
{
	return task_stack_page(t) && refcount_read(&t->stack_refcount);
}

static unsigned long ls_switches(struct task_struct *t)
{
	return READ_ONCE(t->nvcsw) + READ_ONCE(t->nivcsw);
}

/*
 * Unwind t as the kernel's reliable unwinder does (arch_stack_walk_reliable):
 * the walk must reach the end of the stack or user mode's registers, and
 * every frame must have a return address in kernel text.  True, with b
 * filled in, if t is inside the code or its stack is unreliable.
 */
static bool ls_task_busy(struct task_struct *t, bool undo, struct ls_busy *b)
{
	struct unwind_state state;
	struct pt_regs *regs;
	unsigned long addr;

	if (!ls_has_stack(t))
		return false;

	for (unwind_start(&state, t, NULL, NULL);
	     !unwind_done(&state) && !unwind_error(&state);
	     unwind_next_frame(&state)) {
		regs = unwind_get_entry_regs(&state, NULL);
		if (regs && user_mode(regs))
			return false;
		addr = unwind_get_return_address(&state);
		if (!addr) {
			b->unreliable = true;
			b->addr = state.ip;
			goto busy;
		}
		if (ls_addr_busy(addr, undo)) {
			b->addr = addr;
			b->main_loop = ls_thread_main(t, &state);
			goto busy;
		}
	}
	if (!unwind_error(&state))
		return false;
	b->unreliable = true;
	b->addr = state.ip;
busy:
	b->pid = task_pid_nr(t);
	b->idle = is_idle_task(t);
	strscpy(b->comm, t->comm, sizeof(b->comm));
	return true;
}

static int ls_cmp_seen(const void *a, const void *b)
{
	unsigned long x = (unsigned long)((const struct ls_seen *)a)->task;
	unsigned long y = (unsigned long)((const struct ls_seen *)b)->task;

	return x < y ? -1 : x > y;
}

static void ls_walk_free(struct ls_walk *w)
{
	unsigned int i;

	for (i = 0; i < w->nr; i++)
		put_task_struct(w->seen[i].task);
	kvfree(w->seen);
	memset(w, 0, sizeof(*w));
}

static void ls_bound(struct ls_stop *d, unsigned long start,
		     unsigned long size)
{
	d->lo = min(d->lo, start);
	d->hi = max(d->hi, start + size + 1);
}

/* Bounds of every range ls_addr_busy() looks at, for a quick no. */
static void ls_op_bounds(struct ls_stop *d)
{
	const struct ls_func *f;
	unsigned int i;

	d->lo = ULONG_MAX;
	d->hi = 0;
	for (i = 0; i < __livesplice_nr_funcs; i++) {
		f = &__livesplice_funcs[i];
		if (!ls_in_op(i))
			continue;
		ls_bound(d, ls.sites[i].old, ls.sites[i].size);
		if (d->undo)
			ls_bound(d, (unsigned long)f->new_addr, f->new_size);
	}
	for (i = 0; i < __livesplice_nr_parts; i++)
		if (ls_in_op(__livesplice_parts[i].func))
			ls_bound(d, ls.parts[i].start, ls.parts[i].size);
}

/*
 * The quick check: does any word of t's live stack, from its saved stack
 * pointer (or this CPU's, for current) to the top, point into the code?
 * Every return address of a task that is not running is such a word, so a
 * stack without one is not in the way, however its frames unwind.  A hit
 * may be a stale word; the unwinder decides.
 */
static bool ls_stack_hit(const struct ls_stop *d, struct task_struct *t)
{
	unsigned long *base, *end, *p;

	if (!ls_has_stack(t))
		return false;
	base = task_stack_page(t);
	end = base + THREAD_SIZE / sizeof(*base);
	p = t == current ? (unsigned long *)current_stack_pointer :
			   (unsigned long *)READ_ONCE(t->thread.sp);
	if (p < base || p >= end)
		return true;
	for (; p < end; p++)
		if (*p >= d->lo && *p < d->hi && ls_addr_busy(*p, d->undo))
			return true;
	return false;
}

/* Is t, not running or current, in the way?  Then d->busy says why. */
static bool ls_in_way(struct ls_stop *d, struct task_struct *t)
{
	struct ls_busy found = {};

	if (d->in_stop)
		d->walked++;
	if (!ls_stack_hit(d, t) || !ls_task_busy(t, d->undo, &found))
		return false;
	d->busy = found;
	return true;
}

enum ls_look { LS_CLEAR, LS_IN_WAY, LS_MOVED };

/*
 * Look at t while the machine runs.  LS_MOVED: it was on a CPU, or ran
 * during the look (the stop looks again); else *switches is the switch
 * count its stack was seen with.  The count is read after on_cpu: a task
 * switching out counts the switch before it clears on_cpu.
 */
static enum ls_look ls_look(struct ls_stop *d, struct task_struct *t,
			    unsigned long *switches)
{
	bool in_way;

	/* Pairs with finish_task()'s release of on_cpu: the count is current. */
	if (smp_load_acquire(&t->on_cpu))
		return LS_MOVED;
	*switches = ls_switches(t);
	/* The count before the stack, */
	smp_rmb();
	in_way = ls_in_way(d, t);
	/* the stack before on_cpu and the count again. */
	smp_rmb();
	if (READ_ONCE(t->on_cpu) || ls_switches(t) != *switches)
		return LS_MOVED;
	return in_way ? LS_IN_WAY : LS_CLEAR;
}

/*
 * Note what a look at s's task before the stop finds: -EBUSY if it is in
 * the way (ran: it ran after its walk), else whether the stop must look
 * again.
 */
static int ls_note(struct ls_stop *d, struct ls_seen *s, bool ran)
{
	switch (ls_look(d, s->task, &s->switches)) {
	case LS_IN_WAY:
		d->busy.ran = ran;
		return -EBUSY;
	case LS_MOVED:
		s->recheck = true;
		return 0;
	default:
		s->recheck = false;
		return 0;
	}
}

static int ls_walk_task(struct ls_stop *d, struct task_struct *t)
{
	struct ls_walk *w = d->walk;
	struct ls_seen *s;

	if (w->nr == w->cap) {
		w->full = true;
		return 0;
	}
	s = &w->seen[w->nr++];
	get_task_struct(t);
	s->task = t;
	return ls_note(d, s, false);
}

/*
 * Walk every task and every online CPU's idle task (CPU hotplug is held
 * off by the caller) before the stop.
 */
static int ls_walk_all(struct ls_stop *d)
{
	struct ls_walk *w = d->walk;
	struct task_struct *g, *t;
	unsigned int n = 0;
	int cpu, ret = 0;

	rcu_read_lock();
	for_each_process_thread(g, t)
		n++;
	rcu_read_unlock();
	w->cap = n + n / 4 + 64 + num_online_cpus();
	w->seen = kvcalloc(w->cap, sizeof(*w->seen), GFP_KERNEL);
	if (!w->seen)
		return -ENOMEM;
	w->forks = READ_ONCE(*ls.total_forks);
	/* total_forks before the task list: a task forked later is new. */
	smp_rmb();

	rcu_read_lock();
	for_each_process_thread(g, t) {
		ret = ls_walk_task(d, t);
		if (ret || w->full)
			goto out;	/* break leaves only the inner loop */
	}
out:
	rcu_read_unlock();
	for_each_online_cpu(cpu) {
		if (ret || w->full)
			break;
		ret = ls_walk_task(d, ls.idle_task(cpu));
	}
	if (ret)
		return ret;
	sort(w->seen, w->nr, sizeof(*w->seen), ls_cmp_seen, NULL);
	return 0;
}

static void ls_snap_cpu(void *info)
{
	struct ls_stop *d = info;

	get_task_struct(current);
	d->snap[smp_processor_id()] = current;
}

/*
 * The snapshot, taken just before the pass that runs before the stop: the
 * context switches of all CPUs so far, then the task each CPU runs, read
 * on that CPU with interrupts off, where no switch is half done.  In the
 * stop every CPU runs its stopper.  If the count of switches moved by
 * exactly the number of CPUs whose task is no longer the snapshot's, each
 * of those switched once, from that task to its stopper, and no other task
 * ran since the snapshot: the pass after it saw every other task where it
 * still is, and only the snapshot's tasks need a look (ls_stop_cpus).  A
 * switch read early only makes the count look larger.
 */
static int ls_snapshot(struct ls_stop *d)
{
	d->snap = kcalloc(nr_cpu_ids, sizeof(*d->snap), GFP_KERNEL);
	if (!d->snap)
		return -ENOMEM;
	d->snap_forks = READ_ONCE(*ls.total_forks);
	d->snap_switches = ls.nr_context_switches();
	on_each_cpu(ls_snap_cpu, d, 1);
	return 0;
}

static void ls_snap_free(struct ls_stop *d)
{
	int cpu;

	if (!d->snap)
		return;
	for_each_possible_cpu(cpu)
		if (d->snap[cpu])
			put_task_struct(d->snap[cpu]);
	kfree(d->snap);
	d->snap = NULL;
}

/*
 * In the stop, or just before it: is t, which ran since its walk, in the
 * way?  Tasks on a CPU are skipped: in the stop the other CPUs' current
 * tasks are their stoppers, spinning in multi_cpu_stop (refused at build
 * time, with its callers: differ/stoppath.go); before it, the stop checks
 * them.
 */
static bool ls_stop_busy(struct ls_stop *d, struct task_struct *t)
{
	if (t->on_cpu && t != current)
		return false;
	if (!ls_in_way(d, t))
		return false;
	d->busy.ran = true;
	d->busy.in_stop = d->in_stop;
	return true;
}

/*
 * In the stop: when only the snapshot's tasks can have moved (see
 * ls_snapshot), look at them and set *busy.  False if something else ran:
 * the pass is needed.
 */
static bool ls_stop_cpus(struct ls_stop *d, bool *busy)
{
	unsigned long long moved = 0;
	int cpu;

	if (READ_ONCE(*ls.total_forks) != d->snap_forks)
		return false;
	for_each_online_cpu(cpu) {
		if (!d->snap[cpu])
			return false;
		moved += d->snap[cpu] != per_cpu(current_task, cpu);
	}
	if (ls.nr_context_switches() - d->snap_switches != moved)
		return false;
	*busy = false;
	for_each_online_cpu(cpu) {
		if (d->snap[cpu] == per_cpu(current_task, cpu) && !d->rehearse)
			continue;
		*busy = ls_stop_busy(d, d->snap[cpu]);
		if (*busy)
			break;
	}
	return true;
}

/* When the walk could not record every task: check them all. */
static bool ls_stop_check_all(struct ls_stop *d)
{
	struct task_struct *g, *t;
	bool busy = false;
	int cpu;

	rcu_read_lock();
	for_each_process_thread(g, t) {
		busy = ls_stop_busy(d, t);
		if (busy)
			goto out;
	}
out:
	rcu_read_unlock();
	for_each_online_cpu(cpu) {
		if (busy)
			break;
		busy = ls_stop_busy(d, ls.idle_task(cpu));
	}
	return busy;
}

/*
 * The pass over the walk: look again at every task that ran since its
 * walk (see struct ls_walk).  Before the stop (ls_precheck), a task found
 * where it was is noted again, as the walk notes it; in the stop, every
 * task is where it will be when the jumps are written.
 */
static bool ls_stop_check(struct ls_stop *d)
{
	struct ls_walk *w = d->walk;
	struct task_struct *g, *t;
	struct ls_seen key, *s;
	bool busy = false;

	if (w->full)
		return ls_stop_check_all(d);
	for (s = w->seen; s < w->seen + w->nr; s++) {
		if (!s->recheck && ls_switches(s->task) == s->switches)
			continue;
		/* The caller itself, running, is looked at (not noted) too. */
		if ((d->in_stop || s->task == current) ? ls_stop_busy(d, s->task) :
		    ls_note(d, s, true))
			return true;
	}
	if (READ_ONCE(*ls.total_forks) == w->forks)
		return false;
	rcu_read_lock();
	for_each_process_thread(g, t) {
		key.task = t;
		if (bsearch(&key, w->seen, w->nr, sizeof(key), ls_cmp_seen))
			continue;
		busy = ls_stop_busy(d, t);
		if (busy)
			goto out;	/* break leaves only the inner loop */
	}
out:
	rcu_read_unlock();
	return busy;
}

/* Do the sites hold what the operation expects? -EILSEQ if not. */
static int ls_check_sites(struct ls_stop *d)
{
	struct ls_site *s;
	unsigned int i;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		s = &ls.sites[i];
		if (!ls_in_op(i))
			continue;
		if (d->undo ? memcmp((void *)s->site, s->jmp, LS_JMP_LEN) :
			      !ls_expected(s, (void *)s->site)) {
			memcpy(d->found, (void *)s->site, LS_JMP_LEN);
			d->func = i;
			return -EILSEQ;
		}
	}
	return 0;
}

/* The checks of the stop: 0, -EBUSY or -EILSEQ. */
static int ls_stop_checks(struct ls_stop *d)
{
	bool busy;

	d->in_stop = true;
	if (!ls_stop_cpus(d, &busy)) {
		d->pass = true;
		busy = ls_stop_check(d);
	}
	return busy ? -EBUSY : ls_check_sites(d);
}

/*
 * Write the jumps (apply), the saved bytes (undo) or, for calibrate-write,
 * each site's own bytes, through the writable mappings made before the
 * stop, as text_poke() does through its own, but without switching mm.
 * A rehearsal writes to d->scratch instead.
 */
static void ls_write_sites(struct ls_stop *d)
{
	struct ls_site *s;
	unsigned int i;
	const u8 *from;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		s = &ls.sites[i];
		if (!ls_in_op(i))
			continue;
		if (d->empty) {
			from = (const u8 *)s->site;
		} else if (d->undo) {
			from = s->orig;
		} else {
			memcpy(d->rehearse ? d->scratch : s->orig,
			       (void *)s->site, LS_JMP_LEN);
			from = s->jmp;
		}
		memcpy(d->rehearse ? d->scratch : s->alias, from, LS_JMP_LEN);
	}
}

/*
 * Runs on one CPU while the others spin with interrupts off.  Not inlined
 * into ls_rehearse(): the rehearsal runs these very instructions.
 */
static noinline int ls_stop_cb(void *data)
{
	struct ls_stop *d = data;
	u64 start = ktime_get_ns();

	d->result = d->empty ? 0 : ls_stop_checks(d);
	if (!d->result && (!d->empty || d->rewrite))
		ls_write_sites(d);
	d->work_ns = ktime_get_ns() - start;
	return d->result;
}

/*
 * Run the stop's callback once just before the stop, on this CPU, with
 * the writes sent to d->scratch, and forget what it found: the stop
 * decides.  The code the stop runs (fresh in every update module) and the
 * data it reads are then warm when the machine is stopped.  In qemu's TCG
 * the first run of guest code translates it, tens of microseconds a block,
 * and an apply stop that ran its checks cold did 2-3 times the work
 * (docs/design.md, "Measuring"); on hardware it saves cache and TLB
 * misses.  A rehearsal looks at every snapshot task, so that the stop's
 * look at one is warm as well.
 */
static void ls_rehearse(struct ls_stop *d)
{
	d->rehearse = true;
	rcu_read_lock();
	ls_stop_cb(d);
	rcu_read_unlock();
	d->rehearse = false;
	d->in_stop = false;
	d->pass = false;
	d->walked = 0;
	d->result = 0;
	memset(&d->busy, 0, sizeof(d->busy));
}

static struct page *ls_text_page(unsigned int i, unsigned long addr)
{
	if (__livesplice_funcs[i].object == LS_VMLINUX)
		return virt_to_page((void *)addr);
	return vmalloc_to_page((void *)addr);
}

static void ls_unmap_sites(void)
{
	unsigned int i;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		if (ls.sites[i].map)
			vunmap(ls.sites[i].map);
		ls.sites[i].map = NULL;
		ls.sites[i].alias = NULL;
	}
}

/*
 * Map the page (or two) of each site of the operation writable, before
 * the stop: the stop then writes the jumps with plain stores.
 */
static int ls_map_sites(void)
{
	struct page *pages[2];
	unsigned long page;
	struct ls_site *s;
	unsigned int i, n;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		s = &ls.sites[i];
		if (!ls_in_op(i))
			continue;
		page = s->site & PAGE_MASK;
		n = offset_in_page(s->site) + LS_JMP_LEN > PAGE_SIZE ? 2 : 1;
		pages[0] = ls_text_page(i, page);
		pages[1] = n > 1 ? ls_text_page(i, page + PAGE_SIZE) : NULL;
		s->map = vmap(pages, n, VM_MAP, PAGE_KERNEL);
		if (!s->map) {
			ls_unmap_sites();
			return -ENOMEM;
		}
		s->alias = (u8 *)s->map + offset_in_page(s->site);
	}
	return 0;
}

/*
 * The pass, just before the stop and after the snapshot, in process
 * context: a task found in the way now is refused without stopping the
 * machine, and the stop finds less to do.  A stack is freed a grace period
 * after its task's end, so the read lock keeps the stacks looked at.
 */
static int ls_precheck(struct ls_stop *d)
{
	bool busy;

	rcu_read_lock();
	busy = ls_stop_check(d);
	rcu_read_unlock();
	return busy ? -EBUSY : ls_check_sites(d);
}

/*
 * The snapshot and the pass after it, taken again (up to
 * LS_SNAPSHOT_TRIES times) while some CPU switched tasks during the pass:
 * the stop can then look at the snapshot's tasks alone (ls_stop_cpus),
 * unless a CPU switches between here and the stop.  After the first, the
 * stop is rehearsed, and the snapshot and pass taken again, so that the
 * rehearsal does not widen the window between them and the stop.
 */
static int ls_prestop(struct ls_stop *d)
{
	unsigned int i;
	int ret;

	for (i = 0;; i++) {
		ret = ls_snapshot(d);
		if (!ret)
			ret = ls_precheck(d);
		if (!ret && i == 0)
			ls_rehearse(d);
		else if (ret || i + 1 == LS_SNAPSHOT_TRIES ||
			 ls.nr_context_switches() == d->snap_switches)
			return ret;
		ls_snap_free(d);
	}
}

static void ls_sync_core(void *info)
{
	sync_core();
}

/*
 * One stop_machine with the lock order kprobes uses, after the walk of
 * every task, the snapshot, the pass and the rehearsal (else the caller
 * mapped the sites, ls_map_sites); returns the stop's duration in
 * *stop_ns.  A calibration (d->empty) does the same work before its empty
 * stop, unless d->bare, and ignores what it finds.
 */
static int ls_stop_once(struct ls_stop *d, u64 *stop_ns)
{
	struct ls_walk w = {};
	u64 start;
	int ret = 0;

	*stop_ns = 0;
	d->walk = &w;
	cpus_read_lock();
	if (!d->bare) {
		ls_op_bounds(d);
		ret = ls_walk_all(d);
	}
	mutex_lock(ls.text_mutex);
	if (!ret && !d->bare)
		ret = ls_prestop(d);
	if (!ret && !d->empty && walk_delay_ms > 0) {
		pr_info("walked %u task(s) before the stop; pausing %d ms (walk_delay_ms)\n",
			w.nr, walk_delay_ms);
		msleep(walk_delay_ms);
	}
	if (d->empty)
		ret = 0;
	if (!ret) {
		start = ktime_get_ns();
		/* The callback runs on this CPU, where it was rehearsed. */
		ret = ls.stop_machine_cpuslocked(ls_stop_cb, d,
				cpumask_of(raw_smp_processor_id()));
		*stop_ns = ktime_get_ns() - start;
		if (!ret && !d->empty)
			on_each_cpu(ls_sync_core, NULL, 1);
	}
	mutex_unlock(ls.text_mutex);
	cpus_read_unlock();
	ls_snap_free(d);
	ls_walk_free(&w);
	d->walk = NULL;
	return ret;
}

/* Say in ls.error that function i's site holds found, not what we expect. */
static void ls_mismatch(unsigned int i, bool undo, const u8 *found)
{
	const struct ls_func *f = &__livesplice_funcs[i];
	char want[3 * LS_JMP_LEN + 1];

	if (undo)
		snprintf(want, sizeof(want), "%*ph", LS_JMP_LEN, ls.sites[i].jmp);
	else
		ls_expect_text(&ls.sites[i], want);
	snprintf(ls.error, sizeof(ls.error),
		 "mismatch: %s%s%s+0x%x: expected %s, found %*ph", f->object ?
		 __livesplice_objects[f->object].name : "", f->object ? ": " : "",
		 f->name, f->site_offset, want, LS_JMP_LEN, found);
}

/*
 * Stop, retrying while a task is in the way; the number of the last try
 * in *attempt (from 0).
 */
static int ls_tries(struct ls_stop *d, bool undo, int *attempt)
{
	int ret, n = max(READ_ONCE(retries), 0);
	u64 stop_ns;

	for (*attempt = 0;; (*attempt)++) {
		memset(d, 0, sizeof(*d));
		d->undo = undo;
		ret = ls_stop_once(d, &stop_ns);
		if (undo) {
			ls.undo_stop_ns = stop_ns;
			ls.undo_work_ns = d->work_ns;
			ls.undo_stop_tasks = d->walked;
			ls.undo_stop_pass = d->pass;
		} else {
			ls.apply_stop_ns = stop_ns;
			ls.apply_work_ns = d->work_ns;
			ls.apply_stop_tasks = d->walked;
			ls.apply_stop_pass = d->pass;
		}
		/* A thread's main function is never left: no use trying again. */
		if (ret != -EBUSY || *attempt >= n || d->busy.main_loop)
			return ret;
		msleep(max(READ_ONCE(retry_ms), 0));
	}
}

/*
 * Why b is in the way, for the message.  A kernel thread of a module runs
 * its main function until the module goes: the update patches that
 * function when the module loads again.
 */
static void ls_busy_why(const struct ls_busy *b, char *buf, size_t len)
{
	char sym[KSYM_SYMBOL_LEN];
	char *mod, *end;

	*buf = '\0';
	if (b->main_loop) {
		sprint_symbol(sym, b->addr);
		mod = strchr(sym, '[');
		end = mod ? strchr(mod, ']') : NULL;
		if (end)
			snprintf(buf, len, ", the main function of that kernel thread, which it never leaves: unload %.*s, apply, and load it again (the update patches it as it loads)",
				 (int)(end - mod - 1), mod + 1);
		else
			strscpy(buf, ", the main function of that kernel thread, which it never leaves: it cannot be replaced while the thread runs",
				len);
	} else if (b->ran) {
		strscpy(buf, b->in_stop ? ", seen in the stop: it ran after the walk" :
			", seen again before the stop: it ran after the walk", len);
	}
}

/* Say in ls.error that stop_machine itself failed. */
static void ls_stop_failed(int ret)
{
	snprintf(ls.error, sizeof(ls.error),
		 "stop: stop_machine failed with %d", ret);
}

/* Apply or undo with retries; sets ls.error on failure. */
static int ls_patch(bool undo)
{
	struct ls_stop d = {};
	struct ls_busy *b = &d.busy;
	char who[TASK_COMM_LEN + 32];
	char why[MODULE_NAME_LEN + 160];
	int attempt = 0, ret;

	/* Once for all the tries: the sites do not move between them. */
	ret = ls_map_sites();
	if (!ret) {
		ret = ls_tries(&d, undo, &attempt);
		ls_unmap_sites();
	}

	switch (ret) {
	case 0:
		break;
	case -EBUSY:
		if (b->idle)
			snprintf(who, sizeof(who), "the idle task %s", b->comm);
		else
			snprintf(who, sizeof(who), "task %d (%s)", b->pid,
				 b->comm);
		ls_busy_why(b, why, sizeof(why));
		snprintf(ls.error, sizeof(ls.error),
			 "busy: %s %s %pS%s (%d tries, %d ms apart)", who,
			 b->unreliable ? "has an unreliable stack at" : "is inside",
			 (void *)b->addr, why, attempt + 1, retry_ms);
		break;
	case -EILSEQ:
		ls_mismatch(d.func, undo, d.found);
		break;
	case -ENOMEM:
		strscpy(ls.error, "stop: out of memory for the walk of every task or the sites' mappings",
			sizeof(ls.error));
		break;
	default:
		ls_stop_failed(ret);
		break;
	}
	return ret;
}

/* Sites and fix-ups, for vmlinux at init and for a module when it is there. */

/* Function i runs at old (size bytes): compute its site and jump. */
static int ls_init_site(unsigned int i, unsigned long old, unsigned long size)
{
	const struct ls_func *f = &__livesplice_funcs[i];
	struct ls_site *s = &ls.sites[i];
	s64 rel;

	/*
	 * The running function may be shorter or longer than the pack's
	 * pre code (jump encodings, padding; the loader matched them):
	 * the stack check covers the kernel's own symbol.
	 */
	if (f->site_offset + LS_JMP_LEN > size) {
		snprintf(ls.error, sizeof(ls.error),
			 "invalid: %s: site +%u does not fit the kernel's symbol (%lu bytes)",
			 f->name, f->site_offset, size);
		return -EINVAL;
	}
	rel = (s64)((unsigned long)f->new_addr - (old + f->site_offset + LS_JMP_LEN));
	if (rel != (s32)rel) {
		snprintf(ls.error, sizeof(ls.error),
			 "invalid: %s: %s is out of jmp range", f->name,
			 f->new_name);
		return -ERANGE;
	}
	s->old = old;
	s->size = size;
	s->site = old + f->site_offset;
	s->jmp[0] = 0xe9;
	put_unaligned_le32((u32)(s32)rel, &s->jmp[1]);
	return 0;
}

/*
 * Apply the fix-ups to vmlinux (owner < 0) or those of module object
 * owner's code to modules, their targets resolved.  The update's text is
 * read-only: compute every value first, then write them all with
 * text_poke() under text_mutex.
 */
static int ls_apply_relocs(int owner)
{
	const struct ls_reloc *r;
	bool kernel;
	u64 *vals;
	unsigned int i;
	u64 p, v;

	if (!__livesplice_nr_relocs)
		return 0;
	vals = kcalloc(__livesplice_nr_relocs, sizeof(*vals), GFP_KERNEL);
	if (!vals)
		return -ENOMEM;
	for (i = 0; i < __livesplice_nr_relocs; i++) {
		r = &__livesplice_relocs[i];
		kernel = __livesplice_symbol_objects[r->target_index] == LS_VMLINUX;
		if (owner < 0 ? !kernel : kernel || r->owner != owner)
			continue;
		p = (u64)r->base + r->offset;
		v = ls.resolved[r->target_index] + r->addend;
		if (r->kind == LS_RELOC_PCREL32)
			v -= p;
		if (r->kind != LS_RELOC_ABS64 && (s64)v != (s32)v) {
			snprintf(ls.error, sizeof(ls.error),
				 "invalid: reloc %u (%s at %s+0x%lx) to %s%+ld: value 0x%llx overflows s32",
				 i, r->type, r->symbol, r->offset, r->target,
				 r->addend, v);
			kfree(vals);
			return -ERANGE;
		}
		vals[i] = v;
	}
	mutex_lock(ls.text_mutex);
	for (i = 0; i < __livesplice_nr_relocs; i++) {
		r = &__livesplice_relocs[i];
		kernel = __livesplice_symbol_objects[r->target_index] == LS_VMLINUX;
		if (owner < 0 ? !kernel : kernel || r->owner != owner)
			continue;
		p = (u64)r->base + r->offset;
		if (r->kind == LS_RELOC_ABS64) {
			ls.text_poke((void *)p, &vals[i], 8);
		} else {
			u32 v32 = (u32)vals[i];

			ls.text_poke((void *)p, &v32, 4);
		}
	}
	mutex_unlock(ls.text_mutex);
	kfree(vals);
	return 0;
}

/*
 * The address and size of the pos-th symbol called name in mod's symbol
 * table (its core symbols, as kallsyms lists them); 0 if there is none.
 */
static unsigned long ls_module_symbol(struct module *mod, const char *name,
				      unsigned long pos, unsigned long *size)
{
	const struct mod_kallsyms *ks = &mod->core_kallsyms;
	const Elf_Sym *sym;
	unsigned int i;

	for (i = 0; i < ks->num_symtab; i++) {
		sym = &ks->symtab[i];
		if (strcmp(ks->strtab + sym->st_name, name) || pos--)
			continue;
		*size = sym->st_size;
		return sym->st_value;
	}
	return 0;
}

/*
 * Object o is there (mod for a module; vmlinux with its symbols' sizes):
 * find the old cold parts of its functions, for the stack check.
 */
static int ls_init_parts(unsigned int o, struct module *mod,
			 const unsigned long *sizes)
{
	const struct ls_part *p;
	struct ls_range *r;
	unsigned int i;

	for (i = 0; i < __livesplice_nr_parts; i++) {
		p = &__livesplice_parts[i];
		r = &ls.parts[i];
		if (__livesplice_funcs[p->func].object != o)
			continue;
		if (!mod) {
			r->start = __livesplice_addrs[p->old_index];
			r->size = sizes[p->old_index];
			continue;
		}
		r->start = ls_module_symbol(mod, p->name,
					    __livesplice_addrs[p->old_index],
					    &r->size);
		if (!r->start || !within_module_core(r->start, mod)) {
			snprintf(ls.error, sizeof(ls.error),
				 "symbol: module %s has no cold part %s (#%lu of that name)",
				 mod->name, p->name, __livesplice_addrs[p->old_index]);
			r->start = r->size = 0;
			return -ENOENT;
		}
	}
	return 0;
}

/* Drop what module object o's patching holds: other modules, its sites. */
static void ls_release(unsigned int o)
{
	const struct ls_reloc *r;
	unsigned int i;

	for (i = 0; i < __livesplice_nr_relocs; i++) {
		r = &__livesplice_relocs[i];
		if (r->owner == o && ls.held[i]) {
			module_put(ls.held[i]);
			ls.held[i] = NULL;
		}
	}
	for (i = 0; i < __livesplice_nr_funcs; i++)
		if (__livesplice_funcs[i].object == o)
			ls.sites[i].old = ls.sites[i].size = ls.sites[i].site = 0;
	for (i = 0; i < __livesplice_nr_parts; i++)
		if (__livesplice_funcs[__livesplice_parts[i].func].object == o)
			ls.parts[i].start = ls.parts[i].size = 0;
}

/*
 * The export name of module object t, at position pos among its symbols
 * of that name, with a reference on t that *held keeps while the fix-up
 * needs it. Not __symbol_get: it refuses exports that are not GPL-only
 * (bt_info, snd_card_new), which a module's code calls all the same.
 */
static unsigned long ls_export(unsigned int t, const char *name,
			       unsigned long pos, struct module **held)
{
	struct module *mod;
	unsigned long addr = 0, size;

	preempt_disable();
	mod = ls.find_module(__livesplice_objects[t].name);
	if (mod && try_module_get(mod)) {
		addr = ls_module_symbol(mod, name, pos, &size);
		if (addr)
			*held = mod;
		else
			module_put(mod);
	}
	preempt_enable();
	return addr;
}

/*
 * Module object o is there: find its functions and the symbols its
 * fix-ups need (its own and other modules' exports, by name and
 * position; a reference on each exporter while o is patched), and fix up
 * the replacement code.
 */
static int ls_prepare(unsigned int o)
{
	struct module *mod = ls.objs[o].mod;
	const struct ls_reloc *r;
	const struct ls_func *f;
	unsigned long addr, size;
	unsigned int i, t;
	int ret;

	for (i = 0; i < __livesplice_nr_relocs; i++) {
		r = &__livesplice_relocs[i];
		t = __livesplice_symbol_objects[r->target_index];
		if (r->owner != o || t == LS_VMLINUX)
			continue;
		if (t == o) {
			addr = ls_module_symbol(mod, r->target,
						__livesplice_addrs[r->target_index],
						&size);
		} else {
			addr = ls_export(t, r->target,
					 __livesplice_addrs[r->target_index],
					 &ls.held[i]);
		}
		if (!addr) {
			snprintf(ls.error, sizeof(ls.error),
				 "symbol: module %s has no symbol %s (#%lu of that name)",
				 __livesplice_objects[t].name, r->target,
				 __livesplice_addrs[r->target_index]);
			ret = -ENOENT;
			goto fail;
		}
		ls.resolved[r->target_index] = addr;
	}
	for (i = 0; i < __livesplice_nr_funcs; i++) {
		f = &__livesplice_funcs[i];
		if (f->object != o)
			continue;
		addr = ls_module_symbol(mod, f->name,
					__livesplice_addrs[f->old_index], &size);
		if (!addr || !within_module_core(addr, mod)) {
			snprintf(ls.error, sizeof(ls.error),
				 "symbol: module %s has no function %s (#%lu of that name)",
				 mod->name, f->name, __livesplice_addrs[f->old_index]);
			ret = -ENOENT;
			goto fail;
		}
		ret = ls_init_site(i, addr, size);
		if (ret)
			goto fail;
		ls.resolved[f->old_index] = addr;
	}
	ret = ls_init_parts(o, mod, NULL);
	if (!ret)
		ret = ls_apply_relocs(o);
	if (!ret)
		return 0;
fail:
	ls_release(o);
	return ret;
}

/*
 * Module object o is coming: none of its code has run, so its sites are
 * written with text_poke, without stop_machine, once they all hold what
 * the loader expects.
 */
static int ls_patch_coming(unsigned int o)
{
	struct ls_site *s;
	unsigned int i;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		s = &ls.sites[i];
		if (__livesplice_funcs[i].object == o &&
		    !ls_expected(s, (const u8 *)s->site)) {
			ls_mismatch(i, false, (const u8 *)s->site);
			return -EILSEQ;
		}
	}
	mutex_lock(ls.text_mutex);
	for (i = 0; i < __livesplice_nr_funcs; i++) {
		s = &ls.sites[i];
		if (__livesplice_funcs[i].object != o)
			continue;
		memcpy(s->orig, (void *)s->site, LS_JMP_LEN);
		ls.text_poke((void *)s->site, s->jmp, LS_JMP_LEN);
	}
	mutex_unlock(ls.text_mutex);
	on_each_cpu(ls_sync_core, NULL, 1);
	return 0;
}

/* A module comes or goes. */
static int ls_module_notify(struct notifier_block *nb, unsigned long action,
			    void *data)
{
	struct module *mod = data;
	struct ls_obj *ob;
	unsigned int o;
	int ret = 0;

	if (action != MODULE_STATE_COMING && action != MODULE_STATE_GOING)
		return NOTIFY_DONE;
	for (o = LS_VMLINUX + 1; o < __livesplice_nr_objects; o++)
		if (ls.objs[o].funcs &&
		    !strcmp(__livesplice_objects[o].name, mod->name))
			break;
	if (o == __livesplice_nr_objects)
		return NOTIFY_DONE;
	ob = &ls.objs[o];
	mutex_lock(&ls_lock);
	if (action == MODULE_STATE_GOING) {
		if (ob->mod == mod && ob->patched) {
			ls_release(o);
			ob->patched = false;
			pr_info("%s: module %s is going; its functions wait for it to load again\n",
				__livesplice_id, mod->name);
		}
		if (ob->mod == mod)
			ob->mod = NULL;
	} else {
		ob->mod = mod;
		if (ls.state == LS_APPLIED && !ob->patched) {
			ret = ls_prepare(o);
			if (!ret) {
				ret = ls_patch_coming(o);
				if (ret)
					ls_release(o);
			}
			if (ret) {
				ob->mod = NULL;
				pr_err("%s: refusing to load module %s: %s\n",
				       __livesplice_id, mod->name, ls.error);
				/* Not the module the update was checked against. */
				ret = -ENOEXEC;
			} else {
				ob->patched = true;
				pr_info("%s: patched module %s as it loads\n",
					__livesplice_id, mod->name);
			}
		}
	}
	mutex_unlock(&ls_lock);
	return notifier_from_errno(ret);
}

static struct notifier_block ls_nb = {
	.notifier_call = ls_module_notify,
};

static int ls_apply(void)
{
	unsigned int o, live = 0;
	struct ls_obj *ob;
	int ret = 0;

	if (ls.state == LS_APPLIED) {
		strscpy(ls.error, "state: already applied", sizeof(ls.error));
		return -EINVAL;
	}
	/* Pin the module first: it must not go away while applied. */
	if (!try_module_get(THIS_MODULE)) {
		strscpy(ls.error, "state: module is being removed",
			sizeof(ls.error));
		return -EINVAL;
	}
	ls.objs[LS_VMLINUX].in_op = ls.objs[LS_VMLINUX].funcs;
	for (o = LS_VMLINUX + 1; o < __livesplice_nr_objects; o++) {
		ob = &ls.objs[o];
		if (!ob->funcs || !ob->mod ||
		    READ_ONCE(ob->mod->state) == MODULE_STATE_GOING)
			continue;
		ret = ls_prepare(o);
		if (ret)
			goto fail;
		ob->in_op = true;
	}
	ls.apply_stop_ns = ls.apply_work_ns = ls.apply_stop_tasks = 0;
	ls.apply_stop_pass = 0;
	for (o = 0; o < __livesplice_nr_objects; o++)
		live += ls.objs[o].in_op;
	if (live) {
		ret = ls_patch(false);
		if (ret)
			goto fail;
	}
	for (o = 0; o < __livesplice_nr_objects; o++) {
		ob = &ls.objs[o];
		ob->patched = ob->in_op;
		ob->in_op = false;
	}
	add_taint(TAINT_LIVEPATCH, LOCKDEP_STILL_OK);
	WRITE_ONCE(ls.state, LS_APPLIED);
	pr_info("applied %s (%u function(s), %u object(s) live): stop %llu ns, work %llu ns, %llu task(s) walked in the stop%s\n",
		__livesplice_id, __livesplice_nr_funcs, live, ls.apply_stop_ns,
		ls.apply_work_ns, ls.apply_stop_tasks,
		ls.apply_stop_pass ? ", by the pass over every task" : "");
	return 0;
fail:
	for (o = 0; o < __livesplice_nr_objects; o++) {
		if (o != LS_VMLINUX && ls.objs[o].in_op)
			ls_release(o);
		ls.objs[o].in_op = false;
	}
	module_put(THIS_MODULE);
	pr_warn("apply of %s failed: %s\n", __livesplice_id, ls.error);
	return ret;
}

static int ls_undo(void)
{
	unsigned int o, live = 0;
	int ret;

	if (ls.state != LS_APPLIED) {
		strscpy(ls.error, "state: not applied", sizeof(ls.error));
		return -EINVAL;
	}
	for (o = 0; o < __livesplice_nr_objects; o++) {
		ls.objs[o].in_op = ls.objs[o].patched;
		live += ls.objs[o].in_op;
	}
	ls.undo_stop_ns = ls.undo_work_ns = ls.undo_stop_tasks = 0;
	ls.undo_stop_pass = 0;
	if (live) {
		ret = ls_patch(true);
		if (ret) {
			for (o = 0; o < __livesplice_nr_objects; o++)
				ls.objs[o].in_op = false;
			pr_warn("undo of %s failed: %s\n", __livesplice_id,
				ls.error);
			return ret;
		}
	}
	for (o = 0; o < __livesplice_nr_objects; o++) {
		if (o != LS_VMLINUX && ls.objs[o].in_op)
			ls_release(o);
		ls.objs[o].patched = ls.objs[o].in_op = false;
	}
	WRITE_ONCE(ls.state, LS_LOADED);
	module_put(THIS_MODULE);
	pr_info("undid %s (%u function(s), %u object(s) live): stop %llu ns, work %llu ns, %llu task(s) walked in the stop%s\n",
		__livesplice_id, __livesplice_nr_funcs, live, ls.undo_stop_ns,
		ls.undo_work_ns, ls.undo_stop_tasks,
		ls.undo_stop_pass ? ", by the pass over every task" : "");
	return 0;
}

static int ls_cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/* The median of LS_CALIBRATE_RUNS empty stops (bare: nothing before them). */
static int ls_empty_stops(bool bare, u64 *median)
{
	u64 runs[LS_CALIBRATE_RUNS];
	struct ls_stop d;
	unsigned int i;
	int ret;

	for (i = 0; i < LS_CALIBRATE_RUNS; i++) {
		memset(&d, 0, sizeof(d));
		d.empty = true;
		d.bare = bare;
		ret = ls_stop_once(&d, &runs[i]);
		if (ret) {
			ls_stop_failed(ret);
			return ret;
		}
	}
	sort(runs, LS_CALIBRATE_RUNS, sizeof(runs[0]), ls_cmp_u64, NULL);
	*median = runs[LS_CALIBRATE_RUNS / 2];
	return 0;
}

/*
 * The floor of the stop: empty stops after the same walk, snapshot and
 * pass as apply's (empty_stop_ns), and back to back (empty_bare_stop_ns).
 */
static int ls_calibrate(void)
{
	int ret = ls_empty_stops(false, &ls.empty_stop_ns);

	return ret ? ret : ls_empty_stops(true, &ls.empty_bare_stop_ns);
}

/*
 * While applied, the floor of a stop that writes code: the median of
 * LS_CALIBRATE_RUNS stops back to back whose callback writes each live
 * site's own bytes (its jump) back through the mappings, and does nothing
 * else (rewrite_stop_ns).  For make bench-stop.
 */
static int ls_calibrate_write(void)
{
	u64 runs[LS_CALIBRATE_RUNS];
	struct ls_stop d;
	unsigned int i, o;
	int ret;

	if (ls.state != LS_APPLIED) {
		strscpy(ls.error, "state: not applied", sizeof(ls.error));
		return -EINVAL;
	}
	for (o = 0; o < __livesplice_nr_objects; o++)
		ls.objs[o].in_op = ls.objs[o].patched;
	ret = ls_map_sites();
	for (i = 0; !ret && i < LS_CALIBRATE_RUNS; i++) {
		memset(&d, 0, sizeof(d));
		d.empty = d.bare = d.rewrite = true;
		ret = ls_stop_once(&d, &runs[i]);
	}
	ls_unmap_sites();
	for (o = 0; o < __livesplice_nr_objects; o++)
		ls.objs[o].in_op = false;
	if (ret == -ENOMEM) {
		strscpy(ls.error, "stop: out of memory for the sites' mappings",
			sizeof(ls.error));
		return ret;
	}
	if (ret) {
		ls_stop_failed(ret);
		return ret;
	}
	sort(runs, LS_CALIBRATE_RUNS, sizeof(runs[0]), ls_cmp_u64, NULL);
	ls.rewrite_stop_ns = runs[LS_CALIBRATE_RUNS / 2];
	return 0;
}

/* sysfs: /sys/module/<name>/livesplice/ */

static ssize_t id_show(struct module_attribute *ma, struct module_kobject *mk,
		       char *buf)
{
	return sysfs_emit(buf, "%s\n", __livesplice_id);
}

static ssize_t description_show(struct module_attribute *ma,
				struct module_kobject *mk, char *buf)
{
	return sysfs_emit(buf, "%s\n", __livesplice_description);
}

static ssize_t state_show(struct module_attribute *ma,
			  struct module_kobject *mk, char *buf)
{
	return sysfs_emit(buf, "%s\n",
			  READ_ONCE(ls.state) == LS_APPLIED ? "applied" : "loaded");
}

static ssize_t functions_show(struct module_attribute *ma,
			      struct module_kobject *mk, char *buf)
{
	const struct ls_func *f;
	const char *state;
	unsigned int i;
	int n = 0;

	mutex_lock(&ls_lock);
	for (i = 0; i < __livesplice_nr_funcs; i++) {
		f = &__livesplice_funcs[i];
		if (ls.state != LS_APPLIED)
			state = "off";
		else if (ls.objs[f->object].patched)
			state = "live";
		else
			state = "waiting";
		n += sysfs_emit_at(buf, n, "%s %s 0x%lx 0x%lx %u %s\n", f->name,
				   __livesplice_objects[f->object].name,
				   ls.sites[i].old, (unsigned long)f->new_addr,
				   f->site_offset, state);
	}
	mutex_unlock(&ls_lock);
	return n;
}

static ssize_t error_show(struct module_attribute *ma,
			  struct module_kobject *mk, char *buf)
{
	ssize_t n;

	mutex_lock(&ls_lock);
	n = ls.error[0] ? sysfs_emit(buf, "%s\n", ls.error) : 0;
	mutex_unlock(&ls_lock);
	return n;
}

#define LS_NS_ATTR(_name)						\
static ssize_t _name##_show(struct module_attribute *ma,		\
			    struct module_kobject *mk, char *buf)	\
{									\
	return sysfs_emit(buf, "%llu\n", READ_ONCE(ls._name));		\
}									\
static struct module_attribute ls_attr_##_name = __ATTR_RO(_name)

LS_NS_ATTR(apply_stop_ns);
LS_NS_ATTR(apply_work_ns);
LS_NS_ATTR(undo_stop_ns);
LS_NS_ATTR(undo_work_ns);
LS_NS_ATTR(empty_stop_ns);
LS_NS_ATTR(empty_bare_stop_ns);
LS_NS_ATTR(rewrite_stop_ns);
LS_NS_ATTR(apply_stop_tasks);
LS_NS_ATTR(undo_stop_tasks);
LS_NS_ATTR(apply_stop_pass);
LS_NS_ATTR(undo_stop_pass);

static ssize_t control_store(struct module_attribute *ma,
			     struct module_kobject *mk, const char *buf,
			     size_t count)
{
	int ret;

	if (mutex_lock_killable(&ls_lock))
		return -EINTR;
	if (sysfs_streq(buf, "apply")) {
		ret = ls_apply();
	} else if (sysfs_streq(buf, "undo")) {
		ret = ls_undo();
	} else if (sysfs_streq(buf, "calibrate")) {
		ret = ls_calibrate();
	} else if (sysfs_streq(buf, "calibrate-write")) {
		ret = ls_calibrate_write();
	} else {
		snprintf(ls.error, sizeof(ls.error),
			 "invalid: unknown command \"%.*s\"",
			 (int)min_t(size_t, strcspn(buf, "\n"), 32), buf);
		ret = -EINVAL;
	}
	if (!ret)
		ls.error[0] = '\0';
	mutex_unlock(&ls_lock);
	return ret ? ret : count;
}

static struct module_attribute ls_attr_id = __ATTR_RO(id);
static struct module_attribute ls_attr_description = __ATTR_RO(description);
static struct module_attribute ls_attr_state = __ATTR_RO(state);
static struct module_attribute ls_attr_functions =
	__ATTR(functions, 0400, functions_show, NULL);
static struct module_attribute ls_attr_error = __ATTR_RO(error);
static struct module_attribute ls_attr_control = __ATTR_WO(control);

static struct attribute *ls_attrs[] = {
	&ls_attr_id.attr,
	&ls_attr_description.attr,
	&ls_attr_state.attr,
	&ls_attr_functions.attr,
	&ls_attr_error.attr,
	&ls_attr_control.attr,
	&ls_attr_apply_stop_ns.attr,
	&ls_attr_apply_work_ns.attr,
	&ls_attr_undo_stop_ns.attr,
	&ls_attr_undo_work_ns.attr,
	&ls_attr_empty_stop_ns.attr,
	&ls_attr_empty_bare_stop_ns.attr,
	&ls_attr_rewrite_stop_ns.attr,
	&ls_attr_apply_stop_tasks.attr,
	&ls_attr_undo_stop_tasks.attr,
	&ls_attr_apply_stop_pass.attr,
	&ls_attr_undo_stop_pass.attr,
	NULL,
};

static const struct attribute_group ls_group = {
	.name = "livesplice",
	.attrs = ls_attrs,
};

/* Init: check the parameters, fix up the replacement code. */

/*
 * Must symbol i carry exactly its own name?  The helper's own symbols and
 * the functions to replace must; a relocation target may be an alias (two
 * names, one address: __x86_indirect_thunk_rax is also
 * __x86_indirect_thunk_array), and sprint_symbol() prints only one of them.
 */
static bool ls_exact_name(unsigned int i)
{
	unsigned int j;

	if (i < LS_NR_HELPER_SYMS)
		return true;
	for (j = 0; j < __livesplice_nr_funcs; j++)
		if (__livesplice_funcs[j].old_index == i)
			return true;
	for (j = 0; j < __livesplice_nr_parts; j++)
		if (__livesplice_parts[j].old_index == i)
			return true;
	return false;
}

/*
 * sprint_symbol() must print "NAME+0x0/0xSIZE" for a vmlinux symbol: the
 * address is the start of NAME (or of an alias, where ls_exact_name()
 * allows one).  Returns SIZE, or 0.
 */
static unsigned long ls_check_symbol(unsigned int i)
{
	const char *name = __livesplice_symbols[i];
	unsigned long addr = __livesplice_addrs[i], size;
	char buf[KSYM_SYMBOL_LEN];
	char *plus;

	sprint_symbol(buf, addr);
	plus = strstr(buf, "+0x0/");
	if (!plus || strchr(buf, ' ') || kstrtoul(plus + 5, 16, &size) ||
	    !size ||
	    ((plus - buf != strlen(name) || strncmp(buf, name, plus - buf)) &&
	     ls_exact_name(i))) {
		pr_err("addrs[%u]: 0x%lx is not the start of %s: sprint_symbol printed \"%s\"\n",
		       i, addr, name, buf);
		return 0;
	}
	return size;
}

static int ls_parse_expect(void)
{
	unsigned int i, k, n = __livesplice_nr_funcs;
	const char *p;

	if (!expect || strlen(expect) != n * 2 * LS_JMP_LEN) {
		pr_err("expect: need %u characters (%u per function), got \"%s\"\n",
		       n * 2 * LS_JMP_LEN, 2 * LS_JMP_LEN,
		       expect ? expect : "");
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		for (k = 0; k < LS_JMP_LEN; k++) {
			p = expect + (i * LS_JMP_LEN + k) * 2;
			if (p[0] == 'x' && p[1] == 'x')
				ls.sites[i].any[k] = true;
			else if (hex2bin(&ls.sites[i].expect[k], p, 1))
				break;
		}
		if (k < LS_JMP_LEN) {
			pr_err("expect: bad hex for %s: \"%.10s\"\n",
			       __livesplice_funcs[i].name,
			       expect + i * 2 * LS_JMP_LEN);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Find the modules whose functions the update replaces that are already
 * there; the notifier, registered first, follows them from then on.
 */
static int ls_find_modules(void)
{
	struct module *mod;
	unsigned int o;
	bool any = false;
	int ret;

	for (o = LS_VMLINUX + 1; o < __livesplice_nr_objects; o++)
		any |= ls.objs[o].funcs;
	if (!any)
		return 0;
	ret = register_module_notifier(&ls_nb);
	if (ret)
		return ret;
	ls.notifier = true;
	mutex_lock(&ls_lock);
	mutex_lock(ls.module_mutex);
	for (o = LS_VMLINUX + 1; o < __livesplice_nr_objects; o++) {
		if (!ls.objs[o].funcs)
			continue;
		mod = ls.find_module(__livesplice_objects[o].name);
		if (mod && (mod->state == MODULE_STATE_LIVE ||
			    mod->state == MODULE_STATE_COMING))
			ls.objs[o].mod = mod;
	}
	mutex_unlock(ls.module_mutex);
	mutex_unlock(&ls_lock);
	return 0;
}

static void ls_free(void)
{
	if (ls.notifier)
		unregister_module_notifier(&ls_nb);
	ls.notifier = false;
	kfree(ls.sites);
	kfree(ls.parts);
	kfree(ls.objs);
	kfree(ls.resolved);
	kfree(ls.held);
}

static int __init ls_init(void)
{
	unsigned long *sizes;
	unsigned int i;
	int ret = -EINVAL;

	if (__livesplice_nr_addrs != __livesplice_nr_symbols) {
		pr_err("addrs: need %u addresses, got %u\n",
		       __livesplice_nr_symbols, __livesplice_nr_addrs);
		return -EINVAL;
	}
	sizes = kcalloc(__livesplice_nr_symbols, sizeof(*sizes), GFP_KERNEL);
	ls.sites = kcalloc(__livesplice_nr_funcs, sizeof(*ls.sites),
			   GFP_KERNEL);
	ls.parts = kcalloc(__livesplice_nr_parts, sizeof(*ls.parts),
			   GFP_KERNEL);
	ls.objs = kcalloc(__livesplice_nr_objects, sizeof(*ls.objs),
			  GFP_KERNEL);
	ls.resolved = kcalloc(__livesplice_nr_symbols, sizeof(*ls.resolved),
			      GFP_KERNEL);
	ls.held = kcalloc(__livesplice_nr_relocs, sizeof(*ls.held), GFP_KERNEL);
	if (!sizes || !ls.sites || !ls.parts || !ls.objs || !ls.resolved ||
	    !ls.held) {
		ret = -ENOMEM;
		goto fail;
	}
	/* A module's symbols are resolved when it is there (ls_prepare). */
	for (i = 0; i < __livesplice_nr_symbols; i++) {
		if (__livesplice_symbol_objects[i] != LS_VMLINUX)
			continue;
		sizes[i] = ls_check_symbol(i);
		if (!sizes[i])
			goto fail;
		ls.resolved[i] = __livesplice_addrs[i];
	}
	ls.text_poke = (ls_poke_fn)__livesplice_addrs[LS_SYM_TEXT_POKE];
	ls.text_mutex = (struct mutex *)__livesplice_addrs[LS_SYM_TEXT_MUTEX];
	ls.stop_machine_cpuslocked =
		(ls_stop_fn)__livesplice_addrs[LS_SYM_STOP_MACHINE_CPUSLOCKED];
	ls.module_mutex =
		(struct mutex *)__livesplice_addrs[LS_SYM_MODULE_MUTEX];
	ls.find_module = (struct module *(*)(const char *))
		__livesplice_addrs[LS_SYM_FIND_MODULE];
	ls.idle_task = (struct task_struct *(*)(int))
		__livesplice_addrs[LS_SYM_IDLE_TASK];
	ls.total_forks = (unsigned long *)__livesplice_addrs[LS_SYM_TOTAL_FORKS];
	ls.nr_context_switches = (unsigned long long (*)(void))
		__livesplice_addrs[LS_SYM_NR_CONTEXT_SWITCHES];
	for (i = 0; i < __livesplice_nr_funcs; i++)
		ls.objs[__livesplice_funcs[i].object].funcs = true;

	ret = ls_parse_expect();
	for (i = 0; !ret && i < __livesplice_nr_funcs; i++) {
		const struct ls_func *f = &__livesplice_funcs[i];

		if (f->object == LS_VMLINUX)
			ret = ls_init_site(i, __livesplice_addrs[f->old_index],
					   sizes[f->old_index]);
	}
	if (!ret)
		ret = ls_init_parts(LS_VMLINUX, NULL, sizes);
	if (!ret)
		ret = ls_apply_relocs(-1);
	if (ret && ls.error[0])
		pr_err("%s\n", ls.error);
	if (!ret)
		ret = ls_find_modules();
	if (!ret)
		ret = sysfs_create_group(&THIS_MODULE->mkobj.kobj, &ls_group);
	if (ret)
		goto fail;
	kfree(sizes);
	pr_info("loaded %s (%u function(s))\n", __livesplice_id,
		__livesplice_nr_funcs);
	return 0;
fail:
	kfree(sizes);
	ls_free();
	return ret;
}

/*
 * Never patches: while applied the module holds a reference to itself,
 * and its modules' states were dropped by undo.
 */
static void __exit ls_exit(void)
{
	sysfs_remove_group(&THIS_MODULE->mkobj.kobj, &ls_group);
	ls_free();
}

module_init(ls_init);
module_exit(ls_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("livesplice");
