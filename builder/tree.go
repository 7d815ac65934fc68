package builder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/livesplice/livesplice/internal/tail"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// KCFLAGS are the flags added to the distribution's own: one section per
// function and per data object, so that the differ can tell them apart.
const KCFLAGS = "-ffunction-sections -fdata-sections"

// stampName is the file in a prepared tree that records how it was prepared.
const stampName = ".livesplice-prepared"

// Tree is a kernel source tree prepared for building single objects.
type Tree struct {
	Dir string
	// Release is the target's KERNELRELEASE, e.g. 6.1.0-56-amd64.
	Release string
	// CC is the compiler command, e.g. gcc-12.
	CC string
	// Stderr receives make's output; nil discards it.
	Stderr io.Writer
}

// stamp records how a tree was prepared.
type stamp struct {
	Release   string `json:"release"`
	CC        string `json:"cc"`
	KCFLAGS   string `json:"kcflags"`
	ConfigSHA string `json:"config_sha256"`
	Tarball   string `json:"tarball"`
}

// ReleaseFromConfig returns RELEASE for a config file named config-RELEASE,
// as Debian installs them in /boot.
func ReleaseFromConfig(config string) (string, error) {
	base := filepath.Base(config)
	rel, ok := strings.CutPrefix(base, "config-")
	if !ok || rel == "" {
		return "", fmt.Errorf("config %s: cannot tell the kernel release from the name (want config-RELEASE); pass --release", config)
	}
	return rel, nil
}

// Prepare extracts tarball into t.Dir, installs config as .config and runs
// olddefconfig and prepare. A tree already prepared the same way is reused.
func (t *Tree) Prepare(ctx context.Context, tarball, config string) error {
	cfg, err := os.ReadFile(config)
	if err != nil {
		return fmt.Errorf("kernel config: %w", err)
	}
	sum := sha256.Sum256(cfg)
	want := stamp{Release: t.Release, CC: t.CC, KCFLAGS: KCFLAGS, ConfigSHA: hex.EncodeToString(sum[:]), Tarball: tarball}
	if got, err := t.readStamp(); err == nil && got == want {
		return nil
	}
	if _, err := os.Stat(tarball); err != nil {
		return fmt.Errorf("kernel source: %w", err)
	}
	// Start from scratch: a half-prepared tree is not worth rescuing.
	if err := os.RemoveAll(t.Dir); err != nil {
		return err
	}
	tmp := t.Dir + ".extract"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := t.run(ctx, tmp, "tar", "-xaf", tarball); err != nil {
		return fmt.Errorf("extracting %s: %w", tarball, err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	if len(entries) != 1 || !entries[0].IsDir() {
		return fmt.Errorf("%s: expected one top-level directory, found %d entries", tarball, len(entries))
	}
	if err := os.Rename(filepath.Join(tmp, entries[0].Name()), t.Dir); err != nil {
		return err
	}
	os.Remove(tmp)
	if err := os.WriteFile(filepath.Join(t.Dir, ".config"), cfg, 0o644); err != nil {
		return err
	}
	if err := t.Make(ctx, "olddefconfig"); err != nil {
		return err
	}
	if err := t.Make(ctx, "-j2", "prepare"); err != nil {
		return err
	}
	data, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(t.Dir, stampName), data, 0o644)
}

// Check verifies that t.Dir was prepared for t.Release and t.CC from config.
func (t *Tree) Check(config string) error {
	got, err := t.readStamp()
	if err != nil {
		return fmt.Errorf("source tree %s is not prepared (run `livesplice prepare`): %w", t.Dir, err)
	}
	if got.Release != t.Release || got.CC != t.CC || got.KCFLAGS != KCFLAGS {
		return fmt.Errorf("source tree %s was prepared for release %s with %s, not %s with %s", t.Dir, got.Release, got.CC, t.Release, t.CC)
	}
	if config != "" {
		cfg, err := os.ReadFile(config)
		if err != nil {
			return fmt.Errorf("kernel config: %w", err)
		}
		sum := sha256.Sum256(cfg)
		if hex.EncodeToString(sum[:]) != got.ConfigSHA {
			return fmt.Errorf("source tree %s was prepared from another config than %s; prepare it again", t.Dir, config)
		}
	}
	return nil
}

func (t *Tree) readStamp() (stamp, error) {
	var s stamp
	data, err := os.ReadFile(filepath.Join(t.Dir, stampName))
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(data, &s)
	return s, err
}

// makeVars are the variables every make call in the tree must share.
func (t *Tree) makeVars() []string {
	return []string{"CC=" + t.CC, "KERNELRELEASE=" + t.Release, "KCFLAGS=" + KCFLAGS}
}

// Make runs make in the tree with the variables every call must share.
func (t *Tree) Make(ctx context.Context, args ...string) error {
	if out, err := t.makeOutput(ctx, args...); err != nil {
		return fmt.Errorf("make %s in %s: %w\n%s", strings.Join(args, " "), t.Dir, err, tail.Lines(out, 15))
	}
	return nil
}

// makeOutput runs make like Make and returns its whole output.
//
// A kbuild .cmd file make cannot read is removed and make run once more
// (removeBrokenCmdFiles).
func (t *Tree) makeOutput(ctx context.Context, args ...string) (string, error) {
	argv := append(t.makeVars(), args...)
	out, err := t.output(ctx, t.Dir, "make", argv...)
	if err != nil && ctx.Err() == nil && t.removeBrokenCmdFiles(out) {
		out, err = t.output(ctx, t.Dir, "make", argv...)
	}
	return out, err
}

// Lock takes an exclusive lock on the tree: a build patches the sources in
// place, so two builds must not overlap. If an earlier build died with its
// patch applied, Lock puts the pristine files back first. Call the returned
// function to unlock.
func (t *Tree) Lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(t.Dir, ".livesplice-lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", t.Dir, err)
	}
	if err := t.restore(); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// backupDir holds, while a patch is applied, the pristine copies of the
// files it changes, with a list of them in backupList.
const (
	backupDir  = ".livesplice-backup"
	backupList = "files"
)

// restore puts back the pristine files a patched build saved, if any: after
// a normal build, or after one that died with its patch applied.
func (t *Tree) restore() error {
	dir := filepath.Join(t.Dir, backupDir)
	list, err := os.ReadFile(filepath.Join(dir, backupList))
	if errors.Is(err, fs.ErrNotExist) {
		return os.RemoveAll(dir)
	}
	if err != nil {
		return err
	}
	for _, file := range strings.Fields(string(list)) {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return fmt.Errorf("source tree %s: cannot restore %s from %s (prepare the tree again): %w", t.Dir, file, dir, err)
		}
		if err := os.WriteFile(filepath.Join(t.Dir, file), data, 0o644); err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}

// backup saves the pristine copies of files before a patch changes them.
func (t *Tree) backup(files []string) error {
	dir := filepath.Join(t.Dir, backupDir)
	for _, file := range files {
		data, err := os.ReadFile(filepath.Join(t.Dir, file))
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	// The list goes last: a backup without it is incomplete and ignored.
	return os.WriteFile(filepath.Join(dir, backupList), []byte(strings.Join(files, "\n")+"\n"), 0o644)
}

// patch applies diff to the tree (-p1), in reverse if asked.
func (t *Tree) patch(ctx context.Context, diff string, reverse bool, extra ...string) error {
	args := []string{"-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-i", diff}
	if reverse {
		args = append(args, "--reverse")
	}
	cmd := exec.CommandContext(ctx, "patch", append(args, extra...)...)
	cmd.Dir = t.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("patch %s in %s: %w\n%s", strings.Join(args, " "), t.Dir, err, tail.Lines(string(out), 15))
	}
	return nil
}

// BuildWithPatch compiles objects (paths relative to the tree) twice:
// from the pristine tree into pristineDir, then with diff applied (in
// reverse if asked) into patchedDir. check, if not nil, runs after the
// pristine build. The tree is pristine again afterwards, even if this
// process dies: the pristine copies of the patched files are kept in the
// tree until they are back, and the next Lock puts them back.
func (t *Tree) BuildWithPatch(ctx context.Context, diff string, reverse bool, objects []string, pristineDir, patchedDir string, check func() error) error {
	data, err := os.ReadFile(diff)
	if err != nil {
		return err
	}
	files, err := PatchedFiles(diff, data)
	if err != nil {
		return err
	}
	unlock, err := t.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := t.patch(ctx, diff, reverse, "--dry-run"); err != nil {
		return fmt.Errorf("the patch does not apply to this tree: %w", err)
	}
	if err := t.makeAndCopy(ctx, diff, true, objects, pristineDir); err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	if err := t.backup(files); err != nil {
		return err
	}
	buildErr := t.patch(ctx, diff, reverse)
	if buildErr == nil {
		buildErr = t.keepLineNumbers(ctx, files)
	}
	if buildErr == nil {
		buildErr = t.makeAndCopy(ctx, diff, false, objects, patchedDir)
	}
	if err := t.restore(); err != nil {
		return err
	}
	return buildErr
}

// keepLineNumbers rewrites the patched files so that every line the patch
// did not touch keeps its pristine line number: a patch that only moves
// __LINE__ values (WARN, BUG, ext4's error helpers) then changes no code.
// The hunks come from comparing each file with its pristine copy, not from
// the patch: patch may have applied them at an offset.
func (t *Tree) keepLineNumbers(ctx context.Context, files []string) error {
	for _, file := range files {
		path := filepath.Join(t.Dir, file)
		cmd := exec.CommandContext(ctx, "diff", "-u", "--label", "a/"+file, "--label", "b/"+file,
			filepath.Join(t.Dir, backupDir, file), path)
		diff, err := cmd.Output()
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
			return fmt.Errorf("comparing %s with its pristine copy: %w", file, err)
		}
		if len(diff) == 0 {
			continue
		}
		patched, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		stable, err := StableLines(diff, file, patched)
		if err != nil {
			return fmt.Errorf("keeping line numbers of %s: %w", file, err)
		}
		if err := os.WriteFile(path, stable, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// makeAndCopy builds objects, as many at a time as there are CPUs, and
// copies them to the same paths under dest. A compile that fails is a
// *CompileError of patch, on the pristine tree or the patched one.
func (t *Tree) makeAndCopy(ctx context.Context, patch string, pristine bool, objects []string, dest string) error {
	args := append([]string{"-j" + strconv.Itoa(runtime.NumCPU())}, objects...)
	if out, err := t.makeOutput(ctx, args...); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("make in %s: %w", t.Dir, ctx.Err())
		}
		return compileError(patch, pristine, t.Dir, out)
	}
	for _, obj := range objects {
		data, err := os.ReadFile(filepath.Join(t.Dir, obj))
		if err != nil {
			return err
		}
		out := filepath.Join(dest, obj)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// removeBrokenCmdFiles removes the kbuild .cmd files make could not read
// (out says "FILE.cmd:LINE: *** missing separator"): a build killed while
// writing one, or two builds of one object at once, leave it cut short or
// interleaved, and every later make in its directory fails on it. Without
// it kbuild just builds the object again. It reports whether it removed
// any.
func (t *Tree) removeBrokenCmdFiles(out string) bool {
	removed := false
	for _, m := range brokenCmdFile.FindAllStringSubmatch(out, -1) {
		rel := filepath.Clean(m[1])
		if filepath.IsAbs(rel) || strings.HasPrefix(rel, "..") {
			continue
		}
		if os.Remove(filepath.Join(t.Dir, rel)) == nil {
			if t.Stderr != nil {
				fmt.Fprintf(t.Stderr, "livesplice: %s in %s could not be read by make (cut short or interleaved by an earlier build): removed, building again\n", rel, t.Dir)
			}
			removed = true
		}
	}
	return removed
}

// brokenCmdFile is make's complaint about a kbuild .cmd file it cannot
// parse.
var brokenCmdFile = regexp.MustCompile(`(?m)^(\S*\.cmd):\d+: \*\*\* missing separator`)

// CompilerText returns CONFIG_CC_VERSION_TEXT from the tree's .config.
func (t *Tree) CompilerText() (string, error) {
	f, err := os.Open(filepath.Join(t.Dir, ".config"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_CC_VERSION_TEXT="); ok {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", fmt.Errorf("%s/.config has no CONFIG_CC_VERSION_TEXT", t.Dir)
}

// CheckCompiler refuses to build when t.CC is not the compiler that built
// the target kernel: the code would not match what is running.
func (t *Tree) CheckCompiler(ctx context.Context) (string, error) {
	want, err := t.CompilerText()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, t.CC, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w", t.CC, err)
	}
	got, _, _ := strings.Cut(string(out), "\n")
	if got != want {
		return "", fmt.Errorf("compiler %s is %q but the kernel was built with %q", t.CC, got, want)
	}
	return want, nil
}

func (t *Tree) run(ctx context.Context, dir, name string, args ...string) error {
	if out, err := t.output(ctx, dir, name, args...); err != nil {
		return fmt.Errorf("%w\n%s", err, tail.Lines(out, 15))
	}
	return nil
}

// output runs a command in dir and returns what it printed (stdout and
// stderr, also copied to t.Stderr).
func (t *Tree) output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	w := io.Writer(&out)
	if t.Stderr != nil {
		w = io.MultiWriter(&out, t.Stderr)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	return out.String(), err
}

// CompileError says an object did not compile. On the patched tree it is
// the patch's fault; on the pristine tree (Pristine) it is not: the tree
// or the toolchain is broken, and the patch was never tried.
type CompileError struct {
	Patch string
	// Object is the object make failed on, "" when its output does not say.
	Object string
	// FirstError is the compiler's first error, as it printed it
	// (file:line:col: error: message).
	FirstError string
	// Log is the compiler's output from the first error on, at most
	// compileLogLines lines.
	Log      string
	Pristine bool
}

// compileLogLines bounds CompileError.Log.
const compileLogLines = 40

func (e *CompileError) Error() string {
	obj := e.Object
	if obj == "" {
		obj = "an object"
	}
	head := fmt.Sprintf("patch %s does not compile: %s: %s", e.Patch, obj, e.FirstError)
	if e.Pristine {
		head = fmt.Sprintf("the pristine tree does not build %s, before patch %s is applied (a setup problem, not the patch's: prepare the tree again, check the compiler): %s",
			obj, e.Patch, e.FirstError)
	}
	lines := strings.SplitN(e.Log, "\n", compileErrorLines+1)
	return head + "\n" + strings.Join(lines[:min(len(lines), compileErrorLines)], "\n")
}

// compileErrorLines is how much of the log CompileError's message shows:
// the first error with the include chain before it and the source line
// after it.
const compileErrorLines = 8

var (
	// compilerError is a diagnostic of gcc that stops the build.
	compilerError = regexp.MustCompile(`^\S+?:\d+(:\d+)?: (fatal )?error: `)
	// includedFrom starts the block in front of a diagnostic: the include
	// chain, the function it is in.
	includedFrom = regexp.MustCompile(`^(In file included from |\s+from |\S+: (In function|In member function|At top level))`)
	// makeFailed is make's line naming the target that failed.
	makeFailed = regexp.MustCompile(`\*\*\* \[(?:[^\]]*?:\d+: )?([^\]]+\.o)\] Error`)
)

// compileError reads the output of a failed make of patch's objects. The
// first error is the compiler's first `error:` line (else the first line
// that says error, else make's last line); Log starts at the block that
// leads to it ("In file included from ...").
func compileError(patch string, pristine bool, dir, out string) *CompileError {
	e := &CompileError{Patch: patch, Pristine: pristine}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	first := -1
	for i, l := range lines {
		if compilerError.MatchString(l) {
			first = i
			break
		}
	}
	if first < 0 {
		for i, l := range lines {
			if strings.Contains(strings.ToLower(l), "error") {
				first = i
				break
			}
		}
	}
	if first < 0 {
		first = len(lines) - 1
	}
	e.FirstError = strings.TrimSpace(strings.TrimPrefix(lines[first], dir+"/"))
	start := first
	for start > 0 && includedFrom.MatchString(lines[start-1]) {
		start--
	}
	end := min(len(lines), start+compileLogLines)
	e.Log = strings.Join(lines[start:end], "\n")
	for _, l := range lines {
		if m := makeFailed.FindStringSubmatch(l); m != nil {
			e.Object = m[1]
			break
		}
	}
	return e
}
