// Package coverage measures how many real fixes livesplice ships: `make
// coverage` builds the .c patches of a corpus delta (../shared/corpus/,
// per-file patches of one Debian stable update with a manifest) for their
// pre release, runs every pack built in a guest of that release, and
// writes docs/coverage.md, whose first line is
//
//	shipped: N of M code-only patches (P%)
//
// # The run
//
// Select plans it: the manifest's kind=c rows located in vmlinux or in a
// module, in the order of Order (each group shuffled with a fixed seed,
// then interleaved so that every prefix keeps the groups' proportion), so
// that a run stopped after k patches has run a random sample of k. Runner
// then works in batches: the batch's pre objects are compiled in one make
// in the pristine tree (builder.Build compiles one patch per call, and its
// own pre make then finds its object up to date), each patch is built
// with builder.Build exactly as `livesplice build` does, and the packs
// built are run in one guest boot (demo/scenarios/coverage.sh): target
// module and its dependencies loaded, check, apply, an exercise of the
// kernel, undo, unload, kernel log. The scenario prints markers per pack
// and per step (ParseTranscript); a pack that crashes or hangs the guest
// (no console output for Options.Stall) is recorded as such and a fresh
// guest runs the packs after it, as does one that leaves an update or a
// module loaded.
//
// # Results and resuming
//
// Every outcome is appended to a JSON-lines file (Store; one Record per
// line, the last per patch counts) under CACHE/coverage/RELEASE, after the
// build and again after the guest run. A new run skips the patches that
// have a result, runs the packs that wait for the guest, and rebuilds
// those whose pack is missing or was built from other livesplice sources
// (SourceVersion). Options.Fresh starts over. The report is rewritten from
// the file after every batch.
//
// # Classifying
//
// ClassifyBuild turns builder.Build's error into a Category: typed errors
// first (errors.As/Is, one rule each in typedRules, where new typed errors
// slot in), then the refusal reasons, sorted by the differ's own phrases
// (refusalRules; unknown ones are "other refusal", shown verbatim), then
// "other error" with the first line. Guest outcomes come from the exit
// codes of the livesplice CLI, the exercise's last line and the kernel
// log (demo.KernelProblems).
//
// A patch refused for several reasons is counted under the one that
// decides most: changed data or struct layout first (with the manifest's
// data_change=maybe it is then not code-only and is left out of M), then
// the categories in the report's order; the reasons table counts every
// reason.
package coverage
