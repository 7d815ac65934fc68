package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
	"github.com/livesplice/livesplice/internal/cache"
	"github.com/livesplice/livesplice/pack"
)

// newSetup checks the kernel inputs of the demo's kernel (6.1.0-56-amd64)
// and builds the guest's livesplice.
func newSetup(t *testing.T) (demo.Setup, string) {
	t.Helper()
	return newSetupFor(t, demo.Kernel56)
}

// newSetupFor checks the kernel inputs of k and builds the guest's
// livesplice.
func newSetupFor(t *testing.T, k demo.Kernel) (demo.Setup, string) {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	s := demo.SetupFor(repo, cache.Dir(), t.TempDir(), k)
	for _, p := range []string{s.Config, s.Kernel, s.Headers} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("kernel input missing (run `make kernel-inputs`): %v", err)
		}
	}
	if err := s.Tree.Check(s.Config); err != nil {
		t.Fatalf("%v (run `make kernel-inputs`)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := s.Binary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s, bin
}

// setup also builds the demo pack.
func setup(t *testing.T) (demo.Setup, string, string) {
	t.Helper()
	s, bin := newSetup(t)
	packPath, _ := buildPack(t, s, demo.Cmdline, "demo.tar.xz", "cmdline_proc_show")
	return s, bin, packPath
}

// buildPack builds update u as WORK/name and checks that it replaces just
// function fn.
func buildPack(t *testing.T, s demo.Setup, u demo.Update, name, fn string) (string, *pack.Manifest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	packPath, m, err := s.Pack(ctx, u, name)
	if err != nil {
		t.Fatalf("building the %s pack: %v", u.ID, err)
	}
	t.Logf("built %s in %s", packPath, time.Since(start).Round(100*time.Millisecond))
	if len(m.Functions) != 1 || m.Functions[0].Name != fn {
		t.Fatalf("%s pack replaces %+v, want just %s", u.ID, m.Functions, fn)
	}
	return packPath, m
}

func TestEndToEnd(t *testing.T) {
	s, bin, packPath := setup(t)
	t.Run("apply-list-undo", func(t *testing.T) { applyListUndo(t, s, bin, packPath) })
	t.Run("refusals", func(t *testing.T) { refusals(t, s, bin, packPath) })
	t.Run("busy", func(t *testing.T) { busy(t, s, bin) })
}

// boot boots s's kernel with the packs and any extra files, runs the named
// scenario, checks it finished without kernel problems and returns its
// steps.
func boot(t *testing.T, s demo.Setup, bin string, packs map[string]string, scenario string, extra ...guest.File) map[string]string {
	t.Helper()
	return bootWith(t, s, bin, packs, scenario, guest.Config{}, extra...)
}

// bootWith boots with cfg (CPU model, command line, timeout: 3 minutes
// unless set...) and checks that the scenario finished without kernel
// problems.
func bootWith(t *testing.T, s demo.Setup, bin string, packs map[string]string, scenario string, cfg guest.Config, extra ...guest.File) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Minute
	}
	res, err := s.Boot(ctx, bin, packs, scenario, cfg, extra...)
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	t.Logf("guest ran %s in %s", scenario, res.Duration.Round(100*time.Millisecond))
	if res.ExitCode != 0 {
		t.Fatalf("scenario exited %d:\n%s", res.ExitCode, res.Transcript)
	}
	steps := demo.Steps(res.ScenarioOutput())
	if _, ok := steps["end"]; !ok {
		t.Fatalf("scenario did not finish:\n%s", res.Transcript)
	}
	if bad := demo.KernelProblems(steps["dmesg"]); len(bad) > 0 {
		t.Errorf("kernel log has problems:\n%s", strings.Join(bad, "\n"))
	}
	return steps
}

var stopRE = regexp.MustCompile(`(\d+) us \(([0-9.]+)x empty stop_machine (\d+) us\)`)

func applyListUndo(t *testing.T, s demo.Setup, bin, packPath string) {
	steps := boot(t, s, bin, map[string]string{"demo.tar.xz": packPath}, "apply")
	check := func(step, want, dontWant string) {
		t.Helper()
		out := steps[step]
		if !strings.Contains(out, want) || (dontWant != "" && strings.Contains(out, dontWant)) {
			t.Errorf("step %s: want %q and not %q, got:\n%s", step, want, dontWant, out)
		}
	}
	check("before", demo.Secret, demo.SecretHidden)
	check("check", "demo-cmdline fits the running kernel (code read from /proc/kcore)", "")
	check("check", "cmdline_proc_show at 0x", "")
	check("after", demo.SecretHidden, demo.Secret)
	check("undone", demo.Secret, demo.SecretHidden)
	for _, step := range []string{"apply", "undo"} {
		if rc := demo.ExitStatus(steps[step]); rc != 0 {
			t.Errorf("livesplice %s exited %d:\n%s", step, rc, steps[step])
		}
		m := stopRE.FindStringSubmatch(steps[step])
		if m == nil {
			t.Errorf("livesplice %s did not report its stop time and ratio:\n%s", step, steps[step])
			continue
		}
		ratio, _ := strconv.ParseFloat(m[2], 64)
		t.Logf("%s: stop %s us, %.2fx an empty stop_machine (%s us, median of 7, same boot)", step, m[1], ratio, m[3])
	}
	check("ftrace", demo.SecretHidden, demo.Secret)
	check("ftrace", "ftrace_enabled: 1", "")
	if strings.Contains(steps["ftrace"], "traced calls: 0") || !strings.Contains(steps["ftrace"], "traced calls: ") {
		t.Errorf("tracing the patched function recorded nothing:\n%s", steps["ftrace"])
	}
	check("list", demo.ID, "")
	check("list", "applied", "")
	check("list", "cmdline_proc_show", "")
	if !stopRE.MatchString(steps["list"]) {
		t.Errorf("list does not show the stop time:\n%s", steps["list"])
	}
	check("show", "cmdline_proc_show", "")
	check("modules", "none", "")
	// Bit 15 (K, livepatch) of the taint mask must be set after an apply.
	taint, err := strconv.ParseUint(strings.TrimSpace(steps["taint"]), 10, 64)
	if err != nil || taint&(1<<15) == 0 {
		t.Errorf("kernel taint %q does not have TAINT_LIVEPATCH", steps["taint"])
	}
}

func refusals(t *testing.T, s demo.Setup, bin, packPath string) {
	packs, err := demo.BadPacks(packPath)
	if err != nil {
		t.Fatal(err)
	}
	steps := boot(t, s, bin, packs, "refuse")
	checkSteps(t, steps, []stepWant{
		{"stale", 7, []string{"code mismatch", "cmdline_proc_show at 0x", "+0x5: pack: ", "(51); running (+0x5): ", "(53)"}},
		// --debug shows every step: the fentry NOP, the matched prefix, the mismatch.
		{"stale-debug", 7, []string{"cmdline_proc_show: mismatch at", "fentry call (NOP)", "code mismatch"}},
		{"wrong-kernel", 4, []string{"6.1.0-53-amd64", "6.1.0-56-amd64", "the running code matches"}},
		{"damaged", 3, []string{"damaged.tar.xz"}},
	})
	checkUnchanged(t, steps)
	if !strings.Contains(steps["cmdline"], demo.Secret) {
		t.Errorf("behaviour changed after refusals: %s", steps["cmdline"])
	}
}

func busy(t *testing.T, s demo.Setup, bin string) {
	pipePack, _ := buildPack(t, s, demo.Pipe, "pipe.tar.xz", "pipe_read")
	schedPack, _ := buildPack(t, s, demo.SchedIdle, "sched.tar.xz", "schedule_idle")
	kthreaddPack, _ := buildPack(t, s, demo.KthreaddMain, "kthreadd.tar.xz", "kthreadd")
	steps := boot(t, s, bin, map[string]string{"pipe.tar.xz": pipePack, "sched.tar.xz": schedPack, "kthreadd.tar.xz": kthreaddPack}, "busy")
	checkSteps(t, steps, []stepWant{
		{"busy-apply", 6, []string{"busy", "(cat)", "pipe_read", "(3 tries, 50 ms apart)"}},
		{"apply", 0, []string{"applied busy-pipe"}},
		{"busy-undo", 6, []string{"busy", "(cat)", "pipe_read", "livesplice_busy_pipe", "(2 tries, 50 ms apart)"}},
		{"undo", 0, []string{"undone busy-pipe"}},
		// The reader was asleep outside pipe_read at the walk and went
		// into it before the stop: the stop's walk of the tasks that ran
		// since finds it.
		{"walk-race", 6, []string{"busy", "(cat)", "pipe_read", "seen in the stop: it ran after the walk", "(1 tries"}},
		{"idle", 6, []string{"the idle task swapper/", "schedule_idle", "(2 tries, 50 ms apart)"}},
		{"kthreadd", 6, []string{"(kthreadd) is inside kthreadd+", "the main function of that kernel thread, which it never leaves", "(1 tries, 50 ms apart)"}},
	})
	for _, step := range []string{"modules-after-busy", "modules-after-race"} {
		if !strings.Contains(steps[step], "none") {
			t.Errorf("%s: the module stayed loaded after a busy refusal:\n%s", step, steps[step])
		}
	}
	if !strings.Contains(steps["pipe"], "through the new pipe_read") {
		t.Errorf("pipes broke under the replacement: %q", steps["pipe"])
	}
	if !strings.Contains(steps["state"], "applied") {
		t.Errorf("a busy undo changed the state:\n%s", steps["state"])
	}
}

// stepWant is what one scenario step must show: the exit status of its
// livesplice command and strings its output must contain.
type stepWant struct {
	step string
	rc   int
	want []string
}

func checkSteps(t *testing.T, steps map[string]string, wants []stepWant) {
	t.Helper()
	for _, tt := range wants {
		out := steps[tt.step]
		t.Logf("%s: %s", tt.step, out)
		if rc := demo.ExitStatus(out); rc != tt.rc {
			t.Errorf("%s: exit %d, want %d:\n%s", tt.step, rc, tt.rc, out)
		}
		checkContains(t, steps, tt.step, tt.want...)
	}
}

// checkContains checks that a step's output contains every string of want.
func checkContains(t *testing.T, steps map[string]string, step string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(steps[step], w) {
			t.Errorf("%s: output lacks %q:\n%s", step, w, steps[step])
		}
	}
}

// checkUnchanged checks that a scenario left the kernel text as it found
// it and no livesplice module loaded.
func checkUnchanged(t *testing.T, steps map[string]string) {
	t.Helper()
	if before, after := steps["text-before"], steps["text-after"]; !strings.Contains(before, "sha256:") || before != after {
		t.Errorf("kernel text changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !strings.Contains(steps["modules"], "none") {
		t.Errorf("a livesplice module stayed loaded:\n%s", steps["modules"])
	}
}
