package module

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// A module whose __jump_table refers to a weak .klp.sym symbol comes out
// with that symbol in SHN_LIVEPATCH and its relocation in
// .klp.rela.vmlinux.__jump_table, flagged for the kernel's livepatch code;
// other relocations stay where they were.
func TestLivepatchSymbols(t *testing.T) {
	text := &elfobj.Section{Index: 1, Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addralign: 16, Data: make([]byte, 16), Size: 16}
	jt := &elfobj.Section{Index: 2, Name: "__jump_table", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_WRITE, Addralign: 8, Data: make([]byte, 16), Size: 16}
	fn := &elfobj.Symbol{Index: 1, Name: "f", Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC, Section: text, Size: 16}
	key := &elfobj.Symbol{Index: 2, Name: pack.LivepatchSymbol("__tracepoint_task_rename"), Bind: elf.STB_WEAK, Shndx: elf.SHN_UNDEF}
	jt.Relocs = []elfobj.Reloc{{Offset: 0, Type: elf.R_X86_64_PC32, Sym: fn}, {Offset: 8, Type: elf.R_X86_64_PC64, Sym: key, Addend: 8}}
	f := &elfobj.File{Name: "x.ko", Sections: []*elfobj.Section{nil, text, jt}, Symbols: []*elfobj.Symbol{{}, fn, key}}
	ko := filepath.Join(t.TempDir(), "x.ko")
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ko, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	names, err := livepatchSymbols(ko)
	if err != nil || len(names) != 1 || names[0] != "__tracepoint_task_rename" {
		t.Fatalf("livepatchSymbols = %q, %v; want __tracepoint_task_rename", names, err)
	}
	got, err := elfobj.Open(ko)
	if err != nil {
		t.Fatal(err)
	}
	sec := got.Section("__jump_table")
	if len(sec.Relocs) != 1 || sec.Relocs[0].Sym.Name != "f" || len(sec.Livepatch) != 1 || sec.Livepatch[0].Addend != 8 {
		t.Fatalf("__jump_table relocs %+v, livepatch %+v", sec.Relocs, sec.Livepatch)
	}
	if s := sec.Livepatch[0].Sym; s.Shndx != elfobj.SHNLivepatch || s.Bind != elf.STB_GLOBAL {
		t.Errorf("symbol %s: shndx %#x bind %v, want SHN_LIVEPATCH, GLOBAL", s.Name, s.Shndx, s.Bind)
	}
	out, err := exec.Command("readelf", "-SW", ko).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf: %v\n%s", err, out)
	}
	// The section carries SHF_RELA_LIVEPATCH (0x00100000): readelf shows
	// it as an OS-specific flag ("o").
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, ".klp.rela.vmlinux.__jump_table") {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, "RELA") || !strings.Contains(line, "AIo") {
		t.Errorf("no .klp.rela.vmlinux.__jump_table RELA section flagged AIo:\n%s", out)
	}

	// A module without livepatch symbols is not rewritten.
	before, _ := os.ReadFile(ko)
	if names, err := livepatchSymbols(ko); err != nil || names != nil {
		t.Errorf("second pass = %q, %v; want nothing to do", names, err)
	}
	if after, _ := os.ReadFile(ko); !bytes.Equal(before, after) {
		t.Errorf("a module without livepatch symbols was rewritten")
	}
}
