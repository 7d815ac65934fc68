package coverage

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/corpus"
	"github.com/livesplice/livesplice/demo"
)

// shippedRun is the guest run of a pack that shipped.
func shippedRun() *GuestRun {
	return &GuestRun{Boot: "b1", BootPacks: 2, BootSeconds: 30, ApplyStopUS: 900, Steps: []Step{
		{Name: stepCheck, Seconds: 2}, {Name: stepApply, Seconds: 1, Output: "applied x: f; stop 900 us (1.50x empty stop_machine 600 us)"},
		{Name: stepExercise, Seconds: 1, Output: ExerciseOK}, {Name: "reached", Output: "calls of the replaced functions (1 of 1 traced): 2"},
		{Name: stepUndo, Seconds: 0.5}, {Name: stepLog},
	}}
}

// testRecords has one patch of every way of counting.
func testRecords() map[string]*Record {
	rec := func(patch, loc, data string, c Category, reason string, g *GuestRun, refusals ...Refusal) *Record {
		return &Record{Patch: patch, Location: loc, DataChange: data, Version: "v1", When: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
			Build: Build{BuildOutcome: BuildOutcome{Category: c, Reason: reason, Refusals: refusals}, Seconds: 10, PreSeconds: 1, PreBatch: 8, Load: 2.5}, Guest: g}
	}
	broken := shippedRun()
	broken.Steps[2].Output, broken.Steps[2].RC = "exercise failed: tcp", 1
	recs := []*Record{
		rec("a.patch", "vmlinux", "no", Built, "", shippedRun()),
		rec("b.patch", "vmlinux", "no", NothingToDo, "only __init code changes: takes effect at the next boot", nil),
		rec("c.patch", "vmlinux", "no", NotAlone, "kernel/c.c:10: error: implicit declaration of function 'new_helper'", nil),
		rec("d.patch", "module:d.ko", "maybe", DataChanged, "OBJ: t (section .data.t): initialised data .data.t changed: not supported", nil,
			Refusal{Cold, "cold text"}, Refusal{DataChanged, "data text"}),
		rec("e.patch", "vmlinux", "no", DataChanged, "OBJ: t (section .data.t): initialised data .data.t changed: not supported", nil,
			Refusal{DataChanged, "data text"}),
		rec("f.patch", "vmlinux", "no", Cold, "cold text", nil, Refusal{Cold, "cold text"}),
		rec("g.patch", "module:g.ko", "no", Built, "", broken),
		rec("h.patch", "vmlinux", "no", Built, "", nil),
		rec("i.patch", "vmlinux", "no", OtherError, "make -j2 OBJ in TREE: exit status 2", nil),
	}
	recs[len(recs)-1].Build.Detail = "make -j2 OBJ in TREE: exit status 2\nsecurity/x.c:1: error: boom"
	out := map[string]*Record{}
	for _, r := range recs {
		out[r.Patch] = r
	}
	return out
}

func TestCount(t *testing.T) {
	c := Count(testRecords())
	// M: a, b, e (data but data_change=no), f, g, i; not d (data,
	// maybe), c (does not compile alone), h (pending). N: a and b.
	want := Counts{Run: 9, Pending: 1, NotCompiling: 1, NotCodeOnly: 1, M: 6, N: 2}
	if c != want {
		t.Errorf("Count = %+v, want %+v", c, want)
	}
	if got := c.FirstLine(); got != "shipped: 2 of 6 code-only patches (33.3%)" {
		t.Errorf("first line %q", got)
	}
	if got := (Counts{}).FirstLine(); got != "shipped: 0 of 0 code-only patches (0.0%)" {
		t.Errorf("first line of nothing %q", got)
	}
}

func TestWriteReport(t *testing.T) {
	recs := testRecords()
	sel := Selection{Corpus: "/x/debian-6.1.187-to-6.1.190", Rows: 1666, Seed: 42,
		Candidates: map[string]int{StratumVmlinux: 192, StratumModule: 792}, Kernel: demo.Kernel53}
	for _, p := range []string{"a.patch", "b.patch", "c.patch", "d.patch", "e.patch", "f.patch", "g.patch", "h.patch", "i.patch", "not-run.patch"} {
		sel.Planned = append(sel.Planned, &corpus.Entry{Patch: p})
	}
	var b bytes.Buffer
	if err := WriteReport(&b, sel, recs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	first, _, _ := strings.Cut(out, "\n")
	if first != "shipped: 2 of 6 code-only patches (33.3%)" {
		t.Errorf("first line %q", first)
	}
	for _, want := range []string{
		"**Partial run:** 9 of the 10 planned patches have a result, 1 of them built and waiting for the guest",
		"seed 42",
		"Run so far: 9 (7 vmlinux, 2 module)",
		"less 1 that do not compile alone against the pre tree, less 1 refused for changed initialised data or struct layout",
		"| changed initialised data | not in M (data_change=maybe, listed apart) | 1 | 0 | 1 |",
		"| changed initialised data | M | 1 | 1 | 0 |",
		"| " + Shipped.Title() + " | M and N | 1 | 1 | 0 | 11.0 | 4.5 |",
		"| " + NothingToDo.Title() + " | M and N | 1 |",
		"| " + GuestBroken.Title() + " | M | 1 | 0 | 1 |",
		"## Listed apart: refused for changed data or struct layout, manifest `data_change=maybe`\n\n- `d.patch` (d.ko): changed initialised data:",
		"- `b.patch` (vmlinux): nothing to do at run time, and the tool says so: only __init code changes",
		"| a changed function has a .cold part | 2 | cold text |",
		"Guest: 1 boots for 2 packs",
		"load average as builds ended: median 2.5, 90th percentile 2.5",
		"Apply stop time (all CPUs held): median 0.9 ms, 90th percentile 0.9 ms, over 2 applies; as a ratio to an empty stop_machine in the same boot: median 1.5x",
		"of 2 packs applied, ftrace could trace replaced functions of 2, and the exercise called them in 2",
		"## Other errors, in full (each wants a typed error or a rule)\n\n- `i.patch`:\n\n      make -j2 OBJ in TREE: exit status 2\n      security/x.c:1: error: boom\n",
		"| 3 | `c.patch` | vmlinux | no | not-alone | kernel/c.c:10: error: implicit declaration of function 'new_helper' | 11.0 | - |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not-run.patch") {
		t.Error("report lists a patch that has no result")
	}
	// Written to a file, through a temporary one.
	path := filepath.Join(t.TempDir(), "docs", "coverage.md")
	if err := WriteReportFile(path, sel, recs); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || string(data) != out {
		t.Errorf("report file differs from WriteReport's output (%v)", err)
	}
}

func TestPlan(t *testing.T) {
	recs := testRecords()
	stale := *recs["g.patch"]
	stale.Guest, stale.Version = nil, "v0"
	gone := *recs["a.patch"]
	gone.Guest = nil
	recs["g.patch"], recs["a.patch"] = &stale, &gone
	var planned []*corpus.Entry
	for _, p := range []string{"a.patch", "b.patch", "c.patch", "f.patch", "g.patch", "h.patch", "new.patch"} {
		planned = append(planned, &corpus.Entry{Patch: p})
	}
	exists := func(r *Record) bool { return r.Patch != "a.patch" }
	todo, waiting := plan(planned, recs, "v1", []Category{Cold}, exists)
	// a: its pack is gone; f: cold is redone; g: built from v0; new: no
	// result. h waits for the guest; b and c are done.
	if got := strings.Join(names(todo), " "); got != "a.patch f.patch g.patch new.patch" {
		t.Errorf("todo %s", got)
	}
	if len(waiting) != 1 || waiting[0].Patch != "h.patch" {
		t.Errorf("waiting %+v, want h.patch", waiting)
	}
}

func TestStore(t *testing.T) {
	s := Store{Path: filepath.Join(t.TempDir(), "sub", "results.jsonl")}
	if got, err := s.Load(); err != nil || len(got) != 0 {
		t.Fatalf("Load of a missing file = %v, %v", got, err)
	}
	recs := testRecords()
	built := *recs["h.patch"]
	if err := s.Append(&built, recs["c.patch"]); err != nil {
		t.Fatal(err)
	}
	done := built
	done.Guest = shippedRun()
	if err := s.Append(&done); err != nil {
		t.Fatal(err)
	}
	// A line cut short by a kill at the end is ignored.
	f, err := os.OpenFile(s.Path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"patch":"x.patch","build":{"categ`)
	f.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["h.patch"].Guest == nil || got["h.patch"].Pending() || got["c.patch"].Build.Category != NotAlone {
		t.Errorf("Load = %+v: want h.patch's last record (with its guest run) and c.patch", got)
	}
	if got["h.patch"].Outcome().Category != Shipped {
		t.Errorf("h.patch outcome %+v after its guest run", got["h.patch"].Outcome())
	}
	// The next record starts on a line of its own.
	if err := s.Append(recs["a.patch"]); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(); err != nil || len(got) != 3 || got["a.patch"] == nil || got["x.patch"] != nil {
		t.Errorf("after a cut line and an append: %v, %v; want a, c and h", got, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(); err != nil || len(got) != 0 {
		t.Errorf("after Restart: %d records, %v", len(got), err)
	}
	if _, err := os.Stat(s.Path + ".old"); err != nil {
		t.Errorf("Restart kept no old file: %v", err)
	}
}

func TestModuleDeps(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"modules.dep": `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko: kernel/lib/crc16.ko
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/x/x.ko: kernel/fs/mbcache.ko kernel/lib/libcrc32c.ko
kernel/loop/a.ko: kernel/loop/b.ko
kernel/loop/b.ko: kernel/loop/a.ko
`,
		"modules.softdep": `# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep libcrc32c pre: crc32c post: crc16
`,
		"modules.alias": `alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_intel
alias crc32c crc32c_generic
alias pci:v00008086d* x
`,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	md, err := ReadModuleDeps(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := md.LoadOrder([]string{"ext4.ko", "x.ko"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range got {
		if l.Optional {
			b.WriteString("?")
		}
		b.WriteString(filepath.Base(l.Path) + " ")
	}
	// ext4's soft dependency crypto-crc32c: both candidates, optional;
	// x needs libcrc32c, whose soft dependency crc32c is already there.
	want := "?crc32c-intel.ko ?crc32c_generic.ko crc16.ko mbcache.ko jbd2.ko ext4.ko libcrc32c.ko x.ko "
	if b.String() != want {
		t.Errorf("LoadOrder = %s, want %s", b.String(), want)
	}
	dep := string(md.DepFile([]string{"kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"}))
	if dep != "kernel/fs/jbd2/jbd2.ko: kernel/lib/crc16.ko\nkernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n" {
		t.Errorf("DepFile = %q", dep)
	}
	if _, err := md.LoadOrder([]string{"nope.ko"}); err == nil {
		t.Error("LoadOrder(nope.ko): no error")
	}
	// A loop ends.
	if got, err := md.LoadOrder([]string{"a.ko"}); err != nil || len(got) != 2 {
		t.Errorf("LoadOrder(a.ko) = %v, %v: want b.ko and a.ko", got, err)
	}
}
