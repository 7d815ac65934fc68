package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
)

// TestSpecial applies an update whose replacement of comm_write carries
// special-section entries the kernel's module loader processes (exception
// table, bug table, jump labels, lock prefixes, return sites, ORC) and
// checks the replacement behaves like the patched code built into the
// kernel would: EFAULT through a bad pointer, a WARNING naming the post
// source's file and line, the static branch following its key, no oops.
func TestSpecial(t *testing.T) {
	s, bin := newSetup(t)
	packPath, _ := buildPack(t, s, demo.Special, "special.tar.xz", "comm_write")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	commwrite, err := s.CommWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	file, line, source, err := demo.SpecialWarnSite(s.Repo, s.Tree)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the WARN_ON is at %s:%d as the post build numbers it (line %d of the patched file)", file, line, source)
	res, err := s.Boot(ctx, bin, map[string]string{"special.tar.xz": packPath}, "special", guest.Config{Timeout: 3 * time.Minute},
		guest.File{Path: "/bin/commwrite", Mode: 0o755, Source: commwrite})
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	t.Logf("guest ran special in %s", res.Duration.Round(100*time.Millisecond))
	if res.ExitCode != 0 {
		t.Fatalf("scenario exited %d:\n%s", res.ExitCode, res.Transcript)
	}
	steps := demo.Steps(res.ScenarioOutput())
	if _, ok := steps["end"]; !ok {
		t.Fatalf("scenario did not finish:\n%s", res.Transcript)
	}
	for _, step := range []string{"before", "apply", "fault", "branch-off", "branch-on", "branch-off-again", "warn", "undo", "undone"} {
		t.Logf("%s:\n%s", step, steps[step])
	}
	check := func(step string, want []string, dontWant ...string) {
		t.Helper()
		out := steps[step]
		checkContains(t, steps, step, want...)
		for _, w := range dontWant {
			if strings.Contains(out, w) {
				t.Errorf("step %s has %q:\n%s", step, w, out)
			}
		}
	}
	// The original: EFAULT, and a leading NUL is taken as a name.
	check("before", []string{"commwrite fault: errno 14 (EFAULT)", "commwrite fault-later: errno 14 (EFAULT)", "commwrite empty: wrote 9"})
	if rc := demo.ExitStatus(steps["apply"]); rc != 0 {
		t.Fatalf("livesplice apply exited %d:\n%s", rc, steps["apply"])
	}
	// The replacement: its own user access faults into its carried
	// exception table entry; its copy_from_user faults in the kernel's.
	check("fault", []string{"commwrite fault: errno 14 (EFAULT)", "commwrite fault-later: errno 14 (EFAULT)"})
	// The static branch follows bpf_stats_enabled_key in both directions.
	// (with bpf_stats_enabled_key on, the replacement refuses renames).
	check("branch-off", []string{"commwrite name: wrote 6", `comm now "ls-off\n"`})
	check("branch-on", []string{"commwrite name: errno 16 (EBUSY)"}, "wrote")
	check("branch-off-again", []string{"commwrite name: wrote 12", `comm now "ls-off-again\n"`})
	// The WARN_ON: EINVAL, a WARNING at the post source's file and line, in
	// the replacement (which lives in the update's module).
	warnRE := regexp.MustCompile(fmt.Sprintf(`WARNING: CPU: \d+ PID: \d+ at %s:%d comm_write\+0x[0-9a-f]+/0x[0-9a-f]+ \[livesplice_special\]`,
		regexp.QuoteMeta(file), line))
	check("warn", []string{"commwrite empty: errno 22 (EINVAL)"})
	if !warnRE.MatchString(steps["warn"]) {
		t.Errorf("no WARNING at %s:%d in the replacement comm_write:\n%s", file, line, steps["warn"])
	}
	if rc := demo.ExitStatus(steps["undo"]); rc != 0 {
		t.Errorf("livesplice undo exited %d:\n%s", rc, steps["undo"])
	}
	check("undone", []string{"commwrite fault: errno 14 (EFAULT)", "commwrite fault-later: errno 14 (EFAULT)", "commwrite empty: wrote 9"})
	if !strings.Contains(steps["modules"], "none") {
		t.Errorf("the update's module stayed loaded:\n%s", steps["modules"])
	}
	// One WARNING, the one triggered, and its call trace; nothing else.
	var bad []string
	warnings := 0
	for _, l := range demo.KernelProblems(steps["dmesg"]) {
		switch {
		case warnRE.MatchString(l):
			warnings++
		case strings.Contains(l, "Call Trace:") && warnings == 1:
		default:
			bad = append(bad, l)
		}
	}
	if warnings != 1 || len(bad) > 0 {
		t.Errorf("kernel log: %d WARNINGs from comm_write (want 1), other problems:\n%s", warnings, strings.Join(bad, "\n"))
	}
}
