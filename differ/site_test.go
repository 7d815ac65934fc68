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
	// Carried sections (ExtractWith decides) and dropped ones refuse nothing here.
	f, fn := handObject(code, map[string]int64{"__ex_table": 8, ".return_sites": 11, ".smp_locks": 7, "__mcount_loc": 0})
	if rs := specialRefusals(newObject(f), fn); len(rs) != 0 {
		t.Errorf("refusals = %+v, want none", rs)
	}
	f, fn = handObject(code, map[string]int64{"__ex_table": 8, ".altinstr_aux": 7})
	rs := specialRefusals(newObject(f), fn)
	if len(rs) != 1 || !strings.Contains(rs[0].Reason, "uses .altinstr_aux") {
		t.Errorf("refusals = %+v, want only the .altinstr_aux one", rs)
	}
}

// TestSiteWindowRelocs checks which relocations the patch site may hold:
// PC32/PLT32/32S/64 to a named symbol (the loader looks the name up in
// kallsyms and computes the bytes), never to a string or anonymous data.
func TestSiteWindowRelocs(t *testing.T) {
	const (
		movImm32S = iota // 48 c7 c7 imm32: mov $sym, %rdi; field at 8
		movabs64         // 48 b8 imm64: movabs $sym, %rax; field at 7
		leaRIP           // 48 8d 3d rel32: lea sym(%rip), %rdi; field at 8
	)
	insns := map[int][]byte{
		movImm32S: {0x48, 0xc7, 0xc7, 0, 0, 0, 0},
		movabs64:  {0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0},
		leaRIP:    {0x48, 0x8d, 0x3d, 0, 0, 0, 0},
	}
	fields := map[int]uint64{movImm32S: 8, movabs64: 7, leaRIP: 8}
	tests := []struct {
		name    string
		insn    int
		typ     elf.R_X86_64
		target  string // extern, object, string, anon
		addend  int64
		want    string // substring of a refusal; "" for none
		preName string // with want == "": the name PreRelocs give the loader
		preAdd  int64
	}{
		{name: "32S-extern-function", insn: movImm32S, typ: elf.R_X86_64_32S, target: "extern", preName: "ext_ops"},
		{name: "32S-named-object-via-section", insn: movImm32S, typ: elf.R_X86_64_32S, target: "object", addend: 12,
			preName: "the_table", preAdd: 4},
		{name: "64-named-object-via-section", insn: movabs64, typ: elf.R_X86_64_64, target: "object", addend: 8,
			preName: "the_table", preAdd: 0},
		{name: "64-extern-function", insn: movabs64, typ: elf.R_X86_64_64, target: "extern", addend: 16, preName: "ext_ops", preAdd: 16},
		{name: "32S-string", insn: movImm32S, typ: elf.R_X86_64_32S, target: "string",
			want: `the loader cannot compute the bytes at the patch site: they reference a string ("hello %d\n" in .rodata.str1.1)`},
		{name: "64-string", insn: movabs64, typ: elf.R_X86_64_64, target: "string", addend: 10,
			want: `they reference a string ("world\n" in .rodata.str1.1)`},
		{name: "32S-anonymous-data", insn: movImm32S, typ: elf.R_X86_64_32S, target: "anon", addend: 2,
			want: "they reference anonymous data at .rodata.anon+0x2, which no symbol covers"},
		{name: "PC32-string", insn: leaRIP, typ: elf.R_X86_64_PC32, target: "string", addend: -4,
			want: "they reference a string"},
		{name: "PC32-named-object", insn: leaRIP, typ: elf.R_X86_64_PC32, target: "object", addend: 8 - 4,
			preName: "the_table", preAdd: -4},
		{name: "32-unsigned", insn: movImm32S, typ: elf.R_X86_64_32, target: "extern",
			want: "relocation R_X86_64_32 to ext_ops at offset 0x8 overlaps the patch site: the loader computes only PC32, PLT32, 32S and 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code := append([]byte{0xe8, 0, 0, 0, 0}, insns[tc.insn]...)
			code = append(code, 0xc3, 0xcc, 0xcc, 0xcc)
			f, fn := handObject(code, nil)
			f.Sections[1].Relocs = append(f.Sections[1].Relocs,
				elfobj.Reloc{Offset: fields[tc.insn], Type: tc.typ, Sym: windowTarget(f, tc.target), Addend: tc.addend})
			o := newObject(f)
			_, rs := siteCheck(o, fn)
			got := ""
			for _, r := range rs {
				got += r.Reason + "\n"
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("refusals = %q, want %q", got, tc.want)
			}
			if tc.want != "" {
				return
			}
			pre := namedRelocs(o, fn.Section, fn.Value, fn.Section.RelocsIn(fn.Value, fn.Value+fn.Size))
			if len(pre) != 2 || pre[1].Symbol != tc.preName || pre[1].Addend != tc.preAdd || pre[1].Type != tc.typ {
				t.Errorf("PreRelocs = %+v, want %s%+d for the loader's kallsyms lookup", pre, tc.preName, tc.preAdd)
			}
		})
	}
}

// windowTarget adds to f the symbol a site relocation points to: an
// undefined function, the section symbol of .data holding the_table
// (8 bytes at 8), a merged string section, or a .rodata section no symbol
// covers.
func windowTarget(f *elfobj.File, kind string) *elfobj.Symbol {
	add := func(sec *elfobj.Section, syms ...*elfobj.Symbol) {
		f.Sections = append(f.Sections, sec)
		f.Symbols = append(f.Symbols, syms...)
	}
	switch kind {
	case "extern":
		s := &elfobj.Symbol{Name: "ext_ops", Bind: elf.STB_GLOBAL}
		f.Symbols = append(f.Symbols, s)
		return s
	case "object":
		sec := &elfobj.Section{Name: ".data.tables", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_WRITE,
			Addralign: 8, Data: make([]byte, 24), Size: 24}
		secSym := &elfobj.Symbol{Name: sec.Name, Type: elf.STT_SECTION, Section: sec}
		add(sec, secSym, &elfobj.Symbol{Name: "the_table", Bind: elf.STB_LOCAL, Type: elf.STT_OBJECT, Section: sec, Value: 8, Size: 8})
		return secSym
	case "string":
		data := []byte("hello %d\n\x00world\n\x00")
		sec := &elfobj.Section{Name: ".rodata.str1.1", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_MERGE | elf.SHF_STRINGS,
			Addralign: 1, Entsize: 1, Data: data, Size: uint64(len(data))}
		lc := &elfobj.Symbol{Name: ".LC0", Type: elf.STT_NOTYPE, Section: sec}
		add(sec, lc)
		return lc
	case "anon":
		sec := &elfobj.Section{Name: ".rodata.anon", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC,
			Addralign: 8, Data: make([]byte, 16), Size: 16}
		secSym := &elfobj.Symbol{Name: sec.Name, Type: elf.STT_SECTION, Section: sec}
		add(sec, secSym)
		return secSym
	}
	panic(kind)
}

// Code other CPUs may run while the jump is written is refused by name
// (stop_machine's spin loop) or by section (NMI and entry code).
func TestStopPath(t *testing.T) {
	code := []byte{0xe8, 0, 0, 0, 0, 0x31, 0xc0, 0x31, 0xc0, 0x90, 0x90, 0xc3}
	tests := []struct {
		fn, sec string
		want    string // substring of a refusal; "" for none
	}{
		{"pipe_read", ".text.pipe_read", ""},
		{"default_idle", ".cpuidle.text", ""},
		{"multi_cpu_stop", ".text.multi_cpu_stop", "runs on the other CPUs while stop_machine writes the jump"},
		{"rcu_momentary_dyntick_idle", ".text.rcu_momentary_dyntick_idle", "its spin loop"},
		{"rcu_momentary_eqs", ".text.rcu_momentary_eqs", "its spin loop"},
		{"exc_nmi", ".noinstr.text", "is in .noinstr.text, code an NMI runs on any CPU"},
		{"entry_SYSCALL_64", ".entry.text", "is in .entry.text"},
	}
	for _, tc := range tests {
		t.Run(tc.fn, func(t *testing.T) {
			f, fn := handObject(code, nil)
			fn.Name, fn.Section.Name = tc.fn, tc.sec
			_, rs := siteCheck(newObject(f), fn)
			got := ""
			for _, r := range rs {
				if r.Kind != RefuseSite {
					t.Errorf("refusal kind %v, want %v", r.Kind, RefuseSite)
				}
				got += r.Reason + "\n"
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("refusals = %q, want %q", got, tc.want)
			}
		})
	}
}
