// Package builder turns a source patch into an update pack. It prepares a
// kernel source tree once (olddefconfig, prepare) with the distribution's
// config, then compiles through Kbuild only the objects whose .c files the
// patch touches and those that include a header it changes (found in the
// tree's dependency index, deps.go), pristine ("pre") and patched
// ("post"), with -ffunction-sections -fdata-sections added, diffs them,
// and builds the update module and the pack.
//
// Every make call in a tree uses the same variables (CC, KERNELRELEASE,
// KCFLAGS): changing any of them between calls makes Kbuild rebuild
// everything, and the objects would stop matching the shipped kernel.
package builder
