// Package demo runs livesplice's end-to-end path on Debian's own kernel: it
// builds the demo update from testdata/demo, boots
// vmlinuz-6.1.0-56-amd64 in qemu with a static livesplice and the packs,
// and runs a scenario that applies, lists and undoes the update while a
// program in the guest watches the behaviour change. The README's main
// command (make demo) and the end-to-end tests share it.
package demo
