package builder

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestLockRestores checks that a patch left applied by a build that died is
// taken out by the next Lock, in either direction.
func TestLockRestores(t *testing.T) {
	const (
		pristine = "int f(void)\n{\n\treturn 1;\n}\n"
		patched  = "int f(void)\n{\n\treturn 2;\n}\n"
		diff     = "--- a/f.c\n+++ b/f.c\n@@ -1,4 +1,4 @@\n int f(void)\n {\n-\treturn 1;\n+\treturn 2;\n }\n"
	)
	for _, reverse := range []bool{false, true} {
		dir := t.TempDir()
		start, applied := pristine, patched
		if reverse {
			start, applied = patched, pristine
		}
		src := filepath.Join(dir, "f.c")
		if err := os.WriteFile(src, []byte(start), 0o644); err != nil {
			t.Fatal(err)
		}
		patchFile := filepath.Join(t.TempDir(), "fix.patch")
		os.WriteFile(patchFile, []byte(diff), 0o644)
		tree := &Tree{Dir: dir}
		ctx := context.Background()
		if err := tree.patch(ctx, patchFile, reverse); err != nil {
			t.Fatal(err)
		}
		// What BuildWithPatch records before it patches; then "crash".
		os.WriteFile(filepath.Join(dir, appliedName), []byte(diff), 0o644)
		if reverse {
			os.WriteFile(filepath.Join(dir, reverseName), nil, 0o644)
		}
		if got, _ := os.ReadFile(src); string(got) != applied {
			t.Fatalf("reverse=%v: patch did not apply: %q", reverse, got)
		}
		unlock, err := tree.Lock(ctx)
		if err != nil {
			t.Fatalf("reverse=%v: Lock: %v", reverse, err)
		}
		unlock()
		if got, _ := os.ReadFile(src); string(got) != start {
			t.Errorf("reverse=%v: after Lock f.c = %q, want %q", reverse, got, start)
		}
		if _, err := os.Stat(filepath.Join(dir, appliedName)); err == nil {
			t.Errorf("reverse=%v: the record of the applied patch is still there", reverse)
		}
	}
}
