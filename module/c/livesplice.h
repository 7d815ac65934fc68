/* SPDX-License-Identifier: GPL-2.0 */
/*
 * livesplice: interface between the fixed helper (livesplice-helper.c) and
 * the metadata file that package module generates for each update.
 */
#ifndef _LIVESPLICE_H
#define _LIVESPLICE_H

#include <linux/types.h>

#define LS_JMP_LEN	5

/* Indices of the helper's own symbols in __livesplice_addrs. */
enum {
	LS_SYM_TEXT_POKE,
	LS_SYM_TEXT_MUTEX,
	LS_SYM_STOP_MACHINE_CPUSLOCKED,
	LS_SYM_MODULE_MUTEX,
	LS_SYM_FIND_MODULE,
	LS_SYM_IDLE_TASK,
	LS_SYM_TOTAL_FORKS,
	LS_SYM_NR_CONTEXT_SWITCHES,
	LS_NR_HELPER_SYMS,
};

/* Index of vmlinux in __livesplice_objects. */
#define LS_VMLINUX	0

/*
 * A kernel object the update touches: vmlinux, a module whose functions it
 * replaces, or a module whose exports the replacement code uses.  A
 * module's symbols are resolved in it each time it is there: for a
 * module's symbol, __livesplice_addrs holds which of the module's symbols
 * of that name it is (0 for the first in its symbol table), or 0 for
 * another module's export, which is looked up by name.
 */
struct ls_object {
	const char *name;		/* "vmlinux" or the module's name */
};

/* How a relocation's value is computed and stored. */
enum ls_reloc_kind {
	LS_RELOC_PCREL32 = 1,	/* S + A - P, stored as s32 */
	LS_RELOC_ABS32S,	/* S + A, stored as s32 */
	LS_RELOC_ABS64,		/* S + A, stored as u64 */
};

/* One function to replace. */
struct ls_func {
	const char *name;		/* kernel symbol of the old function */
	unsigned int object;		/* where it lives: __livesplice_objects */
	unsigned int old_index;		/* its index in __livesplice_addrs */
	const char *new_name;		/* symbol of the replacement */
	void *new_addr;			/* the replacement's first byte */
	unsigned long new_size;		/* bytes of the replacement */
	unsigned int site_offset;	/* where the jmp goes in the old function */
};

/*
 * A cold part of a function to replace (NAME.cold, code gcc moved out of
 * it): never patched, but a task inside it is inside the function.
 */
struct ls_part {
	const char *name;		/* kernel symbol of the old cold part */
	unsigned int func;		/* its function in __livesplice_funcs */
	unsigned int old_index;		/* its index in __livesplice_addrs */
};

/* One fixup of the replacement code, applied at module init. */
struct ls_reloc {
	const char *symbol;		/* module symbol the location is relative to */
	void *base;			/* its address */
	unsigned long offset;
	unsigned int kind;		/* enum ls_reloc_kind */
	const char *type;		/* ELF type name, for messages */
	const char *target;		/* kernel symbol */
	unsigned int target_index;	/* its index in __livesplice_addrs */
	long addend;
	/*
	 * The object whose functions the code at symbol replaces: a fix-up
	 * to a module's symbol is applied each time that object is patched,
	 * one to vmlinux at init.
	 */
	unsigned int owner;
};

extern const char __livesplice_id[];
extern const char __livesplice_description[];
extern const struct ls_object __livesplice_objects[];
extern const unsigned int __livesplice_nr_objects;
extern const char * const __livesplice_symbols[];
extern const unsigned int __livesplice_symbol_objects[];
extern const unsigned int __livesplice_nr_symbols;
extern unsigned long __livesplice_addrs[];
extern unsigned int __livesplice_nr_addrs;
extern const struct ls_func __livesplice_funcs[];
extern const unsigned int __livesplice_nr_funcs;
extern const struct ls_part __livesplice_parts[];
extern const unsigned int __livesplice_nr_parts;
extern const struct ls_reloc __livesplice_relocs[];
extern const unsigned int __livesplice_nr_relocs;

#endif /* _LIVESPLICE_H */
