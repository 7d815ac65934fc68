package builder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestLockRestores checks that files a build patched and then died with
// are put back by the next Lock, whichever direction the patch went.
func TestLockRestores(t *testing.T) {
	const (
		one  = "int f(void)\n{\n\treturn 1;\n}\n"
		two  = "int f(void)\n{\n\treturn 2;\n}\n"
		diff = "--- a/f.c\n+++ b/f.c\n@@ -1,4 +1,4 @@\n int f(void)\n {\n-\treturn 1;\n+\treturn 2;\n }\n"
	)
	for _, reverse := range []bool{false, true} {
		dir := t.TempDir()
		start, applied := one, two
		if reverse {
			start, applied = two, one
		}
		src := filepath.Join(dir, "f.c")
		if err := os.WriteFile(src, []byte(start), 0o644); err != nil {
			t.Fatal(err)
		}
		patchFile := filepath.Join(t.TempDir(), "fix.patch")
		os.WriteFile(patchFile, []byte(diff), 0o644)
		tree := &Tree{Dir: dir}
		// What BuildWithPatch does before it builds the patched side; then "crash".
		if err := tree.backup([]string{"f.c"}); err != nil {
			t.Fatal(err)
		}
		if err := tree.patch(context.Background(), patchFile, reverse); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(src); string(got) != applied {
			t.Fatalf("reverse=%v: patch did not apply: %q", reverse, got)
		}
		unlock, err := tree.Lock()
		if err != nil {
			t.Fatalf("reverse=%v: Lock: %v", reverse, err)
		}
		unlock()
		if got, _ := os.ReadFile(src); string(got) != start {
			t.Errorf("reverse=%v: after Lock f.c = %q, want %q", reverse, got, start)
		}
		if _, err := os.Stat(filepath.Join(dir, backupDir)); err == nil {
			t.Errorf("reverse=%v: the backup is still there", reverse)
		}
	}
}

// A .cmd file make cannot parse is removed so that kbuild builds its
// object again; paths outside the tree are left alone.
func TestRemoveBrokenCmdFiles(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "drivers/char/ipmi/.ipmi_si_platform.o.cmd")
	outside := filepath.Join(filepath.Dir(dir), ".outside.cmd")
	for _, p := range []string{broken, outside} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("m.o)\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer os.Remove(outside)
	tree := &Tree{Dir: dir}
	// What make printed for a real one, interleaved by two builds at once.
	out := "  DESCEND objtool\ndrivers/char/ipmi/.ipmi_si_platform.o.cmd:1196: *** missing separator.  Stop.\n" +
		"make[2]: *** [scripts/Makefile.build:508: drivers/char] Error 2\n../.outside.cmd:3: *** missing separator.  Stop.\n"
	if !tree.removeBrokenCmdFiles(out) {
		t.Error("removeBrokenCmdFiles = false, want true")
	}
	if _, err := os.Stat(broken); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the broken .cmd file is still there: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("a file outside the tree was removed: %v", err)
	}
	if tree.removeBrokenCmdFiles("fs/proc/cmdline.c:12:1: error: expected ';'\n") {
		t.Error("removeBrokenCmdFiles of a compiler error = true")
	}
}
