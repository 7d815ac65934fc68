// SPDX-License-Identifier: GPL-2.0
/*
 * livesplice helper: the only livesplice code that runs in the kernel.
 *
 * It replaces functions of the running kernel by writing a 5-byte "jmp rel32"
 * into each of them, all in one stop_machine, after checking that no task is
 * inside the code and that every site still holds the bytes the loader
 * expects.  Everything that can be decided in userspace was: the addresses
 * of the symbols it needs arrive in the "addrs" parameter and are only
 * checked here with sprint_symbol(); the bytes expected at each site arrive
 * in "expect".  The metadata of the update (functions, relocations) is in a
 * generated file linked into the same module.
 *
 * Control and state are in /sys/module/<name>/livesplice/.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpu.h>
#include <linux/delay.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/stop_machine.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <asm/sync_core.h>
#include <asm/unaligned.h>
#include <asm/unwind.h>

#include "livesplice.h"

static char *expect;
module_param(expect, charp, 0400);
MODULE_PARM_DESC(expect, "hex bytes expected at each function's site, 10 hex digits per function");

static int retries = 5;
module_param(retries, int, 0644);
MODULE_PARM_DESC(retries, "how many times to retry when a task is in the way (default 5)");

static int retry_ms = 100;
module_param(retry_ms, int, 0644);
MODULE_PARM_DESC(retry_ms, "pause before each retry in milliseconds (default 100)");

#define LS_CALIBRATE_RUNS	7
#define LS_ERROR_LEN		256

typedef void *(*ls_poke_fn)(void *addr, const void *opcode, size_t len);
typedef int (*ls_stop_fn)(cpu_stop_fn_t fn, void *data,
			  const struct cpumask *cpus);

/* Per function: the patch site and its bytes. */
struct ls_site {
	unsigned long old;		/* old function */
	unsigned long size;		/* its size in the running kernel */
	unsigned long site;		/* old + site_offset */
	u8 expect[LS_JMP_LEN];		/* what the loader expects there */
	u8 orig[LS_JMP_LEN];		/* what was there at apply */
	u8 jmp[LS_JMP_LEN];		/* e9 rel32 to the replacement */
};

enum ls_state {
	LS_LOADED,
	LS_APPLIED,
};

static DEFINE_MUTEX(ls_lock);	/* serializes control writes, guards below */

static struct {
	ls_poke_fn text_poke;
	ls_poke_fn text_poke_kgdb;
	struct mutex *text_mutex;	/* the kernel's, taken around text writes */
	ls_stop_fn stop_machine_cpuslocked;
	struct ls_site *sites;
	enum ls_state state;
	char error[LS_ERROR_LEN];
	u64 apply_stop_ns, apply_work_ns;
	u64 undo_stop_ns, undo_work_ns;
	u64 empty_stop_ns;
} ls;

/* Shared between a control write and its stop_machine callback. */
struct ls_stop {
	bool undo;
	bool empty;			/* calibration: do nothing */
	int result;			/* 0, -EBUSY or -EILSEQ */
	pid_t pid;			/* -EBUSY: the task in the way */
	char comm[TASK_COMM_LEN];
	unsigned long addr;
	bool unreliable;
	unsigned int func;		/* -EILSEQ: which function */
	u8 found[LS_JMP_LEN];
	u64 work_ns;
};

static bool ls_inside(unsigned long addr, unsigned long start,
		      unsigned long size)
{
	return addr >= start && addr <= start + size;
}

/* Is addr in code that must not be on any stack for this operation? */
static bool ls_addr_busy(unsigned long addr, bool undo)
{
	const struct ls_func *f;
	unsigned int i;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		f = &__livesplice_funcs[i];
		if (ls_inside(addr, ls.sites[i].old, ls.sites[i].size))
			return true;
		if (undo && ls_inside(addr, (unsigned long)f->new_addr,
				      f->new_size))
			return true;
	}
	return false;
}

/* Unwind t; true (and d filled in) if it is in the way. */
static bool ls_task_busy(struct task_struct *t, struct ls_stop *d)
{
	struct unwind_state state;
	unsigned long addr, last = 0;

	/*
	 * All other CPUs are stopped, so nothing can free a stack under us;
	 * a task whose stack is already gone has nothing on it.
	 */
	if (!task_stack_page(t) || !refcount_read(&t->stack_refcount))
		return false;

	for (unwind_start(&state, t, NULL, NULL); !unwind_done(&state);
	     unwind_next_frame(&state)) {
		addr = unwind_get_return_address(&state);
		if (!addr)
			continue;
		last = addr;
		if (ls_addr_busy(addr, d->undo)) {
			d->addr = addr;
			goto busy;
		}
	}
	if (!unwind_error(&state))
		return false;
	d->unreliable = true;
	d->addr = state.ip ? state.ip : last;
busy:
	d->pid = task_pid_nr(t);
	strscpy(d->comm, t->comm, sizeof(d->comm));
	return true;
}

/* Runs on one CPU while the others spin with interrupts off. */
static int ls_stop_cb(void *data)
{
	struct ls_stop *d = data;
	struct task_struct *g, *t;
	struct ls_site *s;
	const u8 *want;
	u64 start = ktime_get_ns();
	unsigned int i;

	if (d->empty)
		goto out;

	rcu_read_lock();
	for_each_process_thread(g, t) {
		if (t->on_cpu && t != current)
			continue;
		if (ls_task_busy(t, d)) {
			rcu_read_unlock();
			d->result = -EBUSY;
			goto out;
		}
	}
	rcu_read_unlock();

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		s = &ls.sites[i];
		want = d->undo ? s->jmp : s->expect;
		if (memcmp((void *)s->site, want, LS_JMP_LEN)) {
			memcpy(d->found, (void *)s->site, LS_JMP_LEN);
			d->func = i;
			d->result = -EILSEQ;
			goto out;
		}
	}

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		s = &ls.sites[i];
		if (d->undo) {
			ls.text_poke_kgdb((void *)s->site, s->orig, LS_JMP_LEN);
		} else {
			memcpy(s->orig, (void *)s->site, LS_JMP_LEN);
			ls.text_poke_kgdb((void *)s->site, s->jmp, LS_JMP_LEN);
		}
	}
out:
	d->work_ns = ktime_get_ns() - start;
	return d->result;
}

static void ls_sync_core(void *info)
{
	sync_core();
}

/* One stop_machine with the lock order kprobes uses; returns its duration. */
static int ls_stop_once(struct ls_stop *d, u64 *stop_ns)
{
	u64 start;
	int ret;

	cpus_read_lock();
	mutex_lock(ls.text_mutex);
	start = ktime_get_ns();
	ret = ls.stop_machine_cpuslocked(ls_stop_cb, d, NULL);
	*stop_ns = ktime_get_ns() - start;
	if (!ret && !d->empty)
		on_each_cpu(ls_sync_core, NULL, 1);
	mutex_unlock(ls.text_mutex);
	cpus_read_unlock();
	return ret;
}

/* Apply or undo with retries; sets ls.error on failure. */
static int ls_patch(bool undo)
{
	const struct ls_func *f;
	struct ls_stop d;
	int attempt, ret, n = max(READ_ONCE(retries), 0);
	u64 stop_ns;

	for (attempt = 0;; attempt++) {
		memset(&d, 0, sizeof(d));
		d.undo = undo;
		ret = ls_stop_once(&d, &stop_ns);
		if (undo) {
			ls.undo_stop_ns = stop_ns;
			ls.undo_work_ns = d.work_ns;
		} else {
			ls.apply_stop_ns = stop_ns;
			ls.apply_work_ns = d.work_ns;
		}
		if (ret != -EBUSY || attempt >= n)
			break;
		msleep(max(READ_ONCE(retry_ms), 0));
	}

	switch (ret) {
	case 0:
		break;
	case -EBUSY:
		if (d.unreliable)
			snprintf(ls.error, sizeof(ls.error),
				 "busy: task %d (%s) has an unreliable stack at %pS (%d tries, %d ms apart)",
				 d.pid, d.comm, (void *)d.addr, attempt + 1,
				 retry_ms);
		else
			snprintf(ls.error, sizeof(ls.error),
				 "busy: task %d (%s) is inside %pS (%d tries, %d ms apart)",
				 d.pid, d.comm, (void *)d.addr, attempt + 1,
				 retry_ms);
		break;
	case -EILSEQ:
		f = &__livesplice_funcs[d.func];
		snprintf(ls.error, sizeof(ls.error),
			 "mismatch: %s+0x%x: expected %*ph, found %*ph",
			 f->name, f->site_offset, LS_JMP_LEN,
			 undo ? ls.sites[d.func].jmp : ls.sites[d.func].expect,
			 LS_JMP_LEN, d.found);
		break;
	default:
		snprintf(ls.error, sizeof(ls.error),
			 "stop: stop_machine failed with %d", ret);
		break;
	}
	return ret;
}

static int ls_apply(void)
{
	int ret;

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
	ret = ls_patch(false);
	if (ret) {
		module_put(THIS_MODULE);
		pr_warn("apply of %s failed: %s\n", __livesplice_id, ls.error);
		return ret;
	}
	add_taint(TAINT_LIVEPATCH, LOCKDEP_STILL_OK);
	WRITE_ONCE(ls.state, LS_APPLIED);
	pr_info("applied %s (%u function(s)): stop %llu ns, work %llu ns\n",
		__livesplice_id, __livesplice_nr_funcs, ls.apply_stop_ns,
		ls.apply_work_ns);
	return 0;
}

static int ls_undo(void)
{
	int ret;

	if (ls.state != LS_APPLIED) {
		strscpy(ls.error, "state: not applied", sizeof(ls.error));
		return -EINVAL;
	}
	ret = ls_patch(true);
	if (ret) {
		pr_warn("undo of %s failed: %s\n", __livesplice_id, ls.error);
		return ret;
	}
	WRITE_ONCE(ls.state, LS_LOADED);
	module_put(THIS_MODULE);
	pr_info("undid %s (%u function(s)): stop %llu ns, work %llu ns\n",
		__livesplice_id, __livesplice_nr_funcs, ls.undo_stop_ns,
		ls.undo_work_ns);
	return 0;
}

static int ls_cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

static int ls_calibrate(void)
{
	u64 runs[LS_CALIBRATE_RUNS];
	struct ls_stop d;
	unsigned int i;
	int ret;

	for (i = 0; i < LS_CALIBRATE_RUNS; i++) {
		memset(&d, 0, sizeof(d));
		d.empty = true;
		ret = ls_stop_once(&d, &runs[i]);
		if (ret) {
			snprintf(ls.error, sizeof(ls.error),
				 "stop: stop_machine failed with %d", ret);
			return ret;
		}
	}
	sort(runs, LS_CALIBRATE_RUNS, sizeof(runs[0]), ls_cmp_u64, NULL);
	ls.empty_stop_ns = runs[LS_CALIBRATE_RUNS / 2];
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
	unsigned int i;
	int n = 0;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		f = &__livesplice_funcs[i];
		n += sysfs_emit_at(buf, n, "%s 0x%lx 0x%lx %u\n", f->name,
				   ls.sites[i].old, (unsigned long)f->new_addr,
				   f->site_offset);
	}
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
	unsigned int i, n = __livesplice_nr_funcs;

	if (!expect || strlen(expect) != n * 2 * LS_JMP_LEN) {
		pr_err("expect: need %u hex digits (%u per function), got \"%s\"\n",
		       n * 2 * LS_JMP_LEN, 2 * LS_JMP_LEN,
		       expect ? expect : "");
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (hex2bin(ls.sites[i].expect, expect + i * 2 * LS_JMP_LEN,
			    LS_JMP_LEN)) {
			pr_err("expect: bad hex for %s: \"%.10s\"\n",
			       __livesplice_funcs[i].name,
			       expect + i * 2 * LS_JMP_LEN);
			return -EINVAL;
		}
	}
	return 0;
}

static int ls_init_sites(const unsigned long *sizes)
{
	const struct ls_func *f;
	struct ls_site *s;
	unsigned int i;
	s64 rel;

	for (i = 0; i < __livesplice_nr_funcs; i++) {
		f = &__livesplice_funcs[i];
		s = &ls.sites[i];
		/*
		 * The running function may be shorter or longer than the pack's
		 * pre code (jump encodings, padding; the loader matched them):
		 * the stack check covers the kernel's own symbol.
		 */
		s->size = sizes[f->old_index];
		if (f->site_offset + LS_JMP_LEN > s->size) {
			pr_err("%s: site +%u does not fit the kernel's symbol (%lu bytes)\n",
			       f->name, f->site_offset, s->size);
			return -EINVAL;
		}
		s->old = __livesplice_addrs[f->old_index];
		s->site = s->old + f->site_offset;
		rel = (s64)((unsigned long)f->new_addr - (s->site + LS_JMP_LEN));
		if (rel != (s32)rel) {
			pr_err("%s: %s is out of jmp range\n", f->name,
			       f->new_name);
			return -ERANGE;
		}
		s->jmp[0] = 0xe9;
		put_unaligned_le32((u32)(s32)rel, &s->jmp[1]);
	}
	return 0;
}

/*
 * Module text is read-only by the time init runs: compute every value
 * first, then write them all with text_poke() under text_mutex.
 */
static int ls_apply_relocs(void)
{
	const struct ls_reloc *r;
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
		p = (u64)r->base + r->offset;
		v = __livesplice_addrs[r->target_index] + r->addend;
		if (r->kind == LS_RELOC_PCREL32)
			v -= p;
		if (r->kind != LS_RELOC_ABS64 && (s64)v != (s32)v) {
			pr_err("reloc %u (%s at %s+0x%lx) to %s%+ld: value 0x%llx overflows s32\n",
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
	if (!sizes || !ls.sites) {
		ret = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < __livesplice_nr_symbols; i++) {
		sizes[i] = ls_check_symbol(i);
		if (!sizes[i])
			goto fail;
	}
	ls.text_poke = (ls_poke_fn)__livesplice_addrs[LS_SYM_TEXT_POKE];
	ls.text_poke_kgdb =
		(ls_poke_fn)__livesplice_addrs[LS_SYM_TEXT_POKE_KGDB];
	ls.text_mutex = (struct mutex *)__livesplice_addrs[LS_SYM_TEXT_MUTEX];
	ls.stop_machine_cpuslocked =
		(ls_stop_fn)__livesplice_addrs[LS_SYM_STOP_MACHINE_CPUSLOCKED];

	ret = ls_parse_expect();
	if (!ret)
		ret = ls_init_sites(sizes);
	if (!ret)
		ret = ls_apply_relocs();
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
	kfree(ls.sites);
	return ret;
}

/* Never patches: while applied the module holds a reference to itself. */
static void __exit ls_exit(void)
{
	sysfs_remove_group(&THIS_MODULE->mkobj.kobj, &ls_group);
	kfree(ls.sites);
}

module_init(ls_init);
module_exit(ls_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("livesplice");
