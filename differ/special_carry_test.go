package differ

import (
	"bytes"
	"debug/elf"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
)

// carryObject builds an object with one function f:
//
//	0: call __fentry__; 5: five NOPs (the patch site);
//	10: call hidden_fn (an alternative whose replacement calls exported_fn);
//	15: jmp __x86_return_thunk (a .return_sites entry)
func carryObject() *elfobj.File {
	code := []byte{0xe8, 0, 0, 0, 0, 0x90, 0x90, 0x90, 0x90, 0x90, 0xe8, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0, 0xcc}
	text := &elfobj.Section{Name: ".text.f", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR,
		Addralign: 16, Data: code, Size: uint64(len(code))}
	repl := &elfobj.Section{Name: ".altinstr_replacement", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR,
		Addralign: 1, Data: []byte{0xe8, 0, 0, 0, 0}, Size: 5}
	textSym := &elfobj.Symbol{Name: ".text.f", Type: elf.STT_SECTION, Section: text}
	replSym := &elfobj.Symbol{Name: ".altinstr_replacement", Type: elf.STT_SECTION, Section: repl}
	fn := &elfobj.Symbol{Name: "f", Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC, Section: text, Size: uint64(len(code))}
	und := func(name string) *elfobj.Symbol { return &elfobj.Symbol{Name: name, Bind: elf.STB_GLOBAL} }
	fentry, hidden, exported, thunk := und("__fentry__"), und("hidden_fn"), und("exported_fn"), und("__x86_return_thunk")
	text.Relocs = []elfobj.Reloc{
		{Offset: 1, Type: elf.R_X86_64_PLT32, Sym: fentry, Addend: -4},
		{Offset: 11, Type: elf.R_X86_64_PLT32, Sym: hidden, Addend: -4},
		{Offset: 16, Type: elf.R_X86_64_PLT32, Sym: thunk, Addend: -4},
	}
	repl.Relocs = []elfobj.Reloc{{Offset: 1, Type: elf.R_X86_64_PLT32, Sym: exported, Addend: -4}}
	alt := &elfobj.Section{Name: ".altinstructions", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC, Addralign: 1,
		Data: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0, 5, 5}, Size: 12,
		Relocs: []elfobj.Reloc{
			{Offset: 0, Type: elf.R_X86_64_PC32, Sym: textSym, Addend: 10},
			{Offset: 4, Type: elf.R_X86_64_PC32, Sym: replSym, Addend: 0},
		}}
	ret := &elfobj.Section{Name: ".return_sites", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC, Addralign: 1,
		Data: make([]byte, 4), Size: 4, Relocs: []elfobj.Reloc{{Offset: 0, Type: elf.R_X86_64_PC32, Sym: textSym, Addend: 15}}}
	return &elfobj.File{Name: "carry.o", Sections: []*elfobj.Section{{}, text, repl, alt, ret},
		Symbols: []*elfobj.Symbol{{}, textSym, replSym, fn, fentry, hidden, exported, thunk}}
}

// Entry sizes as a test kernel defines them; real ones come from
// module.EntrySizes.
var carrySizes = map[string]int{".altinstructions": 12, "alt_instr.instrlen": 10, "alt_instr.replacementlen": 11, ".return_sites": 4}

func TestCarryRules(t *testing.T) {
	cs := &Changeset{Changed: []Function{{Name: "f"}}}
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	tests := []struct {
		name     string
		exported map[string]bool
		refusal  string
		entries  map[string]int
		linked   []string
		fixups   []string
	}{
		{name: "fixup-in-alternative", exported: set("exported_fn"),
			refusal: "reference to hidden_fn at offset 0xb lies in an instruction the module loader rewrites (alternative in .altinstructions) before the update's init can fix it up: hidden_fn is not exported"},
		{name: "replacement-not-exported", exported: set("hidden_fn"),
			refusal: "alternative replacement target exported_fn is not exported: the module loader cannot resolve it before the update's init runs"},
		{name: "thunk-site-dropped", exported: set("hidden_fn", "exported_fn"),
			entries: map[string]int{".altinstructions": 1}, linked: []string{"hidden_fn"}, fixups: []string{"__x86_return_thunk"}},
		{name: "all-carried", exported: set("hidden_fn", "exported_fn", "__x86_return_thunk"),
			entries: map[string]int{".altinstructions": 1, ".return_sites": 1}, linked: []string{"hidden_fn", "__x86_return_thunk"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			cs.pre, cs.post = carryObject(), carryObject()
			x, err := Extract(cs, ExtractOptions{Prefix: "ls0_", EntrySizes: carrySizes, Exported: tc.exported}, &buf)
			if tc.refusal != "" {
				var re *RefusedError
				if !errors.As(err, &re) || len(re.Refused) != 1 || re.Refused[0].Reason != tc.refusal {
					t.Fatalf("err = %v, want the refusal %q", err, tc.refusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for sec, n := range tc.entries {
				if x.Entries[sec] != n {
					t.Errorf("%d %s entries, want %d (all: %v)", x.Entries[sec], sec, n, x.Entries)
				}
			}
			if len(x.Entries) != len(tc.entries) {
				t.Errorf("entries %v, want %v", x.Entries, tc.entries)
			}
			var linked, fixups []string
			for _, l := range x.Linked {
				linked = append(linked, l.Target)
			}
			for _, f := range x.Fixups {
				fixups = append(fixups, f.Target)
			}
			if !slices.Equal(linked, tc.linked) || !slices.Equal(fixups, tc.fixups) {
				t.Errorf("linked %v fixups %v, want %v and %v", linked, fixups, tc.linked, tc.fixups)
			}
			obj, err := elfobj.Parse("out.o", buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			repl := obj.Section(".altinstr_replacement")
			if repl == nil || !bytes.Equal(repl.Data, []byte{0xe8, 0, 0, 0, 0}) || len(repl.Relocs) != 1 ||
				repl.Relocs[0].Sym.Name != "exported_fn" || repl.Relocs[0].Sym.Section != nil {
				t.Errorf("replacement not copied with its relocation to the undefined exported_fn: %+v", repl)
			}
			alt := obj.Section(".altinstructions")
			if alt == nil || !bytes.Equal(alt.Data[8:], []byte{0x2a, 0, 5, 5}) ||
				!strings.HasPrefix(alt.Relocs[0].Sym.Name, ".text.ls0_f") || alt.Relocs[0].Addend != 10 {
				t.Errorf("alternative not carried field by field: %+v", alt)
			}
		})
	}
}
