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

const newDataBase = `
extern int printk(const char *fmt, ...);
extern int shared_counter;
static int private_counter;
int use_private(int x) { return private_counter += x; }
int count(int x) { return x + 1; }
`

// wantData is one section the written object must hold for new data.
type wantData struct {
	sec   string
	typ   elf.SectionType
	flags elf.SectionFlag
	size  uint64
	// relocs are the targets (symbol names) the section's relocations
	// must include.
	relocs []string
}

func TestExtractNewData(t *testing.T) {
	tests := []struct {
		name     string
		post     string
		data     []wantData
		codeRefs []string // local symbols .text.ls0_count must relocate against
		refused  string   // substring of count's refusal reason
	}{
		{name: "bss", post: `static int calls;
int count(int x) { calls++; return x + 1; }`,
			data:     []wantData{{sec: ".bss.ls0_calls", typ: elf.SHT_NOBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, size: 4}},
			codeRefs: []string{"calls"}},
		{name: "data", post: `static int limits[2] = {1, 2};
int count(int x) { limits[x & 1] += x; return limits[(x + 1) & 1] + 1; }`,
			data:     []wantData{{sec: ".data.ls0_limits", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, size: 8}},
			codeRefs: []string{"limits"}},
		{name: "names", post: `static const char *const names[] = {"a", "b"};
int count(int x) { printk("%s\n", names[x & 1]); return x + 1; }`,
			data: []wantData{{sec: ".rodata.ls0_names", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, size: 16,
				relocs: []string{".rodata.str1.1"}}},
			codeRefs: []string{"names"}},
		{name: "bss+names", post: `static int calls;
static const char *const names[] = {"a", "b"};
int count(int x) { calls++; printk("%s\n", names[x & 1]); return x + 1; }`,
			data: []wantData{
				{sec: ".bss.ls0_calls", typ: elf.SHT_NOBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, size: 4},
				{sec: ".rodata.ls0_names", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, size: 16, relocs: []string{".rodata.str1.1"}},
			},
			codeRefs: []string{"calls", "names"}},
		{name: "nested-and-exported", post: `static int seen;
static int *slots[2] = {&seen, &shared_counter};
int count(int x) { slots[0] = slots[x & 1]; return *slots[0] + x; }`,
			data: []wantData{
				{sec: ".bss.ls0_seen", typ: elf.SHT_NOBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, size: 4},
				{sec: ".data.ls0_slots", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, size: 16, relocs: []string{"seen", "shared_counter"}},
			},
			codeRefs: []string{"slots"}},
		{name: "kernel-static", post: `static int *slots[2] = {&private_counter, 0};
int count(int x) { slots[1] = slots[x & 1]; return *slots[1] + x; }`,
			refused: "new data slots references private_counter at offset 0x0, a static or unexported symbol of the running kernel"},
	}
	pre := build(t, "pre", newDataBase)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			post := build(t, "post", strings.Replace(newDataBase, "int count(int x) { return x + 1; }", tc.post, 1))
			cs, err := Diff(pre, post)
			if err != nil {
				t.Fatal(err)
			}
			if tc.refused != "" {
				if !refusedWith(cs.Refused, "count", tc.refused) {
					var buf bytes.Buffer
					_, err := Extract(cs, ExtractOptions{Prefix: "ls0_", Exported: map[string]bool{"shared_counter": true}}, &buf)
					var re *RefusedError
					if !errors.As(err, &re) || !refusedWith(re.Refused, "count", tc.refused) {
						t.Fatalf("Refused = %+v, Extract error %v; want count refused with %q", cs.Refused, err, tc.refused)
					}
				}
				return
			}
			if len(cs.Refused) > 0 || names(cs.Changed) != "count" || len(cs.AddedData) == 0 {
				t.Fatalf("changeset = %+v, want count changed, new data, no refusals", cs)
			}
			obj := extractWithExports(t, cs, map[string]bool{"shared_counter": true})
			for _, w := range tc.data {
				sec := obj.Section(w.sec)
				if sec == nil {
					t.Fatalf("no section %s in the written object", w.sec)
				}
				if sec.Type != w.typ || sec.Flags != w.flags || sec.Size != w.size {
					t.Errorf("%s: type %v flags %v size %d, want %v %v %d", w.sec, sec.Type, sec.Flags, sec.Size, w.typ, w.flags, w.size)
				}
				name := strings.TrimPrefix(w.sec[strings.Index(w.sec[1:], ".")+2:], "ls0_")
				if s := findSym(obj, name); s == nil || s.Bind != elf.STB_LOCAL || s.Section != sec || s.Size != w.size {
					t.Errorf("symbol %s = %+v, want local of size %d in %s", name, s, w.size, w.sec)
				}
				for _, want := range w.relocs {
					if !relocTo(sec, want) {
						t.Errorf("%s: no relocation to %s in %+v", w.sec, want, sec.Relocs)
					}
				}
			}
			text := obj.Section(".text.ls0_count")
			if text == nil {
				t.Fatal("no .text.ls0_count")
			}
			for _, want := range tc.codeRefs {
				if !relocTo(text, want) {
					t.Errorf(".text.ls0_count: no local relocation to %s", want)
				}
			}
		})
	}
}

func refusedWith(rs []Refusal, sym, reason string) bool {
	for _, r := range rs {
		if r.Symbol == sym && strings.Contains(r.Reason, reason) {
			return true
		}
	}
	return false
}

// relocTo reports a relocation of sec against the symbol name (or the
// section symbol of the section name); local symbols must be defined.
func relocTo(sec *elfobj.Section, name string) bool {
	for _, r := range sec.Relocs {
		if r.Sym == nil {
			continue
		}
		if r.Sym.Name == name || (r.Sym.IsSection() && r.Sym.Section != nil && r.Sym.Section.Name == name) {
			if r.Sym.Bind == elf.STB_LOCAL && r.Sym.Section == nil {
				return false
			}
			return true
		}
	}
	return false
}

// extractWithExports runs ExtractWith and checks the object with ld -r and
// readelf.
func extractWithExports(t *testing.T, cs *Changeset, exported map[string]bool) *elfobj.File {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Extract(cs, ExtractOptions{Prefix: "ls0_", Exported: exported}, &buf); err != nil {
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
		} else if os.Getenv("NEWDATA_DEBUG") != "" {
			t.Logf("%s", out)
		}
	}
	f, err := elfobj.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
