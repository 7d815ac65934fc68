package differ

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/module"
	"github.com/livesplice/livesplice/pack"
)

// coldFixture is an external module whose functions have cold parts, as
// gcc makes them for the kernel (-O2, -freorder-blocks-and-partition:
// the paths to printk, which is __cold, go to .text.unlikely.NAME).
const coldFixture = `// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/uaccess.h>
#include <linux/bug.h>
#include <linux/filter.h>

int lscold_level = 3;
EXPORT_SYMBOL_GPL(lscold_level);
static int lscold_errors;

/* the error path (a printk, a static) is lscold_report.cold */
noinline int lscold_report(int x)
{
	if (x < 0) {
		pr_err("lscold: REPORT_MSG %d\n", x);
		lscold_errors++;
		return -EINVAL;
	}
	return x * 3 + READ_ONCE(lscold_level);
}
EXPORT_SYMBOL_GPL(lscold_report);

/* the cold part has a printk, a WARN (__bug_table) and a user access
 * (__ex_table, stac/clac alternatives) */
noinline int lscold_get(const int __user *up, int x)
{
	int v;

	if (x < 0) {
		pr_warn("lscold: get %d\n", x);
		WARN_ON_ONCE(x == -42);
		if (!user_access_begin(up, sizeof(v)))
			return -EFAULT;
		unsafe_get_user(v, up, efault);
		user_access_end();
		return v * 2;
	}
	return x + GET_DELTA;
efault:
	user_access_end();
	return -EFAULT;
}
EXPORT_SYMBOL_GPL(lscold_get);

struct lscold_req {
	int a, b, c;
	char name[16];
};

/* a clone (isra) with a cold part of its own */
static noinline int lscold_check(struct lscold_req *r)
{
	if (r->b > 100) {
		pr_err("lscold: CHECK_MSG %d\n", r->b);
		return -ERANGE;
	}
	return r->b * 2;
}

noinline int lscold_submit(int b)
{
	struct lscold_req r = { .b = b };

	return lscold_check(&r) + 1;
}
EXPORT_SYMBOL_GPL(lscold_submit);

/* a jump label whose target is the cold part, which jumps back */
noinline int lscold_stats(int x)
{
	x += READ_ONCE(lscold_level);
	if (static_branch_unlikely(&bpf_stats_enabled_key))
		pr_info("lscold: STATS_MSG %d\n", x);
	return x;
}
EXPORT_SYMBOL_GPL(lscold_stats);

MODULE_LICENSE("GPL");
`

// coldVariant fills in coldFixture: post changes lscold_report's,
// lscold_check's and lscold_stats' cold parts only (a message each) and
// lscold_get's hot part only.
func coldVariant(post bool) string {
	vals := [][3]string{
		{"REPORT_MSG", "negative", "negative value"},
		{"GET_DELTA", "1", "2"},
		{"CHECK_MSG", "out of range", "b out of range"},
		{"STATS_MSG", "stats", "stats now"},
	}
	src := coldFixture
	for _, v := range vals {
		src = strings.ReplaceAll(src, v[0], v[map[bool]int{false: 1, true: 2}[post]])
	}
	return src
}

// TestColdParts diffs and extracts real Kbuild objects whose changed
// functions have cold parts: each travels with its function, into the
// function's section, with its relocations, special entries and ORC,
// and the pack describes the pre cold parts for run-pre matching.
func TestColdParts(t *testing.T) {
	paths := kbuild(t, coldVariant(false), coldVariant(true))
	pre, post := open(t, paths[0]), open(t, paths[1])
	const changed = "lscold_check.isra.0,lscold_get,lscold_report,lscold_stats"
	for _, name := range strings.Split(changed, ",") {
		if single(newObject(pre).funcs[name+".cold"]) == nil {
			t.Fatalf("the Kbuild object has no %s.cold: not the object this test is about", name)
		}
	}

	t.Run("self", func(t *testing.T) {
		cs, err := Diff(pre, open(t, paths[0]))
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Changed)+len(cs.Added)+len(cs.Refused) != 0 {
			t.Errorf("self-diff = %+v, want empty", cs)
		}
	})

	cs, err := Diff(pre, post)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(cs.Changed); got != changed || len(cs.Added) != 0 || len(cs.Refused) != 0 {
		t.Fatalf("Changed %q, Added %q, Refused %+v; want Changed %q (cold-only changes included), nothing else", got, names(cs.Added), cs.Refused, changed)
	}
	opts := coldOptions(t)
	x, obj := extractCold(t, cs, opts)
	for _, f := range x.Functions {
		checkColdFunction(t, x, obj, pre, f)
	}
	checkColdEntries(t, obj, opts.EntrySizes)

	// A changed cold part whose function is in neither build is refused:
	// nothing would carry it.
	t.Run("orphan", func(t *testing.T) {
		rename := func(f *elfobj.File) *elfobj.File {
			f = f.Clone()
			for _, s := range f.Symbols {
				if s != nil && s.Name == "lscold_report" {
					s.Name = "lscold_report_hot"
				}
			}
			return f
		}
		cs, err := Diff(rename(pre), rename(post))
		if err != nil {
			t.Fatal(err)
		}
		want := "cold part lscold_report.cold changed, and its function lscold_report is in neither build"
		if len(cs.Refused) != 1 || cs.Refused[0].Symbol != "lscold_report.cold" || !strings.Contains(cs.Refused[0].Reason, want) {
			t.Errorf("Refused = %+v, want %s", cs.Refused, want)
		}
	})

	// The cold part of a renumbered clone is correlated with its pre self
	// like the clone: the pack names both by their running names.
	t.Run("renumbered-clone", func(t *testing.T) {
		renamed := post.Clone()
		for _, s := range renamed.Symbols {
			if s != nil && strings.HasPrefix(s.Name, "lscold_check.isra.0") {
				s.Name = strings.Replace(s.Name, ".isra.0", ".isra.3", 1)
			}
		}
		cs, err := Diff(pre, renamed)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(cs.Changed); got != changed || len(cs.Refused) != 0 {
			t.Fatalf("Changed %q, Refused %+v; want %q", got, cs.Refused, changed)
		}
		want := []Renamed{{Pre: "lscold_check.isra.0", Post: "lscold_check.isra.3"}, {Pre: "lscold_check.isra.0.cold", Post: "lscold_check.isra.3.cold"}}
		if !slices.Equal(cs.Renamed, want) {
			t.Errorf("Renamed = %+v, want %+v", cs.Renamed, want)
		}
		x, _ := extractCold(t, cs, opts)
		for _, f := range x.Functions {
			if f.Name == "lscold_check.isra.0" && (len(f.Cold) != 1 || f.Cold[0].Name != "lscold_check.isra.0.cold") {
				t.Errorf("lscold_check.isra.0: cold parts %+v, want lscold_check.isra.0.cold", f.Cold)
			}
		}
	})
}

// coldOptions are the extraction options of the target kernel.
func coldOptions(t *testing.T) ExtractOptions {
	t.Helper()
	sizes, err := module.EntrySizes(context.Background(), kbuildHeaders)
	if err != nil {
		t.Fatal(err)
	}
	exported, err := module.Exported(kbuildHeaders)
	if err != nil {
		t.Fatal(err)
	}
	return ExtractOptions{Prefix: "ls0_", Object: pack.Vmlinux, Source: "lsfixture.o", EntrySizes: sizes, Exported: exported}
}

// extractCold extracts cs, checks that ld accepts the object, and reads
// it back.
func extractCold(t *testing.T, cs *Changeset, opts ExtractOptions) (*Extraction, *elfobj.File) {
	t.Helper()
	var buf bytes.Buffer
	x, err := Extract(cs, opts, &buf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "cold.o")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ld", "-r", "-o", filepath.Join(dir, "linked.o"), path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("ld -r: %v\n%s", err, out)
	}
	obj, err := elfobj.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return x, obj
}

// checkColdFunction checks one replaced function: its pre cold part for
// run-pre matching, and its new cold part after it in its section, with
// the jumps between them local and the references of the cold part
// relative to the function's global symbol.
func checkColdFunction(t *testing.T, x *Extraction, obj, pre *elfobj.File, f pack.Function) {
	t.Helper()
	cold := f.Name + ".cold"
	preCold := single(newObject(pre).funcs[cold])
	if len(f.Cold) != 1 {
		t.Fatalf("%s: cold parts %+v, want %s", f.Name, f.Cold, cold)
	}
	c := f.Cold[0]
	if c.Name != cold || c.Object != f.Object || c.Source != f.Source || c.Size != int(preCold.Size) || len(c.PreCode) != c.Size || len(c.PreRelocs) == 0 {
		t.Errorf("%s: pre cold part %s %s %s %d bytes (%d of code, %d relocations), want %s of %d bytes in %s %s",
			f.Name, c.Name, c.Object, c.Source, c.Size, len(c.PreCode), len(c.PreRelocs), cold, preCold.Size, f.Object, f.Source)
	}
	// The pre function names its cold part in its relocations (the jump,
	// or the jump label's target): run-pre matching derives its address.
	named := slices.ContainsFunc(f.PreRelocs, func(r pack.Reloc) bool { return r.Symbol == cold }) ||
		slices.ContainsFunc(f.PreSites, func(s pack.Site) bool { return s.TargetSymbol == cold })
	if !named {
		t.Errorf("%s: no pre relocation or site names %s: %+v %+v", f.Name, cold, f.PreRelocs, f.PreSites)
	}

	text := obj.Section(".text.ls0_" + f.Name)
	var hot, part, global *elfobj.Symbol
	for _, s := range obj.Symbols {
		switch {
		case s == nil || s.Section != text:
		case s.Name == f.Name:
			hot = s
		case s.Name == cold:
			part = s
		case s.Name == "ls0_"+f.Name:
			global = s
		}
	}
	if text == nil || hot == nil || part == nil || global == nil {
		t.Fatalf("%s: section %v, symbols %v %v %v: want %s, ls0_%s and %s in .text.ls0_%s", f.Name, text, hot, global, part, f.Name, f.Name, cold, f.Name)
	}
	if hot.Value != 0 || part.Value < hot.Size || part.Value+part.Size != text.Size ||
		global.Size != text.Size || f.NewSize != int(text.Size) || f.NewSymbol != "ls0_"+f.Name {
		t.Errorf("%s: %s at %#x+%d, %s at %#x+%d, ls0_%s %d bytes, NewSize %d, section %d bytes: want the cold part after the function, all inside NewSize",
			f.Name, hot.Name, hot.Value, hot.Size, part.Name, part.Value, part.Size, f.Name, global.Size, f.NewSize, text.Size)
	}
	if !bytes.Equal(text.Data[hot.Size:part.Value], bytes.Repeat([]byte{0xcc}, int(part.Value-hot.Size))) {
		t.Errorf("%s: padding %x before the cold part, want int3", f.Name, text.Data[hot.Size:part.Value])
	}
	// The function reaches its cold part inside the section: a jump
	// against the cold part's local symbol, or the jump label entry.
	toCold := slices.ContainsFunc(text.Relocs, func(r elfobj.Reloc) bool { return r.Offset < hot.Size && r.Sym == part })
	if !toCold && f.Name != "lscold_stats" {
		t.Errorf("%s: no relocation from the function to %s in .text.ls0_%s", f.Name, cold, f.Name)
	}
	for _, r := range text.Relocs {
		if r.Sym != nil && r.Sym.Section != nil && r.Sym.Section != text && strings.HasPrefix(r.Sym.Section.Name, ".text") {
			t.Errorf("%s: relocation at %#x points into %s: jumps between a function and its cold part stay in its section", f.Name, r.Offset, r.Sym.Section.Name)
		}
	}
	// References of the cold part to the kernel are relative to the
	// function's global symbol: the call to _printk is at its offset.
	printk := func(off uint64) bool { return off > part.Value && off < text.Size && text.Data[off-1] == 0xe8 }
	calls := 0
	for _, fx := range append(append([]pack.Fixup(nil), x.Linked...), x.Fixups...) {
		if fx.Symbol == "ls0_"+f.Name && fx.Target == "_printk" {
			if !printk(fx.Offset) {
				t.Errorf("%s: the call to _printk is at +%#x, not a call in the cold part [%#x, %#x)", f.Name, fx.Offset, part.Value, text.Size)
			}
			calls++
		}
	}
	if calls != 1 {
		t.Errorf("%s: %d references to _printk, want the cold part's one", f.Name, calls)
	}
	if f.Name == "lscold_report" && !slices.ContainsFunc(x.Fixups, func(fx pack.Fixup) bool {
		return fx.Symbol == "ls0_lscold_report" && fx.Target == "lscold_errors" && fx.Offset > part.Value
	}) {
		t.Errorf("lscold_report: no fix-up to the static lscold_errors in the cold part: %+v", x.Fixups)
	}
	if f.Name == "lscold_report" && !slices.ContainsFunc(text.Relocs, func(r elfobj.Reloc) bool {
		return r.Offset > part.Value && r.Sym != nil && r.Sym.Section != nil && bytes.Contains(r.Sym.Section.Data, []byte("lscold: negative value %d\n"))
	}) {
		t.Errorf("lscold_report: the cold part does not refer to a copy of the patched message")
	}
	// ORC covers the cold part.
	ip := obj.Section(".orc_unwind_ip")
	if ip == nil || !slices.ContainsFunc(ip.Relocs, func(r elfobj.Reloc) bool {
		return r.Sym != nil && r.Sym.Section == text && uint64(r.Addend) >= part.Value
	}) {
		t.Errorf("%s: no ORC entry in its cold part", f.Name)
	}
}

// checkColdEntries checks the special entries of the cold parts: in
// .text.ls0_lscold_get, past the function, lscold_get.cold's bug entry,
// exception entry (instruction and fixup) and alternatives; and
// lscold_stats' jump label, whose target is its cold part.
func checkColdEntries(t *testing.T, obj *elfobj.File, sizes map[string]int) {
	t.Helper()
	coldAt := func(fn string) (*elfobj.Section, uint64) {
		for _, s := range obj.Symbols {
			if s != nil && s.Name == fn+".cold" {
				return s.Section, s.Value
			}
		}
		t.Fatalf("no %s.cold in the object", fn)
		return nil, 0
	}
	intoCold := func(sec string, field uint64, fn string) int {
		text, at := coldAt(fn)
		s, n := obj.Section(sec), 0
		if s == nil {
			return 0
		}
		size := uint64(sizes[sec])
		for _, r := range s.Relocs {
			if r.Offset%size == field && r.Sym != nil && r.Sym.Section == text && uint64(r.Addend) >= at && r.Type == elf.R_X86_64_PC32 {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		sec   string
		field uint64
		fn    string
		want  int
	}{
		{"__bug_table", 0, "lscold_get", 1},
		{"__ex_table", 0, "lscold_get", 1},
		{"__ex_table", 4, "lscold_get", 1},
		{".altinstructions", 0, "lscold_get", 2},
		{"__jump_table", 4, "lscold_stats", 1},
	} {
		if got := intoCold(c.sec, c.field, c.fn); got < c.want {
			t.Errorf("%s: %d entries with field +%d in %s.cold, want %d", c.sec, got, c.field, c.fn, c.want)
		}
	}
}
