package differ_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/elfobj"
)

var kflags = []string{"-c", "-O2", "-fno-pic", "-mcmodel=kernel", "-mno-red-zone",
	"-ffunction-sections", "-fdata-sections", "-pg", "-mfentry", "-mrecord-mcount", "-g",
	"-fno-asynchronous-unwind-tables", "-mfunction-return=thunk-extern", "-mindirect-branch=thunk-extern"}

func compile(t *testing.T, name, src string, extra ...string) *elfobj.File {
	t.Helper()
	dir := t.TempDir()
	c, o := filepath.Join(dir, name+".c"), filepath.Join(dir, name+".o")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append(append([]string{}, kflags...), extra...), "-o", o, c)
	if out, err := exec.Command("gcc-12", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc-12 %s: %v\n%s", name, err, out)
	}
	f, err := elfobj.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func fnNames(fns []differ.Function) string {
	var s []string
	for _, f := range fns {
		s = append(s, f.Name)
	}
	return strings.Join(s, ",")
}

func renamed(cs *differ.Changeset) string {
	var s []string
	for _, r := range cs.Renamed {
		s = append(s, r.Post+"->"+r.Pre)
	}
	return strings.Join(s, ",")
}

func refusal(cs *differ.Changeset, sym, reason string) bool {
	for _, r := range cs.Refused {
		if r.Symbol == sym && strings.Contains(r.Reason, reason) {
			return true
		}
	}
	return false
}

const clones = `extern int bar(int);
static int __attribute__((noinline)) scale(int x, int k) { int s = 0; for (int i = 0; i < k; i++) s += bar(x + i * k); return s; }
int use1(int x) { return scale(x, 7); }
int use2(int x) { return scale(x, 7) + 1; }
int use3(int x) { return scale(x, 9); }
int use4(int x) { return scale(x, 9) + 1; }
`

const statics = `extern int printk(const char *fmt, ...);
int g(int x) { static int counter; return counter += x; }
int h(int x) { static int counter; counter++; return counter * x; }
int lim(int x) { static int limit = 5; if (x > limit) limit = x; return limit; }
int say(int x) { printk("value %d\n", x); return x; }
`

// newCounter adds a function with its own static counter last, which
// renumbers the counters of g and h: gcc numbers the new one first.
const newCounter = "int first(int x) { static int counter; return counter -= x; }\n"

func TestCorrelate(t *testing.T) {
	tests := []struct {
		name, pre, post string
		flags           []string
		check           func(t *testing.T, cs *differ.Changeset)
	}{
		{
			// pre: scale.constprop.0 (k=9), .1 (k=7); post adds k=5 callers,
			// gcc numbers k=5 .0, k=9 .1, k=7 .2.
			name: "clone renumbering", pre: clones, flags: []string{"-fipa-cp-clone"},
			post: clones + "int pre0(int x) { return scale(x, 5) + 2; }\nint pre1(int x) { return scale(x, 5) + 1; }\n",
			check: func(t *testing.T, cs *differ.Changeset) {
				if got := fnNames(cs.Changed); got != "" {
					t.Errorf("Changed = %q, want none (use1..use4 call renumbered but identical clones)", got)
				}
				if got, want := fnNames(cs.Added), "pre0,pre1,scale.constprop.0.post"; got != want {
					t.Errorf("Added = %q, want %q", got, want)
				}
				if got, want := renamed(cs), "scale.constprop.1->scale.constprop.0,scale.constprop.2->scale.constprop.1"; got != want {
					t.Errorf("Renamed = %q, want %q", got, want)
				}
				if len(cs.Refused) > 0 {
					t.Errorf("Refused = %+v", cs.Refused)
				}
			},
		},
		{
			name: "static local renaming and new static variable", pre: statics, post: statics + newCounter,
			check: func(t *testing.T, cs *differ.Changeset) {
				if got := fnNames(cs.Changed); got != "" {
					t.Errorf("Changed = %q, want none: g and h use renumbered but identical counters", got)
				}
				if got, want := renamed(cs), "counter.2->counter.1,counter.3->counter.2,limit.1->limit.0"; got != want {
					t.Errorf("Renamed = %q, want %q", got, want)
				}
				if len(cs.AddedData) != 1 || cs.AddedData[0].Name != "counter.0" || cs.AddedData[0].Size != 4 {
					t.Errorf("AddedData = %+v, want first's new counter.0", cs.AddedData)
				}
				for _, r := range cs.Refused {
					if r.Symbol != "first" {
						t.Errorf("refused %+v: only the new function using new data may be refused", r)
					}
				}
			},
		},
		{
			name: "string change", pre: statics, post: strings.Replace(statics, "value %d", "value: %d", 1) + newCounter,
			check: func(t *testing.T, cs *differ.Changeset) {
				if got := fnNames(cs.Changed); got != "say" {
					t.Errorf("Changed = %q, want say", got)
				}
			},
		},
		{
			name: "data change refused", pre: statics, post: strings.Replace(statics, "limit = 5", "limit = 6", 1) + newCounter,
			check: func(t *testing.T, cs *differ.Changeset) {
				if !refusal(cs, "limit.0", "initialised data .data.limit.1 changed: not supported") {
					t.Errorf("Refused = %+v, want limit.0 changed", cs.Refused)
				}
				if got := fnNames(cs.Changed); got != "" {
					t.Errorf("Changed = %q, want none", got)
				}
			},
		},
		{
			name: "struct layout change refused",
			pre:  "struct foo { int a; long b; };\nlong get(struct foo *f) { return f->a + f->b; }\n",
			post: "struct foo { int a; long extra; long b; };\nlong get(struct foo *f) { return f->a + f->b; }\n",
			check: func(t *testing.T, cs *differ.Changeset) {
				if !refusal(cs, "struct foo", "struct foo changed size 16 -> 24; member b moved from offset 8 to 16; member extra added at offset 8") {
					t.Errorf("Refused = %+v, want struct foo's layout", cs.Refused)
				}
			},
		},
		{
			name: "global signature change refused",
			pre:  "int __attribute__((noinline)) api(int a) { return a * 3; }\nint user(int x) { return api(x); }\n",
			post: "int __attribute__((noinline)) api(long a) { return a * 3; }\nint user(int x) { return api(x); }\n",
			check: func(t *testing.T, cs *differ.Changeset) {
				if !refusal(cs, "api", "signature of api changed from int (int) to int (long int): it is global") {
					t.Errorf("Refused = %+v, want api's signature", cs.Refused)
				}
			},
		},
		{
			name: "static signature change with an unreplaced caller refused",
			pre: "extern int bar(int);\nstatic int __attribute__((noinline)) helper(int a) { return bar(a) * 3; }\n" +
				"int user(int x) { return helper(x); }\nint keep(int x) { return helper(x + 1); }\n",
			post: "extern int bar(int);\nstatic int __attribute__((noinline)) helper(int a, int b) { return bar(a) * b; }\n" +
				"int user(int x) { return helper(x, 3); }\nint keep(int x) { return helper(x + 1, 3); }\n",
			check: func(t *testing.T, cs *differ.Changeset) {
				// gcc may specialise helper; its callers change with it and
				// are replaced, so no unreplaced caller is left: the check
				// must then not refuse.
				for _, r := range cs.Refused {
					if strings.Contains(r.Reason, "signature") {
						t.Errorf("refused %+v although every caller is replaced (Changed %q)", r, fnNames(cs.Changed))
					}
				}
			},
		},
		{
			name: "inlined static changed: callers replaced",
			pre: "static inline __attribute__((always_inline)) int sq(int x) { return x * x; }\n" +
				"int a(int x) { return sq(x) + 1; }\nint b(int x) { return sq(x) - 1; }\nint c(int x) { return x; }\n",
			post: "static inline __attribute__((always_inline)) int sq(int x) { return x * x + 7; }\n" +
				"int a(int x) { return sq(x) + 1; }\nint b(int x) { return sq(x) - 1; }\nint c(int x) { return x; }\n",
			check: func(t *testing.T, cs *differ.Changeset) {
				if got := fnNames(cs.Changed); got != "a,b" {
					t.Errorf("Changed = %q, want a,b", got)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pre := compile(t, "pre", tc.pre, tc.flags...)
			post := compile(t, "post", tc.post, tc.flags...)
			before := symbolNames(pre, post)
			cs, err := differ.Diff(pre, post)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cs)
			if after := symbolNames(pre, post); after != before {
				t.Errorf("Diff changed its inputs' symbol names:\n%s\nnow\n%s", before, after)
			}
		})
	}
}

// TestLineShift: a line added above functions that pass __LINE__ on
// changes them all without StableLines, only the edited one with it.
func TestLineShift(t *testing.T) {
	pre := `extern void __err(const char *fn, unsigned int line, int e);
#define err(e) __err(__func__, __LINE__, (e))
int one(int x)
{
	if (x < 0)
		err(x);
	return x;
}
int two(int x)
{
	if (x > 100)
		err(-x);
	return x * 2;
}
int three(int x)
{
	if (x == 7)
		err(x);
	return x + 3;
}
`
	post := strings.Replace(pre, "\tif (x < 0)\n", "\tif (x == 42)\n\t\tx = 0;\n\tif (x < 0)\n", 1)
	dir := t.TempDir()
	for _, d := range []string{"a/fs", "b/fs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "a/fs/e.c"), []byte(pre), 0o644)
	os.WriteFile(filepath.Join(dir, "b/fs/e.c"), []byte(post), 0o644)
	cmd := exec.Command("diff", "-u", "a/fs/e.c", "b/fs/e.c")
	cmd.Dir = dir
	diff, _ := cmd.Output()
	stable, err := builder.StableLines(diff, "fs/e.c", []byte(post))
	if err != nil {
		t.Fatal(err)
	}
	preObj := compile(t, "pre", pre)
	for _, tc := range []struct{ name, src, want string }{
		{"without StableLines", post, "one,three,two"},
		{"with StableLines", string(stable), "one"},
	} {
		cs, err := differ.Diff(preObj, compile(t, "post", tc.src))
		if err != nil {
			t.Fatal(err)
		}
		if got := fnNames(cs.Changed); got != tc.want {
			t.Errorf("%s: Changed = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// symbolNames lists every symbol name of the objects, in order.
func symbolNames(fs ...*elfobj.File) string {
	var b strings.Builder
	for _, f := range fs {
		for _, s := range f.Symbols {
			if s != nil {
				b.WriteString(s.Name + " ")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
