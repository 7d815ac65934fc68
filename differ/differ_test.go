package differ

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
)

var kernelFlags = []string{"-c", "-O2", "-fno-pic", "-mcmodel=kernel", "-mno-red-zone",
	"-ffunction-sections", "-fdata-sections", "-pg", "-mfentry", "-mrecord-mcount", "-g",
	"-fno-asynchronous-unwind-tables", "-mfunction-return=thunk-extern", "-mindirect-branch=thunk-extern"}

// build compiles src with kernel-like flags and reads the object.
func build(t *testing.T, name, src string) *elfobj.File {
	t.Helper()
	dir := t.TempDir()
	c, o := filepath.Join(dir, name+".c"), filepath.Join(dir, name+".o")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, kernelFlags...), "-o", o, c)
	if out, err := exec.Command("gcc-12", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc-12 %s: %v\n%s", name, err, out)
	}
	f, err := elfobj.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const base = `
extern int printk(const char *fmt, ...);
extern int shared_counter;
int table[4] = {1, 2, 3, 4};
__attribute__((noinline)) static int helper(int x) { return x * 3 + shared_counter; }
int compute(int x) { return helper(x) + table[x & 3]; }
int report(int x) { printk("report %d\n", x); return x; }
int other(int x) { return x - 7; }
__attribute__((section(".init.text"))) int setup(int x) { return x + 11; }
__attribute__((section(".exit.text"))) void teardown(void) { shared_counter = 0; }
static const char lsauthor[] __attribute__((section(".modinfo"), used, aligned(1))) = "author=A. Author";
__attribute__((section(".sched.text"), noinline)) int sched_a(int x) { return x * 5 + 1; }
__attribute__((section(".sched.text"), noinline)) int sched_b(int x) { return sched_a(x) + 2; }
`

func names(fns []Function) string {
	var s []string
	for _, f := range fns {
		s = append(s, f.Name)
	}
	return strings.Join(s, ",")
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name          string
		post          string
		changed       string
		added         string
		nextBoot      string
		refusedSym    string
		refusedReason string
		refusedKind   RefusalKind
	}{
		{name: "unchanged", post: base},
		{name: "body", post: strings.Replace(base, "x - 7", "x - 8", 1), changed: "other"},
		{name: "string", post: strings.Replace(base, `"report %d\n"`, `"report: %d\n"`, 1), changed: "report"},
		{name: "added", changed: "other", added: "newhelper", post: strings.Replace(base, "int other(int x) { return x - 7; }",
			"__attribute__((noinline)) static int newhelper(int x) { return x * x + shared_counter; }\nint other(int x) { return newhelper(x) - 7; }", 1)},
		{name: "data", post: strings.Replace(base, "{1, 2, 3, 4}", "{1, 2, 3, 5}", 1),
			refusedSym: "table", refusedReason: "initialised data .data.table changed: not supported", refusedKind: RefuseData},
		{name: "static-call", post: strings.Replace(base, "table[x & 3]; }", "table[x & 1]; }", 1), changed: "compute"},
		// Functions sharing an explicit section, aligned with multi-byte
		// NOPs between them: the one that grows is replaced, the one that
		// moves is not.
		{name: "shared-section", post: strings.Replace(base, "x * 5 + 1", "x * 6 + 1", 1), changed: "sched_a"},
		// MODULE_AUTHOR and friends: read at load, never by running code.
		{name: "modinfo", post: strings.Replace(base, "author=A. Author", "author=B. Author", 1)},
		{name: "init-only", post: strings.Replace(base, "x + 11", "x + 12", 1), nextBoot: "setup"},
		{name: "exit-only", post: strings.Replace(base, "shared_counter = 0", "shared_counter = 1", 1), nextBoot: "teardown"},
		{name: "init-and-body", post: strings.Replace(strings.Replace(base, "x + 11", "x + 12", 1), "x - 7", "x - 8", 1),
			changed: "other", nextBoot: "setup"},
		{name: "new-init", post: strings.Replace(base, "int other(", `__attribute__((section(".init.text"))) int early(int x) { return setup(x) * 2; }
int other(`, 1), nextBoot: "early"},
	}
	pre := build(t, "pre", base)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			post := build(t, "post", tc.post)
			cs, err := Diff(pre, post)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(cs.Changed); got != tc.changed {
				t.Errorf("Changed = %q, want %q", got, tc.changed)
			}
			if got := names(cs.Added); got != tc.added {
				t.Errorf("Added = %q, want %q", got, tc.added)
			}
			if got := names(cs.NextBoot); got != tc.nextBoot {
				t.Errorf("NextBoot = %q, want %q", got, tc.nextBoot)
			}
			checkRefused(t, cs, tc.refusedSym, tc.refusedReason)
			for _, r := range cs.Refused {
				if r.Kind != tc.refusedKind {
					t.Errorf("refusal %q is of kind %v, want %v", r.Reason, r.Kind, tc.refusedKind)
				}
			}
		})
	}
}

func checkRefused(t *testing.T, cs *Changeset, sym, reason string) {
	t.Helper()
	if sym == "" {
		if len(cs.Refused) > 0 {
			t.Errorf("Refused = %+v, want none", cs.Refused)
		}
		return
	}
	for _, r := range cs.Refused {
		if r.Symbol == sym && r.Reason == reason {
			return
		}
	}
	t.Errorf("Refused = %+v, want %s: %q", cs.Refused, sym, reason)
}

// extract diffs, extracts, and checks the object with debug/elf, ld -r and
// readelf.
func extract(t *testing.T, pre, post *elfobj.File) (*Extraction, *elfobj.File) {
	t.Helper()
	cs, err := Diff(pre, post)
	if err != nil {
		t.Fatal(err)
	}
	return extractChangeset(t, cs)
}

// extractChangeset extracts cs and checks the written object with
// debug/elf, ld -r and readelf.
func extractChangeset(t *testing.T, cs *Changeset) (*Extraction, *elfobj.File) {
	t.Helper()
	var buf bytes.Buffer
	x, err := Extract(cs, ExtractOptions{Prefix: "ls0_"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	obj := filepath.Join(dir, "obj.o")
	if err := os.WriteFile(obj, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"ld", "-r", "-o", filepath.Join(dir, "x.o"), obj}, {"readelf", "-Wa", obj}} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil || bytes.Contains(out, []byte("Warning")) {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	ef, err := elf.Open(obj)
	if err != nil {
		t.Fatalf("debug/elf: %v", err)
	}
	ef.Close()
	f, err := elfobj.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	return x, f
}

func findSym(f *elfobj.File, name string) *elfobj.Symbol {
	for _, s := range f.Symbols {
		if s != nil && s.Name == name {
			return s
		}
	}
	return nil
}

func TestExtractString(t *testing.T) {
	pre := build(t, "pre", base)
	post := build(t, "post", strings.Replace(base, `"report %d\n"`, `"patched report %d\n"`, 1))
	x, f := extract(t, pre, post)
	if len(x.Functions) != 1 || x.Functions[0].Name != "report" || x.Functions[0].NewSymbol != "ls0_report" {
		t.Fatalf("Functions = %+v", x.Functions)
	}
	rep := x.Functions[0]
	if rep.SiteOffset != 5 {
		t.Errorf("SiteOffset = %d, want 5 (fentry)", rep.SiteOffset)
	}
	if rep.PreRelocs[0].Symbol != "__fentry__" || rep.PreRelocs[0].Offset != 1 || len(rep.PreCode) != rep.Size {
		t.Errorf("PreRelocs[0] = %+v, PreCode %d bytes, PreSize %d", rep.PreRelocs[0], len(rep.PreCode), rep.Size)
	}
	text := f.Section(".text.ls0_report")
	if text == nil || !bytes.HasPrefix(text.Data, nopFentry[:]) {
		t.Fatalf("no .text.ls0_report starting with the 5-byte NOP")
	}
	g := findSym(f, "ls0_report")
	if g == nil || g.Bind != elf.STB_GLOBAL || g.Section != text || g.Value != 0 {
		t.Errorf("global ls0_report = %+v", g)
	}
	if l := findSym(f, "report"); l == nil || l.Bind != elf.STB_LOCAL || l.Section != text {
		t.Errorf("local report = %+v", l)
	}
	found := false
	for _, r := range text.Relocs {
		if r.Sym.Name == "__fentry__" {
			t.Errorf("fentry relocation kept")
		}
		if r.Sym.Section != nil && bytes.Contains(r.Sym.Section.Data, []byte("patched report %d\n\x00")) {
			found = true
		}
	}
	if !found {
		t.Errorf("no relocation to the copied string; relocs %+v", text.Relocs)
	}
	if !hasFixup(x, "ls0_report", "printk") {
		t.Errorf("Fixups = %+v, want printk", x.Fixups)
	}
}

func hasFixup(x *Extraction, sym, target string) bool {
	for _, fx := range x.Fixups {
		if fx.Symbol == sym && fx.Target == target {
			return true
		}
	}
	return false
}

// TestExtractEndPointer: a loop to the end of a static array references
// the section at the array's size, which no symbol covers; it is named as
// the array plus its size.
func TestExtractEndPointer(t *testing.T) {
	const src = `
struct attr { int a, b; };
static struct attr attrs[8] = {{1, 2}};
int sum(int x) { int s = 0; for (struct attr *p = attrs; p < attrs + 8; p++) s += p->a * x; return s; }
`
	pre := build(t, "pre", src)
	post := build(t, "post", strings.Replace(src, "p->a * x", "p->b * x", 1))
	x, _ := extract(t, pre, post)
	var end bool
	for _, fx := range x.Fixups {
		if fx.Target == "attrs" && fx.Addend == 8*8 {
			end = true
		}
	}
	if !end {
		t.Errorf("Fixups = %+v, want one to attrs+64 (its end)", x.Fixups)
	}
}

func TestExtractAddedAndStatic(t *testing.T) {
	pre := build(t, "pre", base)
	post := build(t, "post", strings.Replace(base, "int other(int x) { return x - 7; }",
		"__attribute__((noinline)) static int newhelper(int x) { return x * x + shared_counter; }\n"+
			"int other(int x) { return newhelper(x) - helper(x); }", 1))
	x, f := extract(t, pre, post)
	text := f.Section(".text.ls0_other")
	if text == nil || f.Section(".text.ls0_newhelper") == nil {
		t.Fatalf("missing extracted sections")
	}
	var toNew bool
	for _, r := range text.Relocs {
		if r.Sym.Name == "newhelper" && r.Sym.Section == f.Section(".text.ls0_newhelper") {
			toNew = true
		}
	}
	if !toNew {
		t.Errorf("no ELF relocation from other to newhelper: %+v", text.Relocs)
	}
	if !hasFixup(x, "ls0_other", "helper") {
		t.Errorf("Fixups = %+v, want one to the unchanged static helper", x.Fixups)
	}
	if !hasFixup(x, "ls0_newhelper", "shared_counter") {
		t.Errorf("Fixups = %+v, want newhelper -> shared_counter", x.Fixups)
	}
	for _, fx := range x.Fixups {
		if fx.Target == "helper" && (fx.Type != elf.R_X86_64_PLT32 && fx.Type != elf.R_X86_64_PC32 || fx.Addend != -4) {
			t.Errorf("helper fixup = %+v, want PC-relative -4", fx)
		}
	}
}

func TestSiteChecks(t *testing.T) {
	const short = `__attribute__((no_instrument_function, function_return("keep"))) int tiny(void) { return 0; }`
	pre := build(t, "pre", short)
	post := build(t, "post", strings.Replace(short, "return 0", "return 12345", 1))
	cs, err := Diff(pre, post)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Refused) != 1 || !strings.Contains(cs.Refused[0].Reason, "too short") || len(cs.Changed) != 0 {
		t.Fatalf("changeset = %+v, want tiny refused as too short", cs)
	}
	// Extract checks again on its own, even when given the function.
	forced := &Changeset{Changed: []Function{{Name: "tiny"}}, pre: pre, post: post}
	_, err = Extract(forced, ExtractOptions{Prefix: "ls0_"}, &bytes.Buffer{})
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "too short") {
		t.Errorf("Extract(forced) = %v, want a RefusedError about the short function", err)
	}
	if _, err := Extract(cs, ExtractOptions{Prefix: "ls0_"}, &bytes.Buffer{}); !errors.As(err, &re) {
		t.Errorf("Extract(changeset with refusals) = %v, want RefusedError", err)
	}
}

// TestAnchors: the new code of user calls the static scale and reads the
// static hits, which the pre code of user does not refer to; scale's own
// code locates both (it reads hits), so it is the one anchor.
func TestAnchors(t *testing.T) {
	const src = `
static int hits;
static int misses;
__attribute__((noinline)) static int scale(int x) { return x * 3 + hits; }
int count(int x) { hits += x; misses -= x; return hits; }
int caller(int x) { return scale(x); }
`
	pre := build(t, "pre", src+"int user(int x) { return x + 1; }\n")
	post := build(t, "post", src+"int user(int x) { return scale(x) + hits + misses; }\n")
	x, _ := extract(t, pre, post)
	var got []string
	for _, a := range x.Anchors {
		got = append(got, a.Name)
		if len(a.PreCode) != a.Size || len(a.PreRelocs) == 0 {
			t.Errorf("anchor %s: %d bytes of code for size %d, %d relocations", a.Name, len(a.PreCode), a.Size, len(a.PreRelocs))
		}
	}
	// scale anchors itself and hits; misses needs count.
	if strings.Join(got, ",") != "scale,count" {
		t.Errorf("Anchors = %q, want scale,count", got)
	}
}

// only is cs with just the changed functions given, and no refusals.
func (cs *Changeset) only(changed []Function) *Changeset {
	return &Changeset{Changed: changed, pre: cs.pre, post: cs.post}
}
