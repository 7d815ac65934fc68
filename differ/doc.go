// Package differ finds what a source patch changed in one kernel object and
// extracts the replacement code.
//
// Diff correlates the "pre" (pristine) and "post" (patched) builds of one
// object, both compiled with -ffunction-sections -fdata-sections, symbol by
// symbol. Names carrying gcc's numbers (foo.isra.N, foo.constprop.N,
// foo.part.N, foo.cold, static locals foo.N, __func__.N, __warned.N, _rs.N,
// CSWTCH.N) never match by name alone: clones by identical code, data by the
// matched functions that reference it, read-only data by content. Post
// symbols matched under another name take the pre name (the running
// kernel's). Functions are compared by their bytes with relocation fields
// masked, and their relocations by what they point to (a named symbol plus
// delta, or the content of a merged string/constant), never by the bytes they
// cover. Struct layout changes (from DWARF) and signature changes seen by
// code that is not replaced are refused. Changes this cut cannot ship (changed data, __init code, special
// sections it does not carry, unsafe patch sites, ...) become Refusals with a
// reason a kernel engineer understands.
//
// Extract writes an ELF relocatable object holding the changed and added
// functions (and the strings and new static data they use: data only in
// post is copied into sections of its own, see newdata.go), plus the
// metadata the update module
// needs: for each replaced function its pre code and relocations for run-pre
// matching, and the Fixups (references to the running kernel) the module
// applies at load.
//
// Speed: `make bench` runs corpus.BenchmarkDiff, which reads, parses and
// diffs the 26 corpus pairs one at a time and drops each, as kpatch's
// create-diff-object does per invocation (issue 9's goal: 55 objects/s,
// twice create-diff-object's 27.7/s, in at most 64 MB of heap). Run it
// alone with
//
//	go test -run '^$' -bench BenchmarkDiff -benchtime 20x ./corpus/
//
// (GOMAXPROCS=1 for one core). Most of a Diff is reading DWARF types
// (dwarfread.go: a reader of its own, no allocation per entry), done in
// two goroutines while the code is compared; code is decoded once per
// distinct section bytes, and relocation keys are formatted only where
// compared. Figures and load: docs/design.md, "The differ on real fixes".
package differ
