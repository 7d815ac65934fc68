package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/livesplice/livesplice/builder"
)

// Special replaces comm_write (fs/proc/base.c) with code that has every
// kind of special-section entry the module loader must process before
// the update's init: an inline user access (__ex_table, stac/clac
// alternatives) and a copy_from_user the guest feeds bad pointers, a
// WARN_ON (__bug_table) and a static branch on an exported key
// (__jump_table, bpf_stats_enabled_key, toggled through
// /proc/sys/kernel/bpf_stats_enabled), plus lock prefixes, return thunk
// sites and ORC.
var Special = Update{"special", "testdata/special/proc-comm-write-refuse-empty.patch",
	"proc: comm: refuse a name that starts with NUL"}

// CommWrite builds the guest's commwrite helper (testdata/special/commwrite)
// and returns its path.
func (s Setup) CommWrite(ctx context.Context) (string, error) {
	return s.goBuild(ctx, "./testdata/special/commwrite", "commwrite")
}

// SpecialWarnSite returns the file and line of the WARN_ON the special
// patch adds as the post build compiles it: the patch applied to the
// tree's pristine file, then renumbered like the builder does
// (builder.StableLines: unchanged lines keep their pristine numbers, so a
// line the patch adds is numbered on from the unchanged line before it).
// That is what the kernel's WARNING line must name. source is the line in
// the plain patched file, for people.
func SpecialWarnSite(repo string, tree *builder.Tree) (file string, line, source int, err error) {
	patchPath := filepath.Join(repo, Special.Patch)
	diff, err := os.ReadFile(patchPath)
	if err != nil {
		return "", 0, 0, err
	}
	var warn string
	for _, l := range strings.Split(string(diff), "\n") {
		if f, ok := strings.CutPrefix(l, "+++ b/"); ok {
			file = f
		}
		if strings.HasPrefix(l, "+") && strings.Contains(l, "WARN_ON(") {
			warn = l[1:]
		}
	}
	if file == "" || warn == "" {
		return "", 0, 0, fmt.Errorf("%s: no file or no added WARN_ON", patchPath)
	}
	unlock, err := tree.Lock()
	if err != nil {
		return "", 0, 0, err
	}
	pre, err := os.ReadFile(filepath.Join(tree.Dir, file))
	unlock()
	if err != nil {
		return "", 0, 0, err
	}
	tmp, err := os.MkdirTemp("", "livesplice-special-")
	if err != nil {
		return "", 0, 0, err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, filepath.Dir(file)), 0o755); err != nil {
		return "", 0, 0, err
	}
	if err := os.WriteFile(filepath.Join(tmp, file), pre, 0o644); err != nil {
		return "", 0, 0, err
	}
	cmd := exec.Command("patch", "-p1", "-s", "-i", patchPath)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", 0, 0, fmt.Errorf("patch -p1 < %s: %w\n%s", patchPath, err, out)
	}
	post, err := os.ReadFile(filepath.Join(tmp, file))
	if err != nil {
		return "", 0, 0, err
	}
	for i, l := range strings.Split(string(post), "\n") {
		if l == warn {
			source = i + 1
		}
	}
	stable, err := builder.StableLines(diff, file, post)
	if err != nil {
		return "", 0, 0, err
	}
	cur := 1
	for _, l := range strings.Split(string(stable), "\n") {
		if m := lineRE.FindStringSubmatch(l); m != nil {
			cur, _ = strconv.Atoi(m[1])
			continue
		}
		if l == warn {
			return file, cur, source, nil
		}
		cur++
	}
	return "", 0, 0, fmt.Errorf("%s: the WARN_ON line is not in the renumbered source", file)
}

var lineRE = regexp.MustCompile(`^#line (\d+)\s*$`)
