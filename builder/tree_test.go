package builder

import (
	"context"
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
