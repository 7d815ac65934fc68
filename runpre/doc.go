// Package runpre proves that an update was built for the running kernel:
// it compares the "pre" code a pack carries for every function it
// replaces with the running kernel's code, instruction by instruction, and
// reads the addresses of the symbols the pre code refers to out of the
// running code itself (run-pre matching, after Ksplice).
//
// The comparison decodes both sides with x86asm and tolerates exactly what
// the kernel rewrites at run time or what differs between how the running
// kernel and the update's pre objects were compiled:
//
//   - the fentry call: a 5-byte NOP, or a call while ftrace traces it;
//   - return thunk jumps: a jump to whichever thunk the CPU needs
//     (srso_return_thunk, its_return_thunk...), or "ret; int3...";
//   - retpoline thunk calls: the thunk (or an ITS thunk), or the inline
//     "call/jmp *%reg" with an optional lfence and, for a conditional
//     jump, an inverted short jump over it;
//   - alternatives (from the pack's sites): the original instructions or
//     any replacement, NOP-padded, its calls and jumps retargeted;
//   - static branches (jump labels, from the pack's sites): a NOP or a
//     jump to the label's target, of the same length;
//   - static calls: a direct branch to the current target, a NOP, the
//     "return 0" form or ret;
//   - paravirt calls: the pv_ops indirect call, a direct call, NOPs, ud2;
//   - lock prefixes turned into ds prefixes on a uniprocessor;
//   - short versus near encodings of jumps (the pre objects are built with
//     -ffunction-sections): branches are compared by target, internal
//     targets through the map of matched instruction offsets;
//   - NOP padding of any length between instructions.
//
// Every relocation in the pre code yields the running address of its
// symbol (S = field + P - A for PC-relative fields). Two references to one
// symbol must agree, and a name kallsyms knows must resolve to one of its
// kallsyms addresses; this is how statics whose names are duplicated in
// kallsyms are told apart, and how a replaced function with a duplicated
// name is located: exactly one candidate may match.
//
// A function's cold parts (pack.Function.Cold: NAME.cold, the unlikely
// paths gcc moved out) are matched with it: each at the address the
// function's code refers to it by, which must be a kallsyms symbol of its
// name (the helper checks it there for its stack check), and its
// references to the function, or to what the function refers to, must
// agree with the function's match. A candidate whose cold part does not
// match does not match.
//
// Nothing here touches the kernel: the caller provides the running code
// (from /proc/kcore, or from the boot image when lockdown forbids it).
package runpre
