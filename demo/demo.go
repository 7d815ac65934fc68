package demo

import (
	"context"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/guest"
	"github.com/livesplice/livesplice/internal/cache"
	"github.com/livesplice/livesplice/pack"
)

// ID is the demo update's id.
const ID = "demo-cmdline"

// Secret is the command-line word the demo fix hides in /proc/cmdline.
const (
	Secret       = "secret=hunter2"
	SecretHidden = "secret=***"
)

//go:embed scenarios/*.sh
var scenarios embed.FS

// Scenario returns the embedded scenario script name (e.g. "apply").
func Scenario(name string) (string, error) {
	b, err := scenarios.ReadFile("scenarios/" + name + ".sh")
	return string(b), err
}

// Kernel is a Debian kernel the demo and the tests build for and boot.
type Kernel struct {
	// Release is the kernel release, e.g. 6.1.0-56-amd64.
	Release string
	// Source names the source it was built from, as the manifest records
	// it, e.g. "linux-source-6.1 6.1.192-2".
	Source string
}

// The kernels the demo and the tests target: Kernel56 is the demo's;
// Kernel53 is the security update before it, built from 6.1.187, which
// lacks the 6.1.187 -> 6.1.190 fixes of testdata/corpus.
var (
	Kernel56 = Kernel{Release: "6.1.0-56-amd64", Source: "linux-source-6.1 6.1.192-2"}
	Kernel53 = Kernel{Release: "6.1.0-53-amd64", Source: "linux-source-6.1 6.1.187-1"}
)

// Setup says where the inputs are.
type Setup struct {
	// Repo is the root of the livesplice repository.
	Repo string
	// Config is the target kernel's config, Kernel its image.
	Config, Kernel string
	// Source names the kernel source the tree holds, for the manifest.
	Source string
	// Tree is the prepared source tree.
	Tree *builder.Tree
	// Headers is the target's kernel headers tree.
	Headers string
	// Work receives the binary, the packs and the initramfs.
	Work string
}

// DefaultSetup returns the setup for Debian's 6.1.0-56-amd64 with the
// tree in the default cache.
func DefaultSetup(repo, cacheDir, work string) Setup {
	return SetupFor(repo, cacheDir, work, Kernel56)
}

// SetupFor returns the setup for Debian's kernel k as Debian installs it
// (/boot, /usr/src), with its prepared tree in cacheDir.
func SetupFor(repo, cacheDir, work string, k Kernel) Setup {
	rel := k.Release
	return Setup{
		Repo:    repo,
		Config:  "/boot/config-" + rel,
		Kernel:  "/boot/vmlinuz-" + rel,
		Source:  k.Source,
		Tree:    &builder.Tree{Dir: cache.Tree(cacheDir, rel), Release: rel, CC: "gcc-12"},
		Headers: "/usr/src/linux-headers-" + rel,
		Work:    work,
	}
}

// Binary builds a static livesplice for the guest and returns its path.
func (s Setup) Binary(ctx context.Context) (string, error) {
	return s.goBuild(ctx, "./cmd/livesplice", "livesplice")
}

// goBuild builds a static binary of the repository's package pkg into
// WORK/name for the guest.
func (s Setup) goBuild(ctx context.Context, pkg, name string) (string, error) {
	out := filepath.Join(s.Work, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = s.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the guest's %s: %w\n%s", name, err, b)
	}
	return out, nil
}

// Update is an update the demo and the tests build.
type Update struct {
	// Patch is the source patch, relative to the repository.
	ID, Patch, Description string
}

// The updates the demo and the tests build.
var (
	// Cmdline is the demo fix: its effect shows in /proc/cmdline.
	Cmdline = Update{ID, "testdata/demo/proc-cmdline-hide-secret.patch", "proc: cmdline: hide the values of secret= parameters"}
	// Pipe replaces pipe_read, which a reader of an empty pipe sleeps in.
	Pipe = Update{"busy-pipe", "testdata/demo/pipe-read-keep-partial-copy.patch", "pipe: keep the bytes copied before a fault in pipe_read()"}
	// KthreaddMain replaces kthreadd, the main function of the kthreadd
	// thread, which it never leaves: apply refuses it as busy at once,
	// saying so.
	KthreaddMain = Update{"busy-kthreadd", "testdata/demo/kthreadd-list-empty-careful.patch", "kthread: kthreadd: check the create list with list_empty_careful"}
	// SchedIdle replaces schedule_idle, which every idle task is inside
	// while it is switched out.
	SchedIdle = Update{"busy-idle", "testdata/demo/sched-idle-warn-return.patch", "sched: schedule_idle: do not schedule from a task that is not running"}
)

// Pack builds update u into WORK/NAME and returns its path.
func (s Setup) Pack(ctx context.Context, u Update, name string) (string, *pack.Manifest, error) {
	out := filepath.Join(s.Work, name)
	m, err := builder.Build(ctx, builder.Options{
		Tree:        s.Tree,
		Config:      s.Config,
		Patch:       filepath.Join(s.Repo, u.Patch),
		ID:          u.ID,
		Description: u.Description,
		Headers:     s.Headers,
		Source:      s.Source,
		Out:         out,
		WorkDir:     filepath.Join(s.Work, "build-"+u.ID),
	})
	return out, m, err
}

// Boot boots the target kernel with the binary, the packs (guest name
// under /packs -> host path) and any extra files, and runs the named
// scenario.
func (s Setup) Boot(ctx context.Context, binary string, packs map[string]string, scenario string, cfg guest.Config, extra ...guest.File) (*guest.Result, error) {
	script, err := Scenario(scenario)
	if err != nil {
		return nil, err
	}
	files := append([]guest.File{guest.Scenario(script), {Path: "/bin/livesplice", Mode: 0o755, Source: binary}}, extra...)
	for name, src := range packs {
		files = append(files, guest.File{Path: "/packs/" + name, Mode: 0o644, Source: src})
	}
	initrd := filepath.Join(s.Work, "initrd-"+scenario+".gz")
	if err := guest.BuildInitramfs(initrd, files); err != nil {
		return nil, err
	}
	cfg.Kernel, cfg.Initrd = s.Kernel, initrd
	cfg.Append = append([]string{Secret}, cfg.Append...)
	return guest.Run(ctx, cfg)
}

// Steps splits a scenario's output at its "@@step NAME" markers.
func Steps(out string) map[string]string {
	steps := make(map[string]string)
	parts := stepRE.Split(out, -1)
	names := stepRE.FindAllStringSubmatch(out, -1)
	for i, n := range names {
		steps[n[1]] = strings.TrimSpace(parts[i+1])
	}
	return steps
}

var stepRE = regexp.MustCompile(`(?m)^@@step (\S+)\n`)

// ExitStatus returns the "@@rc N" a step printed, or -1.
func ExitStatus(step string) int {
	m := rcRE.FindStringSubmatch(step)
	if m == nil {
		return -1
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

var rcRE = regexp.MustCompile(`(?m)^@@rc (\d+)$`)

// KernelProblems returns the lines of a kernel log that report a warning,
// a BUG or an oops.
func KernelProblems(dmesg string) []string {
	var bad []string
	for _, line := range strings.Split(dmesg, "\n") {
		if problemRE.MatchString(line) && !advisoryRE.MatchString(line) {
			bad = append(bad, line)
		}
	}
	return bad
}

var problemRE = regexp.MustCompile(`WARNING:|BUG:|Oops|general protection|Call Trace:|kernel panic|invalid opcode`)

// advisoryRE matches boot messages that say "WARNING:" without being a
// kernel warning: under -cpu EPYC, "Speculative Return Stack Overflow:
// WARNING: See https://... for mitigation options."
var advisoryRE = regexp.MustCompile(`Speculative Return Stack Overflow: WARNING: See `)
