package module

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/livesplice/livesplice/internal/tail"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Compiler is the C compiler Build passes to Kbuild: the one Debian 12 builds
// its 6.1 kernels with.
const Compiler = "gcc-12"

// ErrNoHeaders is wrapped by Build's error when the headers tree is missing.
var ErrNoHeaders = errors.New("kernel headers tree not found (run `make kernel-inputs`)")

// ErrBuild is wrapped by Build's error when Kbuild fails or complains.
var ErrBuild = errors.New("kbuild failed")

// Build runs Kbuild in dir (written by Generate) against the headers tree,
// e.g. /usr/src/linux-headers-6.1.0-56-amd64, with CC=gcc-12, and returns the
// path of the built .ko. A warning from the build (modpost's unresolved
// symbols, section mismatches, compiler warnings) is an error.
func Build(ctx context.Context, dir, headers string) (ko string, err error) {
	if fi, err := os.Stat(filepath.Join(headers, "Makefile")); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("module: %s: %w", headers, ErrNoHeaders)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("module: %w", err)
	}
	name, err := moduleName(filepath.Join(dir, kbuildFile))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "make", "-C", headers, "M="+dir, "CC="+Compiler,
		fmt.Sprintf("-j%d", runtime.NumCPU()), "modules")
	// A jobserver of a calling make must not leak in.
	cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", fmt.Errorf("module: make in %s: %w", dir, ctxErr)
		}
		return "", fmt.Errorf("module: make in %s: %w: %w\n%s", dir, ErrBuild, err, tail.Lines(string(out), 40))
	}
	if w := warnings(out); len(w) > 0 {
		return "", fmt.Errorf("module: make in %s: %w: warnings:\n%s", dir, ErrBuild, strings.Join(w, "\n"))
	}
	ko = filepath.Join(dir, name+".ko")
	if _, err := os.Stat(ko); err != nil {
		return "", fmt.Errorf("module: make in %s succeeded but: %w", dir, err)
	}
	if _, err := livepatchSymbols(ko); err != nil {
		return "", err
	}
	return ko, nil
}

// moduleName reads the module name from the obj-m line of a Kbuild file
// written by Generate.
func moduleName(kbuildPath string) (string, error) {
	data, err := os.ReadFile(kbuildPath)
	if err != nil {
		return "", fmt.Errorf("module: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "obj-m := "); ok {
			if n, ok := strings.CutSuffix(v, ".o"); ok && nameRE.MatchString(n) {
				return n, nil
			}
		}
	}
	return "", fmt.Errorf("module: %s: no obj-m line written by Generate", kbuildPath)
}

// warnings returns the lines of Kbuild output that report a problem.
func warnings(out []byte) []string {
	var w []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "warning:") || strings.HasPrefix(line, "WARNING:") ||
			strings.Contains(line, "error:") || strings.HasPrefix(line, "ERROR:") {
			w = append(w, line)
		}
	}
	return w
}
