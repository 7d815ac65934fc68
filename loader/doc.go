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
//
// One apply or undo runs at a time, across processes: each holds a flock
// on LockFile (/run/livesplice/lock) from its first look at the loaded
// updates to its end, so an update it finds loaded but not applied is a
// leftover of a process that died (Status.Leftover): apply unloads it and
// starts over, undo unloads it, List says which it is in words. The
// helper's apply and undo are each one control write, which the death of
// the writer does not cut short, so the kernel is patched or not, never
// half. Fault points (fault.go, a test hook) kill the process between the
// steps.
//
// Functions of modules are matched in the module's running code when it
// is loaded, else in its file under /lib/modules/RELEASE, laid out and
// relocated as the kernel's loader will (Space, package modfile); the
// module's symbols are passed by their position among the module's
// symbols of their name, which the helper finds again every time the
// module loads.
package loader
