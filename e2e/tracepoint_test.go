package e2e

import (
	"regexp"
	"slices"
	"testing"

	"github.com/livesplice/livesplice/demo"
)

// TestTracepoint applies a replacement of __set_task_comm that has a new
// string literal, reads a per-CPU variable vmlinux does not export
// (process_counts), keeps the task_rename tracepoint, whose key vmlinux
// does not export either (the kernel's module loader resolves both from
// kallsyms through livepatch relocations), and has a pr_debug, whose
// descriptor the update module carries. The tracepoint fires from the
// replacement when enabled, and only then; so does the pr_debug.
func TestTracepoint(t *testing.T) {
	s, bin := newSetup(t)
	packPath, m := buildPack(t, s, demo.Rename, "rename.tar.xz", "__set_task_comm")
	for _, want := range []string{"__tracepoint_task_rename", "process_counts"} {
		if !slices.Contains(m.Livepatch, want) {
			t.Errorf("manifest livepatch symbols %q lack %s", m.Livepatch, want)
		}
	}
	steps := boot(t, s, bin, map[string]string{"rename.tar.xz": packPath}, "tracepoint")
	for _, step := range []string{"before", "apply", "renamed", "trace-off", "trace-on", "dyndbg-off", "dyndbg-on", "undo", "undone"} {
		t.Logf("%s:\n%s", step, steps[step])
	}
	checkContains(t, steps, "before", `comm "a/b"`)
	if rc := demo.ExitStatus(steps["apply"]); rc != 0 {
		t.Fatalf("livesplice apply exited %d:\n%s", rc, steps["apply"])
	}
	checkContains(t, steps, "renamed", `comm "c_d_e"`)
	if !regexp.MustCompile(`comm of \d+ had a slash: now c_d_e \(cpu \d+ has forked \d+ tasks\)`).MatchString(steps["renamed"]) {
		t.Errorf("no log line from the replacement's new string:\n%s", steps["renamed"])
	}
	checkContains(t, steps, "trace-off", `comm "f_g"`, "no trace")
	// The tracepoint in the replacement fires with the name as given.
	checkContains(t, steps, "trace-on", `comm "h_i"`, "task_rename:", "newcomm=h/i")
	// The pr_debug: its descriptor is the update module's own, off until
	// dynamic debug turns it on for that module.
	checkContains(t, steps, "dyndbg-off", `comm "l_m"`, "no debug line")
	checkContains(t, steps, "dyndbg-on", "[livesplice_rename_no_slash]", `comm "n_o"`, "set to n_o")
	if rc := demo.ExitStatus(steps["undo"]); rc != 0 {
		t.Fatalf("livesplice undo exited %d:\n%s", rc, steps["undo"])
	}
	checkContains(t, steps, "undone", `comm "j/k"`)
	checkUnchanged(t, steps)
}
