package elfobj

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var kernelFlags = []string{"-c", "-O2", "-fno-pic", "-mcmodel=kernel", "-mno-red-zone",
	"-ffunction-sections", "-fdata-sections", "-pg", "-mfentry", "-mrecord-mcount",
	"-fno-asynchronous-unwind-tables", "-mfunction-return=thunk-extern", "-mindirect-branch=thunk-extern"}

const fixture = `
extern int printk(const char *fmt, ...);
static int counter = 3;
static const char table[] = "abcdef";
__attribute__((noinline)) static int helper(int x) { return x * counter + table[x & 3]; }
int entry(int x) { printk("entry %d\n", x); return helper(x) + 1; }
int (*hook)(int) = entry;
`

// compile builds C source with kernel-like flags and returns the object path.
func compile(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	c := filepath.Join(dir, "fix.c")
	o := filepath.Join(dir, "fix.o")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, kernelFlags...), "-o", o, c)
	if out, err := exec.Command("gcc-12", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc-12: %v\n%s", err, out)
	}
	return o
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestReadResolvesRelocations(t *testing.T) {
	f, err := Open(compile(t, fixture))
	if err != nil {
		t.Fatal(err)
	}
	text := f.Section(".text.entry")
	if text == nil {
		t.Fatal("no .text.entry section")
	}
	var names []string
	for _, r := range text.Relocs {
		if r.Sym == nil {
			t.Fatalf("relocation at %#x has no symbol", r.Offset)
		}
		names = append(names, r.Sym.Name)
	}
	got := strings.Join(names, ",")
	for _, want := range []string{"__fentry__", "printk", ".rodata.entry.str1.1", ".text.helper"} {
		if !strings.Contains(got, want) {
			t.Errorf("relocations of .text.entry = %s, missing %s", got, want)
		}
	}
	if r := text.Relocs[0]; r.Offset != 1 || r.Type != elf.R_X86_64_PLT32 || r.Sym.Name != "__fentry__" || r.Addend != -4 {
		t.Errorf("first relocation = %+v, want PLT32 __fentry__-4 at 1", r)
	}
	h := f.Section(".text.helper")
	if h == nil || f.Covering(h, 0) == nil || f.Covering(h, 0).Name != "helper" {
		t.Errorf("Covering(.text.helper, 0) did not find helper")
	}
}

func TestRoundTrip(t *testing.T) {
	in := compile(t, fixture)
	f, err := Open(in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "rt.o")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := Open(out)
	if err != nil {
		t.Fatalf("re-reading written object: %v", err)
	}
	compareFiles(t, f, g)
	run(t, "readelf", "-Wa", out)
	run(t, "ld", "-r", "-o", filepath.Join(t.TempDir(), "x.o"), out)
	ef, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	checkLocalsFirst(t, ef)
}

func compareFiles(t *testing.T, a, b *File) {
	t.Helper()
	for _, sa := range a.Sections {
		if sa.Type == elf.SHT_NULL || linksInternal(sa.Type) {
			continue
		}
		sb := b.Section(sa.Name)
		if sb == nil {
			t.Errorf("section %s lost", sa.Name)
			continue
		}
		if !bytes.Equal(sa.Data, sb.Data) || sa.Size != sb.Size || sa.Flags != sb.Flags {
			t.Errorf("section %s differs after round trip", sa.Name)
		}
		if len(sa.Relocs) != len(sb.Relocs) {
			t.Errorf("section %s: %d relocations, after round trip %d", sa.Name, len(sa.Relocs), len(sb.Relocs))
			continue
		}
		for i, ra := range sa.Relocs {
			rb := sb.Relocs[i]
			if ra.Offset != rb.Offset || ra.Type != rb.Type || ra.Addend != rb.Addend || ra.Sym.Name != rb.Sym.Name {
				t.Errorf("section %s relocation %d: %+v vs %+v", sa.Name, i, ra, rb)
			}
		}
	}
}

func checkLocalsFirst(t *testing.T, ef *elf.File) {
	t.Helper()
	symtab := ef.SectionByType(elf.SHT_SYMTAB)
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range syms { // syms[i] is symbol index i+1
		local := elf.ST_BIND(s.Info) == elf.STB_LOCAL
		if local != (uint32(i+1) < symtab.Info) {
			t.Errorf("symbol %d %q local=%v but sh_info=%d", i+1, s.Name, local, symtab.Info)
		}
	}
}

func TestMalformed(t *testing.T) {
	good, err := os.ReadFile(compile(t, fixture))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"garbage":   bytes.Repeat([]byte("not an elf file "), 64),
		"truncated": good[:len(good)/2],
		"header":    good[:70],
		"bad-shoff": corrupt(good, 40, 0xff),
		"bad-shnum": corrupt(good, 60, 0xff),
	}
	for i := 64; i < len(good); i += len(good) / 97 {
		cases["flip-"+string(rune('a'+i%26))+strings.Repeat("x", i%7)] = corrupt(good, i, 0xa5)
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("bad-"+name+".o", data)
			if err != nil && !strings.Contains(err.Error(), "bad-"+name+".o") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	for _, name := range []string{"empty", "garbage", "truncated", "header"} {
		if _, err := Parse(name, cases[name]); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.o")); err == nil || !strings.Contains(err.Error(), "missing.o") {
		t.Errorf("Open(missing) = %v", err)
	}
}

func corrupt(data []byte, at int, x byte) []byte {
	out := append([]byte(nil), data...)
	for i := at; i < at+8 && i < len(out); i++ {
		out[i] ^= x
	}
	return out
}

func TestClone(t *testing.T) {
	sec := &Section{Index: 1, Name: ".text.f", Type: elf.SHT_PROGBITS, Data: []byte{0xc3}, Size: 1}
	sym := &Symbol{Index: 1, Name: "f", Type: elf.STT_FUNC, Section: sec, Size: 1}
	sec.Relocs = []Reloc{{Offset: 0, Type: elf.R_X86_64_PLT32, Sym: sym, Addend: -4}}
	f := &File{Name: "x.o", Sections: []*Section{nil, sec}, Symbols: []*Symbol{nil, sym}}

	c := f.Clone()
	c.Symbols[1].Name = "g"
	c.Sections[1].Relocs[0].Addend = 0
	if sym.Name != "f" || sec.Relocs[0].Addend != -4 {
		t.Fatalf("changing the clone changed the original: %q, addend %d", sym.Name, sec.Relocs[0].Addend)
	}
	if c.Symbols[1].Section != c.Sections[1] || c.Sections[1].Relocs[0].Sym != c.Symbols[1] {
		t.Errorf("the clone's symbols and relocations point into the original")
	}
}
