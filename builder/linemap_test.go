package builder

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// udiff makes a -p1 unified diff of pre -> post for path with diff(1).
func udiff(t *testing.T, path, pre, post string) []byte {
	t.Helper()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a", path), filepath.Join(dir, "b", path)
	for f, s := range map[string]string{a: pre, b: post} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("diff", "-u", "a/"+path, "b/"+path)
	cmd.Dir = dir
	out, _ := cmd.Output() // exit 1: files differ
	if len(out) == 0 {
		t.Fatal("diff produced nothing")
	}
	return out
}

func TestStableLines(t *testing.T) {
	tests := []struct{ name, pre, post, want string }{
		{
			name: "added line",
			pre:  "int a;\nint f(void)\n{\n\treturn 1;\n}\nint b;\n",
			post: "int a;\nint n;\nint f(void)\n{\n\treturn 1;\n}\nint b;\n",
			want: "int a;\nint n;\n#line 2\nint f(void)\n{\n\treturn 1;\n}\nint b;\n",
		},
		{
			name: "an added line carries its patched-source number",
			pre:  "int a;\nint x;\nint b;\nint c;\n",
			post: "int a;\nint b;\nint n;\nint c;\n",
			want: "int a;\n#line 3\nint b;\n#line 3\nint n;\nint c;\n",
		},
		{
			name: "removed lines",
			pre:  "int a;\nint x;\nint y;\nint b;\n",
			post: "int a;\nint b;\n",
			want: "int a;\n#line 4\nint b;\n",
		},
		{
			name: "not inside a macro continuation",
			pre:  "int a;\n#define M(x) \\\n\t((x) + 1)\nint b;\n",
			post: "int a;\nint n;\n#define M(x) \\\n\t((x) + 1)\nint b;\n",
			want: "int a;\nint n;\n#line 2\n#define M(x) \\\n\t((x) + 1)\nint b;\n",
		},
		{
			name: "waits for the end of a call's arguments",
			pre:  "int f(int a,\n\tint b);\nint c;\n",
			post: "int f(int a,\n\tint z,\n\tint b);\nint c;\n",
			want: "int f(int a,\n\tint z,\n\tint b);\n#line 3\nint c;\n",
		},
		{
			name: "waits for the end of a block comment",
			pre:  "int a;\n/* one\n * two */\nint b;\n",
			post: "int a;\n/* one\n * new\n * two */\nint b;\n",
			want: "int a;\n/* one\n * new\n * two */\n#line 4\nint b;\n",
		},
		{
			name: "unchanged",
			pre:  "int a;\n",
			post: "int a;\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var diff []byte
			if tc.pre == tc.post {
				diff = []byte("--- a/dir/x.c\n+++ b/dir/x.c\n")
				tc.want = tc.post
			} else {
				diff = udiff(t, "dir/x.c", tc.pre, tc.post)
				// another file's hunks in the same diff are ignored
				diff = append(udiff(t, "dir/other.c", "a\nb\n", "c\nb\n"), diff...)
			}
			got, err := StableLines(diff, "dir/x.c", []byte(tc.post))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestStableLinesErrors(t *testing.T) {
	diff := udiff(t, "x.c", "int a;\nint b;\n", "int a;\nint n;\nint b;\n")
	if _, err := StableLines(diff, "y.c", []byte("int a;\n")); err == nil || !strings.Contains(err.Error(), "does not touch y.c") {
		t.Errorf("other file: err = %v", err)
	}
	if _, err := StableLines(diff, "x.c", []byte("int a;\nint m;\nint b;\n")); err == nil || !strings.Contains(err.Error(), "does not describe") {
		t.Errorf("wrong content: err = %v", err)
	}
}

// TestStableLinesCompiles proves the mechanism with gcc-12: a line added
// above functions that pass __LINE__ on (as ext4 does) changes their code,
// unless the post source goes through StableLines.
func TestStableLinesCompiles(t *testing.T) {
	pre := `extern void report_error(const char *fn, unsigned int line, int err);
#define fail(err) report_error(__func__, __LINE__, (err))
int first(int x)
{
	if (x < 0)
		fail(x);
	return x;
}
int second(int x)
{
	if (x > 100)
		fail(-x);
	return x * 2;
}
`
	post := strings.Replace(pre, "\tif (x < 0)\n", "\tif (x < 0 || x == 42)\n\t\tx = -x;\n\tif (x < 0)\n", 1)
	diff := udiff(t, "fs/x.c", pre, post)
	stable, err := StableLines(diff, "fs/x.c", []byte(post))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	code := func(name, src, fn string) []byte {
		c, o := filepath.Join(dir, name+".c"), filepath.Join(dir, name+".o")
		if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-c", "-O2", "-fno-pic", "-mcmodel=kernel", "-mno-red-zone", "-ffunction-sections",
			"-fdata-sections", "-pg", "-mfentry", "-mrecord-mcount", "-g", "-o", o, c}
		if out, err := exec.Command("gcc-12", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc-12 %s: %v\n%s", name, err, out)
		}
		out, err := exec.Command("objcopy", "-O", "binary", "--only-section=.text."+fn, o, filepath.Join(dir, name+"."+fn)).CombinedOutput()
		if err != nil {
			t.Fatalf("objcopy: %v\n%s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, name+"."+fn))
		if err != nil || len(b) == 0 {
			t.Fatalf("no code for %s in %s: %v", fn, name, err)
		}
		return b
	}
	preSecond := code("pre", pre, "second")
	if bytes.Equal(preSecond, code("post", post, "second")) {
		t.Fatal("without StableLines the later function should change (its __LINE__ moved); the fixture proves nothing")
	}
	if !bytes.Equal(preSecond, code("stable", string(stable), "second")) {
		t.Errorf("with StableLines second() differs from pre; stable source:\n%s", stable)
	}
	if bytes.Equal(code("pre", pre, "first"), code("stable", string(stable), "first")) {
		t.Errorf("first() was edited but compiles the same")
	}
}
