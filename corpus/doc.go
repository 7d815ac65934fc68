// Package corpus checks the differ against real kernel fixes: the per-file
// patches of a Debian stable delta (testdata/corpus/), built pre and post in
// the prepared Debian tree, and their changesets compared with what each
// patch edits according to the corpus manifest.
package corpus
