// Package loader applies, lists and undoes updates on the running kernel.
//
// Everything that can be decided in user space is decided here, before the
// update module is loaded: the pack is for this kernel release, every
// symbol the module needs resolves to exactly one address in
// /proc/kallsyms, and the bytes expected at each patch site are computed
// from the pack's pre code. The module's helper then checks, with all CPUs
// stopped, that no task is inside the code and that the bytes are what the
// loader expects, and writes the jumps. State lives in the kernel, under
// /sys/module/NAME/livesplice/, so list and show read it back from there.
//
// A refused apply unloads the module again: the kernel text is left exactly
// as it was. Undo is its own step; the module can only be unloaded after it.
package loader
