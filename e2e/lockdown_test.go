package e2e

import (
	"strings"
	"testing"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
)

// TestLockdown: under lockdown=confidentiality /proc/kcore is closed; run-pre
// matching falls back to the boot image, proven to be the running kernel by
// its build-id, and succeeds. The kernel then refuses the unsigned module
// (exit 9) and nothing changes.
func TestLockdown(t *testing.T) {
	s, bin, packPath := setup(t)
	image := guest.File{Path: "/boot/vmlinuz-" + s.Tree.Release, Mode: 0o644, Source: s.Kernel}
	steps := bootWith(t, s, bin, map[string]string{"demo.tar.xz": packPath}, "lockdown",
		guest.Config{Append: []string{"lockdown=confidentiality"}}, image)
	if !strings.Contains(steps["lockdown"], "[confidentiality]") {
		t.Fatalf("lockdown is not confidentiality:\n%s", steps["lockdown"])
	}
	if rc := demo.ExitStatus(steps["kcore"]); rc == 0 {
		t.Errorf("/proc/kcore is readable under lockdown:\n%s", steps["kcore"])
	}
	checkSteps(t, steps, []stepWant{
		{"check", 0, []string{"demo-cmdline fits the running kernel (code read from /boot/vmlinuz-" + s.Tree.Release + ", build-id", "cmdline_proc_show at 0x"}},
		{"apply", 9, []string{"module load", "lockdown"}},
	})
	if !strings.Contains(steps["modules"], "none") || !strings.Contains(steps["cmdline"], demo.Secret) {
		t.Errorf("the refused apply changed something:\n%s\n%s", steps["modules"], steps["cmdline"])
	}
}
