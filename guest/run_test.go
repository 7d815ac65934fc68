package guest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireInputs fails (never skips) when the kernel or qemu is missing.
func requireInputs(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultKernel); err != nil {
		t.Fatalf("kernel %s missing (run `make kernel-inputs`): %v", DefaultKernel, err)
	}
	if _, err := exec.LookPath(DefaultQEMU); err != nil {
		t.Fatalf("%s missing (run `make kernel-inputs`): %v", DefaultQEMU, err)
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Fatalf("%s missing (run `make kernel-inputs`): %v", BusyboxPath, err)
	}
}

// bootScenario builds an initramfs holding script as /scenario and runs it.
func bootScenario(t *testing.T, ctx context.Context, script string, cfg Config) (*Result, error) {
	t.Helper()
	requireInputs(t)
	initrd := filepath.Join(t.TempDir(), "initrd.gz")
	if err := BuildInitramfs(initrd, []File{Scenario(script)}); err != nil {
		t.Fatal(err)
	}
	cfg.Kernel = DefaultKernel
	cfg.Initrd = initrd
	return Run(ctx, cfg)
}

// assertGone checks that qemu (and its process group) no longer exist.
func assertGone(t *testing.T, res *Result) {
	t.Helper()
	if res == nil || res.PID <= 0 {
		t.Fatalf("no qemu pid in result %+v", res)
	}
	if err := syscall.Kill(res.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu pid %d still exists after Run (kill 0: %v)", res.PID, err)
	}
	if err := syscall.Kill(-res.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still exists after Run (kill 0: %v)", res.PID, err)
	}
}

func TestRunScenario(t *testing.T) {
	t.Parallel()
	script := `echo "release: $(uname -r)"
echo "cmdline: $(cat /proc/cmdline)"
echo "mode=$LS_MODE args=$*"
test -d /sys/kernel/debug/tracing || test -d /sys/kernel/tracing
exit 3
`
	res, err := bootScenario(t, context.Background(), script, Config{
		Append:  []string{"LS_MODE=apply", "extra-arg"},
		Timeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("boot and scenario took %v", res.Duration)
	out := res.ScenarioOutput()
	for _, want := range []string{
		"release: 6.1.0-56-amd64",
		"LS_MODE=apply",
		"mode=apply args=extra-arg",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scenario output lacks %q:\n%s", want, res.Transcript)
		}
	}
	if !strings.Contains(res.Transcript, "6.1.0-56-amd64") || !strings.Contains(res.Transcript, "LS_MODE=apply") {
		t.Errorf("transcript lacks the release or the Append word:\n%s", res.Transcript)
	}
	if strings.Contains(res.Transcript, "\r") {
		t.Error("transcript contains carriage returns")
	}
	if res.ExitCode != 3 {
		t.Errorf("ExitCode = %d, want 3", res.ExitCode)
	}
	assertGone(t, res)
}

func TestRunTimeout(t *testing.T) {
	t.Parallel()
	// Long enough for the guest to boot and print its marker on a loaded
	// host (a 20 s limit was missed under parallel kernel builds).
	const timeout = 60 * time.Second
	res, err := bootScenario(t, context.Background(), "echo sleeping-now\nwhile :; do sleep 1000; done\n",
		Config{Timeout: timeout})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run error = %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "sleeping-now") || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("timeout error does not quote the transcript tail: %v", err)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode = %d, want -1", res.ExitCode)
	}
	if res.Duration > timeout+10*time.Second {
		t.Errorf("Run took %v with a %v timeout", res.Duration, timeout)
	}
	assertGone(t, res)
}

// cancelOnMarker cancels a context once the console shows the scenario
// has started.
type cancelOnMarker struct {
	mu     sync.Mutex
	seen   strings.Builder
	cancel context.CancelFunc
}

func (c *cancelOnMarker) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen.Write(p)
	if strings.Contains(c.seen.String(), "scenario-running") {
		c.cancel()
	}
	return len(p), nil
}

func TestRunCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := bootScenario(t, ctx, "echo scenario-running\nsleep 1000\n",
		Config{Timeout: time.Minute, Log: &cancelOnMarker{cancel: cancel}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrTimeout) {
		t.Errorf("cancellation reported as a timeout: %v", err)
	}
	assertGone(t, res)
}

// TestRunKernelPanic: a guest that dies without reporting gives
// ErrNoExitStatus and the transcript of the crash.
func TestRunKernelPanic(t *testing.T) {
	t.Parallel()
	res, err := bootScenario(t, context.Background(), "echo c > /proc/sysrq-trigger\nsleep 1000\n",
		Config{Timeout: time.Minute})
	if !errors.Is(err, ErrNoExitStatus) {
		t.Fatalf("Run error = %v, want ErrNoExitStatus", err)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode = %d, want -1", res.ExitCode)
	}
	if !strings.Contains(res.Transcript, "Kernel panic") {
		t.Errorf("transcript lacks the panic:\n%s", res.Transcript)
	}
	assertGone(t, res)
}

func TestRunRefusesMissingInputs(t *testing.T) {
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.gz")
	if err := os.WriteFile(initrd, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no kernel", Config{Initrd: initrd}, "Kernel"},
		{"no initrd", Config{Kernel: initrd}, "Initrd"},
		{"missing kernel", Config{Kernel: missing + "-vmlinuz", Initrd: initrd}, missing + "-vmlinuz"},
		{"missing initrd", Config{Kernel: initrd, Initrd: missing + "-initrd"}, missing + "-initrd"},
		{"missing qemu", Config{Kernel: initrd, Initrd: initrd, QEMU: missing + "-qemu"}, missing + "-qemu"},
		{"bad append", Config{Kernel: initrd, Initrd: initrd, Append: []string{"a b"}}, "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), tt.cfg)
			if err == nil {
				t.Fatalf("Run succeeded: %+v", res)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestParseExitCode(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", -1},
		{"boot\n@@guest-start\nhi\n\n@@guest-exit 0\n[ 1.0] reboot: Power down\n", 0},
		{"@@guest-exit 1\n@@guest-exit 42\n", 42},
		{"echo @@guest-exit $status\n", -1},
		{"@@guest-exit 7", 7},
	}
	for _, tt := range tests {
		if got := parseExitCode(tt.in); got != tt.want {
			t.Errorf("parseExitCode(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestScenarioOutput(t *testing.T) {
	r := &Result{Transcript: "[ 0.1] boot\n\n@@guest-start\nline1\nline2\n\n@@guest-exit 0\n[ 2.0] reboot: Power down\n"}
	if got, want := r.ScenarioOutput(), "line1\nline2\n"; got != want {
		t.Errorf("ScenarioOutput() = %q, want %q", got, want)
	}
	if got := (&Result{Transcript: "no markers"}).ScenarioOutput(); got != "" {
		t.Errorf("ScenarioOutput() without start marker = %q, want empty", got)
	}
}

func TestArgs(t *testing.T) {
	cfg := Config{Kernel: "/k", Initrd: "/i", Append: []string{"A=1"}}
	got := strings.Join(cfg.Args(), " ")
	for _, want := range []string{
		"-accel tcg", "-cpu qemu64", "-smp 2", "-m 1024", "-kernel /k", "-initrd /i",
		"-no-reboot", "-net none", "-serial stdio", "-display none",
		"-append " + BaseAppend + " A=1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
}
