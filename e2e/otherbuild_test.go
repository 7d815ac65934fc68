package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
)

// mismatchRE matches a code mismatch report: the pack's instruction, then
// the running one (its offset may be named again when it differs).
var mismatchRE = regexp.MustCompile(`prctl_set_auxv at 0x[0-9a-f]+: \+0x[0-9a-f]+: pack: .+; running( \(\+0x[0-9a-f]+\))?: `)

// TestOtherBuild builds a real fix from 6.1.187 source for 6.1.0-53-amd64
// (demo.OtherBuild, prctl_set_auxv) and boots two kernels with it:
// 6.1.0-56-amd64 (6.1.192), whose prctl_set_auxv is other code, must
// refuse it as a code mismatch and keep its text byte-identical;
// 6.1.0-53-amd64 must apply it, list it and undo it. setauxv shows which
// prctl_set_auxv runs.
func TestOtherBuild(t *testing.T) {
	s53, bin := newSetupFor(t, demo.Kernel53)
	s56, _ := newSetupFor(t, demo.Kernel56)
	packPath, m := buildPack(t, s53, demo.OtherBuild, "other.tar.xz", "prctl_set_auxv")
	if m.Target.Release != demo.Kernel53.Release || m.Target.Source != demo.Kernel53.Source {
		t.Fatalf("other-build pack is for %s (%s), want %s (%s)", m.Target.Release, m.Target.Source, demo.Kernel53.Release, demo.Kernel53.Source)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	setauxv, err := s53.SetAuxv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	packs := map[string]string{"other.tar.xz": packPath}
	tool := guest.File{Path: "/bin/setauxv", Mode: 0o755, Source: setauxv}

	t.Run("applies-on-"+demo.Kernel53.Release, func(t *testing.T) {
		steps := boot(t, s53, bin, packs, "otherbuild", tool)
		t.Logf("setauxv: %q before, %q applied, %q undone", steps["auxv-before"], steps["auxv-after"], steps["auxv-undone"])
		checkSteps(t, steps, []stepWant{
			{"apply", 0, []string{"applied other-build", "prctl_set_auxv"}},
			{"undo", 0, []string{"undone other-build"}},
		})
		checkContains(t, steps, "list", "other-build", "applied", "prctl_set_auxv")
		if before := steps["auxv-before"]; before == demo.AuxvEntriesFixed || !strings.HasPrefix(before, "auxv entries: ") {
			t.Errorf("6.1.187's prctl_set_auxv should keep the rest of the old vector, setauxv printed %q", before)
		}
		if after := steps["auxv-after"]; after != demo.AuxvEntriesFixed {
			t.Errorf("after apply setauxv printed %q, want %q", after, demo.AuxvEntriesFixed)
		}
		if undone := steps["auxv-undone"]; undone != steps["auxv-before"] {
			t.Errorf("after undo setauxv printed %q, want %q as before", undone, steps["auxv-before"])
		}
		checkUnchanged(t, steps)
	})

	t.Run("refused-on-"+demo.Kernel56.Release, func(t *testing.T) {
		steps := boot(t, s56, bin, packs, "otherbuild", tool)
		checkSteps(t, steps, []stepWant{
			{"apply", 7, []string{"prctl_set_auxv", "pack:"}},
		})
		if !mismatchRE.MatchString(steps["apply"]) {
			t.Errorf("apply: the refusal does not show the pack's and the running instruction (%s):\n%s", mismatchRE, steps["apply"])
		}
		if strings.Contains(steps["list"], "other-build") {
			t.Errorf("list shows the refused update:\n%s", steps["list"])
		}
		for _, step := range []string{"auxv-before", "auxv-after"} {
			if steps[step] != demo.AuxvEntriesFixed {
				t.Errorf("%s: setauxv printed %q, want %q: 6.1.192 has the fix built in", step, steps[step], demo.AuxvEntriesFixed)
			}
		}
		checkUnchanged(t, steps)
	})
}
