package differ

import (
	"debug/elf"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
)

// handObject builds an object holding one function f with code, plus
// optional special-section entries pointing at f+off.
func handObject(code []byte, specials map[string]int64) (*elfobj.File, *elfobj.Symbol) {
	text := &elfobj.Section{Name: ".text.f", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR,
		Addralign: 16, Data: code, Size: uint64(len(code))}
	secSym := &elfobj.Symbol{Name: ".text.f", Type: elf.STT_SECTION, Section: text}
	fn := &elfobj.Symbol{Name: "f", Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC, Section: text, Size: uint64(len(code))}
	fentry := &elfobj.Symbol{Name: "__fentry__", Bind: elf.STB_GLOBAL}
	text.Relocs = []elfobj.Reloc{{Offset: 1, Type: elf.R_X86_64_PLT32, Sym: fentry, Addend: -4}}
	f := &elfobj.File{Name: "hand.o", Sections: []*elfobj.Section{{}, text}, Symbols: []*elfobj.Symbol{{}, secSym, fn, fentry}}
	for name, off := range specials {
		s := &elfobj.Section{Name: name, Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC, Data: make([]byte, 16), Size: 16,
			Relocs: []elfobj.Reloc{{Offset: 0, Type: elf.R_X86_64_PC32, Sym: secSym, Addend: off}}}
		f.Sections = append(f.Sections, s)
	}
	return f, fn
}

func TestSiteWindow(t *testing.T) {
	fentryNops := []byte{0xe8, 0, 0, 0, 0}
	body := func(b ...byte) []byte {
		return append(append(append([]byte{}, fentryNops...), b...), 0xc3, 0xcc, 0xcc, 0xcc, 0xcc)
	}
	tests := []struct {
		name     string
		code     []byte
		specials map[string]int64
		want     string // substring of a refusal; "" for none
	}{
		{name: "clean", code: body(0x31, 0xc0, 0x31, 0xc0, 0x90, 0x90)},
		{name: "loop-into-site", code: body(0x31, 0xc0, 0x31, 0xc0, 0xff, 0xc0, 0x75, 0xfa), want: "branches inside the patch site"},
		{name: "loop-to-site-start", code: body(0x31, 0xc0, 0x31, 0xc0, 0xff, 0xc0, 0x75, 0xf8)},
		{name: "jump-label", code: body(0x0f, 0x1f, 0x44, 0x00, 0x00, 0x90), specials: map[string]int64{"__jump_table": 5},
			want: "__jump_table entry points into the patch site"},
		{name: "orc-ok", code: body(0x55, 0x48, 0x89, 0xe5, 0x90, 0x90), specials: map[string]int64{".orc_unwind_ip": 6}},
		{name: "short", code: []byte{0xe8, 0, 0, 0, 0, 0xc3}, want: "too short"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, fn := handObject(tc.code, tc.specials)
			site, rs := siteCheck(newObject(f), fn)
			if site != 5 {
				t.Errorf("site = %d, want 5", site)
			}
			got := ""
			for _, r := range rs {
				got += r.Reason + "\n"
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("refusals = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpecialRefusals(t *testing.T) {
	code := []byte{0xe8, 0, 0, 0, 0, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3}
	f, fn := handObject(code, map[string]int64{"__ex_table": 8, ".return_sites": 11, ".smp_locks": 7})
	rs := specialRefusals(newObject(f), fn)
	if len(rs) != 1 || rs[0].Reason != "uses __ex_table (user access fixups): not supported by this cut" {
		t.Errorf("refusals = %+v, want only the __ex_table one", rs)
	}
}
