package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/livesplice/livesplice/internal/tail"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Console markers printed by /init, each on a line of its own.
const (
	// MarkerStart is printed just before /scenario runs.
	MarkerStart = "@@guest-start"
	// MarkerExit, a space and the decimal exit status of the scenario are
	// printed just after it returns, e.g. "@@guest-exit 0".
	MarkerExit = "@@guest-exit"
)

// Defaults applied by Run to zero Config fields.
const (
	DefaultQEMU     = "qemu-system-x86_64"
	DefaultCPU      = "qemu64"
	DefaultSMP      = 2
	DefaultMemoryMB = 1024
	DefaultTimeout  = 3 * time.Minute
	// DefaultKernel is the Debian kernel the tests and the demo boot
	// (package linux-image-6.1.0-56-amd64).
	DefaultKernel = "/boot/vmlinuz-6.1.0-56-amd64"
)

// BaseAppend is the start of every kernel command line; Config.Append follows.
const BaseAppend = "console=ttyS0 panic=-1 quiet"

// tailLines is how many transcript lines an error message quotes.
const tailLines = 25

var (
	// ErrTimeout is wrapped by the error Run returns when the guest did not
	// power off within Config.Timeout.
	ErrTimeout = errors.New("guest timed out")
	// ErrNoExitStatus is wrapped by the error Run returns when qemu exited
	// on its own but /init never reported the scenario's exit status (kernel
	// panic, triple fault, /init killed).
	ErrNoExitStatus = errors.New("guest stopped without reporting the scenario's exit status")
)

// Config says what to boot and how.
type Config struct {
	QEMU     string        // qemu binary, name or path; default "qemu-system-x86_64"
	Kernel   string        // required: bzImage to boot, e.g. DefaultKernel
	Initrd   string        // required: initramfs from BuildInitramfs
	CPU      string        // -cpu, default "qemu64"
	SMP      int           // -smp, default 2
	MemoryMB int           // -m, default 1024
	Append   []string      // extra kernel command-line words, e.g. "SCENARIO=apply"
	Timeout  time.Duration // default 3 minutes; the run is always bounded
	// QEMUArgs are extra qemu arguments, added after the ones Run builds.
	QEMUArgs []string
	// Log, when non-nil, receives the console output (\r stripped) as it
	// arrives, for progress display. Writes to it must not block for long.
	Log io.Writer
}

// Result is what a guest run produced.
type Result struct {
	Transcript string        // everything the serial console printed, \r stripped
	ExitCode   int           // the scenario's exit status as reported by /init; -1 if it never reported
	Duration   time.Duration // from starting qemu until it exited
	PID        int           // process id qemu had (gone when Run returns)
}

// ScenarioOutput returns the part of the transcript between MarkerStart and
// the exit marker (to the end if the exit marker is missing), without the
// markers; empty if the scenario never started. Kernel messages printed
// meanwhile are included.
func (r *Result) ScenarioOutput() string {
	t := r.Transcript
	i := strings.Index(t, MarkerStart+"\n")
	if i < 0 {
		return ""
	}
	t = t[i+len(MarkerStart)+1:]
	if loc := exitRE.FindAllStringIndex(t, -1); loc != nil {
		t = t[:loc[len(loc)-1][0]]
		t = strings.TrimSuffix(t, "\n") // the newline /init prints before the marker
	}
	return t
}

// exitRE matches the exit marker; compiled once, never modified.
var exitRE = regexp.MustCompile(`(?m)^` + MarkerExit + ` (\d+)$`)

// parseExitCode returns the status from the last exit marker in transcript,
// or -1.
func parseExitCode(transcript string) int {
	m := exitRE.FindAllStringSubmatch(transcript, -1)
	if m == nil {
		return -1
	}
	n, err := strconv.Atoi(m[len(m)-1][1])
	if err != nil {
		return -1
	}
	return n
}

// withDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.QEMU == "" {
		cfg.QEMU = DefaultQEMU
	}
	if cfg.CPU == "" {
		cfg.CPU = DefaultCPU
	}
	if cfg.SMP <= 0 {
		cfg.SMP = DefaultSMP
	}
	if cfg.MemoryMB <= 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return cfg
}

// CommandLine returns the kernel command line Run passes with -append.
func (cfg Config) CommandLine() string {
	return strings.Join(append([]string{BaseAppend}, cfg.Append...), " ")
}

// Args returns the qemu arguments Run uses (defaults applied), without the
// program name.
func (cfg Config) Args() []string {
	cfg = cfg.withDefaults()
	args := []string{
		"-accel", "tcg",
		"-cpu", cfg.CPU,
		"-smp", strconv.Itoa(cfg.SMP),
		"-m", strconv.Itoa(cfg.MemoryMB),
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initrd,
		"-append", cfg.CommandLine(),
		"-display", "none",
		"-serial", "stdio",
		"-monitor", "none",
		"-no-reboot",
		"-net", "none",
	}
	return append(args, cfg.QEMUArgs...)
}

// check refuses a configuration whose inputs are missing.
func (cfg Config) check() (qemu string, err error) {
	if cfg.Kernel == "" {
		return "", errors.New("guest: Config.Kernel is required")
	}
	if cfg.Initrd == "" {
		return "", errors.New("guest: Config.Initrd is required")
	}
	if _, err := os.Stat(cfg.Kernel); err != nil {
		return "", fmt.Errorf("guest: kernel %s: %w", cfg.Kernel, err)
	}
	if _, err := os.Stat(cfg.Initrd); err != nil {
		return "", fmt.Errorf("guest: initrd %s: %w", cfg.Initrd, err)
	}
	for _, w := range cfg.Append {
		if w == "" || strings.ContainsAny(w, " \t\n") {
			return "", fmt.Errorf("guest: kernel command-line word %q must be non-empty and without spaces", w)
		}
	}
	qemu, err = exec.LookPath(cfg.QEMU)
	if err != nil {
		return "", fmt.Errorf("guest: qemu %s (install qemu-system-x86): %w", cfg.QEMU, err)
	}
	return qemu, nil
}

// console collects the serial output, stripping carriage returns and
// copying to an optional live writer.
type console struct {
	mu  sync.Mutex
	buf bytes.Buffer
	log io.Writer
}

func (c *console) Write(p []byte) (int, error) {
	clean := bytes.ReplaceAll(p, []byte("\r"), nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(clean)
	if c.log != nil {
		c.log.Write(clean) // a failing progress writer must not stop the run
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// limitedBuffer keeps at most the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Run boots the guest described by cfg, lets /init run /scenario (see the
// package documentation), and returns when the guest powers off.
//
// The error is nil when the scenario ran and its exit status was reported,
// whatever that status is. Otherwise the error wraps ErrTimeout (the guest
// did not power off within cfg.Timeout), the context's error (ctx was
// canceled or its deadline passed), ErrNoExitStatus (qemu exited but the
// status was never reported), or describes a qemu failure; it quotes the
// last lines of the transcript. Whenever qemu was started, the returned
// Result is non-nil, even together with an error, and qemu is gone: its
// process group has been killed and reaped.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	qemu, err := cfg.check()
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	cmd := exec.CommandContext(runCtx, qemu, cfg.Args()...)
	out := &console{log: cfg.Log}
	stderr := &limitedBuffer{max: 64 << 10}
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = out
	cmd.Stderr = stderr
	// Own process group so the whole group can be killed; SIGKILL if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second

	// Pdeathsig fires when the thread that forked qemu exits, not the
	// process: keep this goroutine on its thread until qemu is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("guest: start %s: %w", qemu, err)
	}
	pid := cmd.Process.Pid
	waitErr := cmd.Wait()
	// Anything qemu may have left in its group goes too.
	_ = syscall.Kill(-pid, syscall.SIGKILL)

	res := &Result{
		Transcript: out.String(),
		Duration:   time.Since(start),
		PID:        pid,
	}
	res.ExitCode = parseExitCode(res.Transcript)

	tailMsg := func() string {
		msg := "\n--- last console lines ---\n" + tail.Lines(res.Transcript, tailLines)
		if s := strings.TrimSpace(stderr.String()); s != "" {
			msg += "\n--- qemu stderr ---\n" + tail.Lines(s, tailLines)
		}
		return msg
	}
	switch {
	case waitErr == nil && res.ExitCode >= 0:
		return res, nil // powered off by /init after reporting
	case ctx.Err() != nil:
		return res, fmt.Errorf("guest: run of %s stopped after %v: %w%s",
			cfg.Kernel, res.Duration.Round(time.Millisecond), ctx.Err(), tailMsg())
	case runCtx.Err() != nil:
		return res, fmt.Errorf("guest: %s did not power off within %v, qemu killed: %w%s",
			cfg.Kernel, cfg.Timeout, ErrTimeout, tailMsg())
	case waitErr != nil:
		return res, fmt.Errorf("guest: qemu %s failed: %w%s", qemu, waitErr, tailMsg())
	case res.ExitCode < 0:
		return res, fmt.Errorf("guest: %s: %w%s", cfg.Kernel, ErrNoExitStatus, tailMsg())
	}
	return res, fmt.Errorf("guest: qemu %s exited unexpectedly%s", qemu, tailMsg())
}
