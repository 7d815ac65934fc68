// Package module turns an update into a Linux kernel module that applies it.
//
// The module is built with Kbuild against the target kernel's headers. It is
// made of three parts:
//
//   - a fixed C helper (c/livesplice-helper.c, embedded in this package) that
//     checks its parameters, fixes up the replacement code, and patches and
//     unpatches the running kernel under stop_machine on request;
//   - a generated C file (livesplice-meta.c) with the update's metadata: the
//     functions to replace, the relocations still to apply, the names of the
//     kernel symbols whose addresses the loader passes in;
//   - the prebuilt ELF relocatable objects holding the replacement code,
//     linked in as livesplice-patchN.o (shipped to Kbuild as
//     livesplice-patchN.o_shipped).
//
// The replacement objects may carry special sections (__bug_table,
// __ex_table, .altinstructions, __jump_table, ...) whose entries the
// kernel's module loader processes before init; references from them to
// the running kernel are plain ELF relocations against exported symbols,
// resolved by the module loader and versioned by modpost. EntrySizes
// measures those sections' entries on the target's headers (a probe
// compiled with Kbuild, cached per headers tree) and Exported lists what
// vmlinux exports (Module.symvers).
//
// Generate writes the Kbuild directory and returns the ordered list of
// kernel symbols (each with its object) the loader must resolve for the
// module's addrs parameter; Build runs Kbuild and returns the .ko.
//
// Functions may live in vmlinux or in modules (pack.Function.Object). A
// module's functions are patched whenever that module is there: at apply
// when it is loaded, else from a module notifier as it loads (before any
// of its code runs); its symbols are looked up in its own symbol table by
// name and position, and its state is dropped when it goes. Fix-ups to a
// module (pack.Fixup.Object) are applied each time the module whose
// functions their code replaces is patched; those to vmlinux at init.
//
// # Module parameters
//
//   - addrs (ulong array): one value per symbol Generate returned, in that
//     order: a vmlinux symbol's address; for a symbol of a module the
//     update replaces functions of, which of that module's symbols of its
//     name it is (0 for the first in its symbol table); 0 for another
//     module's export (looked up by name), e.g.
//     addrs=0xffffffff81040a10,0xffffffff81040b20,...,0,1
//   - expect (charp): for each Func in order, the 5 bytes expected at
//     old+SiteOffset as 10 characters, two hex digits per byte or "xx" for
//     any value (a relocation field of a module's code), concatenated with
//     no separator, e.g. expect=0f1f440000 for one function.
//   - retries (int, default 5), retry_ms (int, default 100): how often and how
//     long to wait between attempts while a task is in the way.
//
// At init every vmlinux address is checked with sprint_symbol, which must
// print exactly "NAME+0x0/0xSIZE"; the relocations are then written into
// the module's own (read-only) code with text_poke under text_mutex.
//
// # sysfs
//
// /sys/module/NAME/livesplice/ holds:
//
//	id, description       the update (read)
//	state                 "loaded" or "applied"
//	functions             one line per function: NAME OBJECT 0xOLD 0xNEW SITEOFFSET STATE
//	                      (root only); STATE is live, waiting (its module is not loaded) or off
//	control               write "apply", "undo", "calibrate" or (while applied)
//	                      "calibrate-write"; blocks until done
//	error                 last failure as one line, empty after a success
//	apply_stop_ns, apply_work_ns, undo_stop_ns, undo_work_ns
//	                      the last stop_machine of apply and undo, and the time in its callback
//	apply_stop_tasks, undo_stop_tasks
//	                      tasks looked at inside that stop
//	apply_stop_pass, undo_stop_pass
//	                      1 when that stop needed the pass over every task's
//	                      walk record, 0 when it looked at the CPUs' tasks alone
//	empty_stop_ns, empty_bare_stop_ns
//	                      calibrate's medians of 7 empty stops, after the same
//	                      work before the stop as apply's, and back to back
//	rewrite_stop_ns       calibrate-write's median of 7 stops back to back that
//	                      write each live site's own bytes back: the floor of a
//	                      stop that writes code
//
// A control write returns -EBUSY when a task stays in the way after all
// retries (error "busy: task PID (COMM) is inside SYM+0xOFF/0xSIZE" or "busy:
// task PID (COMM) has an unreliable stack at ..."), -EILSEQ when a site holds
// other bytes than expected (error "mismatch: NAME+0xOFF: expected .., found
// .."), and -EINVAL for an unknown word ("invalid: ...") or the wrong state
// ("state: already applied", "state: not applied"), and -ENOENT when a
// loaded module lacks a symbol ("symbol: ..."). A module whose sites do
// not hold what the loader expects is refused as it loads (its load fails
// with ENOEXEC; the reason is in error and in the kernel log).
package module
