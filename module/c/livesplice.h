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
	LS_SYM_TEXT_POKE_KGDB,
	LS_SYM_TEXT_MUTEX,
	LS_SYM_STOP_MACHINE_CPUSLOCKED,
	LS_NR_HELPER_SYMS,
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
	unsigned int old_index;		/* its index in __livesplice_addrs */
	const char *new_name;		/* symbol of the replacement */
	void *new_addr;			/* the replacement's first byte */
	unsigned long new_size;		/* bytes of the replacement */
	unsigned int site_offset;	/* where the jmp goes in the old function */
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
};

extern const char __livesplice_id[];
extern const char __livesplice_description[];
extern const char * const __livesplice_symbols[];
extern const unsigned int __livesplice_nr_symbols;
extern unsigned long __livesplice_addrs[];
extern unsigned int __livesplice_nr_addrs;
extern const struct ls_func __livesplice_funcs[];
extern const unsigned int __livesplice_nr_funcs;
extern const struct ls_reloc __livesplice_relocs[];
extern const unsigned int __livesplice_nr_relocs;

#endif /* _LIVESPLICE_H */
