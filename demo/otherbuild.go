package demo

import "context"

// OtherBuild is a real 6.1.187 -> 6.1.190 fix (testdata/corpus) built
// from 6.1.187 source for Kernel53: it replaces prctl_set_auxv
// (kernel/sys.c), which copies only the bytes given into the saved
// auxiliary vector before the fix and the whole zero-filled vector after.
// Kernel56 (6.1.192) already has the fix, and mm_struct moved too, so its
// prctl_set_auxv is other code: a pack built for Kernel53 must be refused
// there as a code mismatch.
var OtherBuild = Update{"other-build", "testdata/corpus/debian-6.1.187-to-6.1.190/kernel__sys.c.patch",
	"prctl: PR_SET_MM_AUXV replaces the whole saved auxiliary vector"}

// AuxvEntriesFixed is what the guest's setauxv prints where
// prctl_set_auxv has the fix: its one entry and AT_NULL.
const AuxvEntriesFixed = "auxv entries: 2"

// SetAuxv builds the guest's setauxv helper (testdata/otherbuild/setauxv)
// and returns its path.
func (s Setup) SetAuxv(ctx context.Context) (string, error) {
	return s.goBuild(ctx, "./testdata/otherbuild/setauxv", "setauxv")
}
