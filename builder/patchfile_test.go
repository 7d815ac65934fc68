package builder

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestPatchedFiles(t *testing.T) {
	demo, err := os.ReadFile("../testdata/demo/proc-cmdline-hide-secret.patch")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		diff  string
		files []string
		err   string
	}{
		{name: "demo", diff: string(demo), files: []string{"fs/proc/cmdline.c"}},
		{name: "two files", diff: "--- a/kernel/sys.c\t2024-01-01\n+++ b/kernel/sys.c\t2024-01-01\n@@ -1 +1 @@\n-a\n+b\n--- a/mm/vmscan.c\n+++ b/mm/vmscan.c\n@@ -1 +1 @@\n-a\n+b\n",
			files: []string{"kernel/sys.c", "mm/vmscan.c"}},
		{name: "header", diff: "--- a/include/linux/fs.h\n+++ b/include/linux/fs.h\n", files: []string{"include/linux/fs.h"}},
		{name: "header and source", diff: "--- a/include/linux/fs.h\n+++ b/include/linux/fs.h\n@@ -1 +1 @@\n-a\n+b\n--- a/fs/namei.c\n+++ b/fs/namei.c\n@@ -1 +1 @@\n-a\n+b\n--- a/fs/internal.h\n+++ b/fs/internal.h\n",
			files: []string{"include/linux/fs.h", "fs/namei.c", "fs/internal.h"}},
		{name: "new file", diff: "--- /dev/null\n+++ b/fs/new.c\n", err: "creates or deletes"},
		{name: "makefile", diff: "--- a/fs/Makefile\n+++ b/fs/Makefile\n", err: "only C sources (.c) and headers (.h)"},
		{name: "p0", diff: "--- cmdline.c\n+++ cmdline.c\n", err: "does not look like a/FILE"},
		{name: "escape", diff: "--- a/../etc/x.c\n+++ b/../etc/x.c\n", err: "does not look like a/FILE"},
		{name: "empty", diff: "hello\n", err: "changes no file"},
	}
	for _, tt := range tests {
		files, err := PatchedFiles("x.patch", []byte(tt.diff))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "x.patch") {
				t.Errorf("%s: got %v, want error naming x.patch with %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(files, tt.files) {
			t.Errorf("%s: got %v, %v; want %v", tt.name, files, err, tt.files)
		}
	}
}
