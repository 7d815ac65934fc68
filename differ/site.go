package differ

import (
	"debug/elf"
	"fmt"
	"strings"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// fentryOffset returns 5 when fn starts with the fentry call (e8 with a
// relocation to __fentry__ at offset 1), else 0.
func fentryOffset(o *object, fn *elfobj.Symbol) int {
	code, err := o.code(fn)
	if err != nil || len(code) < pack.JumpLen || code[0] != 0xe8 {
		return 0
	}
	for _, r := range fn.Section.RelocsIn(fn.Value+1, fn.Value+2) {
		if r.Offset == fn.Value+1 && r.Sym != nil && r.Sym.Name == "__fentry__" &&
			(r.Type == elf.R_X86_64_PLT32 || r.Type == elf.R_X86_64_PC32) {
			return pack.JumpLen
		}
	}
	return 0
}

// siteCheck decides, from the pre object, where the loader may write its
// jump into fn, and refuses when that is unsafe.
func siteCheck(pre *object, fn *elfobj.Symbol) (int, []Refusal) {
	site := fentryOffset(pre, fn)
	ref := func(format string, args ...any) Refusal {
		return Refusal{Kind: RefuseSite, Symbol: fn.Name, Section: fn.Section.Name,
			Reason: fmt.Sprintf(format, args...) + fmt.Sprintf(" (patch site [%d, %d) of the pre function)", site, site+pack.JumpLen)}
	}
	if fn.Size < uint64(site+pack.JumpLen) {
		return site, []Refusal{ref("function is %d bytes: too short for the %d-byte jump", fn.Size, pack.JumpLen)}
	}
	rs := stopPathCheck(fn, ref)
	rs = append(rs, relocsInWindow(pre, fn, site, ref)...)
	rs = append(rs, entriesInWindow(pre, fn, site, ref)...)
	rs = append(rs, branchesIntoWindow(pre, fn, site, ref)...)
	return site, rs
}

type refuser func(format string, args ...any) Refusal

// relocsInWindow refuses relocation fields overlapping the site unless the
// loader can compute their bytes in the running kernel (loader.relocate):
// PC32/PLT32/32S/64 fields of a decodable instruction whose target is a
// named symbol, which the pre relocation carries as pack.Reloc.Symbol for a
// kallsyms lookup. Strings, merged constants and anonymous data have no
// name there.
func relocsInWindow(o *object, fn *elfobj.Symbol, site int, ref refuser) []Refusal {
	var rs []Refusal
	lo, hi := fn.Value+uint64(site), fn.Value+uint64(site+pack.JumpLen)
	for _, r := range fn.Section.RelocsIn(fn.Value, fn.Value+fn.Size) {
		end := r.Offset + uint64(elfobj.FieldSize(r.Type))
		if end <= lo || r.Offset >= hi || r.Type == elf.R_X86_64_NONE {
			continue
		}
		at := r.Offset - fn.Value
		if _, decoded := o.insnAt(fn.Section, r.Offset); !decoded || !siteRelocType(r.Type) {
			rs = append(rs, ref("relocation %v to %s at offset %#x overlaps the patch site: the loader computes only PC32, PLT32, 32S and 64 fields of decodable instructions there",
				r.Type, symName(r.Sym), at))
			continue
		}
		if why := unnamedTarget(o.resolve(fn.Section, r)); why != "" {
			rs = append(rs, ref("relocation %v at offset %#x overlaps the patch site and the loader cannot compute the bytes at the patch site: they reference %s",
				r.Type, at, why))
		}
	}
	return rs
}

// siteRelocType reports the relocation types loader.relocate computes.
func siteRelocType(t elf.R_X86_64) bool {
	return t == elf.R_X86_64_PC32 || t == elf.R_X86_64_PLT32 || t == elf.R_X86_64_32S || t == elf.R_X86_64_64
}

// unnamedTarget says what a relocation target is when the loader cannot
// look it up by name in kallsyms, or "" for a named symbol.
func unnamedTarget(t target) string {
	switch t.kind {
	case tNamed:
		return ""
	case tContent:
		start, end, ok := contentUnit(t.sec, t.off)
		switch {
		case ok && isStrings(t.sec):
			return fmt.Sprintf("a string (%q in %s), which has no symbol in the running kernel",
				strings.TrimSuffix(string(t.sec.Data[start:end]), "\x00"), t.sec.Name)
		case ok:
			return fmt.Sprintf("a merged constant in %s, which has no symbol in the running kernel", t.sec.Name)
		}
		return fmt.Sprintf("a place outside %s", t.sec.Name)
	case tAnon:
		return fmt.Sprintf("anonymous data at %s%+#x, which no symbol covers", t.sec.Name, t.base)
	}
	return "no symbol"
}

// entriesInWindow refuses special-section entries (jump labels,
// alternatives, static calls, exception and bug entries, thunk sites, ...)
// that point into the site: the kernel rewrites or looks up those bytes.
func entriesInWindow(o *object, fn *elfobj.Symbol, site int, ref refuser) []Refusal {
	var rs []Refusal
	lo, hi := fn.Value+uint64(site), fn.Value+uint64(site+pack.JumpLen)
	for _, in := range o.incomingTo(fn.Section) {
		name := in.from.Name
		use, _ := special(name)
		inWindow := in.off >= lo && in.off < hi
		strictly := in.off > lo && in.off < hi
		switch {
		case use == notSpecial && strictly:
			rs = append(rs, ref("a reference from %s+%#x lands inside the patch site at offset %#x", name, in.r.Offset, in.off-fn.Value))
		case use != notSpecial && inWindow && !windowMetadata(name):
			rs = append(rs, ref("%s entry points into the patch site at offset %#x: the kernel rewrites or looks up those bytes", name, in.off-fn.Value))
		}
	}
	return rs
}

// branchesIntoWindow decodes fn and refuses branches that land strictly
// inside the site (they would land in the middle of the jump).
func branchesIntoWindow(o *object, fn *elfobj.Symbol, site int, ref refuser) []Refusal {
	var rs []Refusal
	lo, hi := int64(fn.Value)+int64(site), int64(fn.Value)+int64(site+pack.JumpLen)
	for _, in := range o.decode(fn.Section) {
		if uint64(in.off) < fn.Value || uint64(in.off) >= fn.Value+fn.Size {
			continue
		}
		if in.bad {
			return append(rs, ref("cannot decode the instruction at offset %#x, so cannot prove no branch lands in the patch site", uint64(in.off)-fn.Value))
		}
		rel, ok := relTarget(in)
		if !ok || hasRelocIn(fn.Section, in) {
			continue // relocated branches are judged as references
		}
		if rel > lo && rel < hi {
			rs = append(rs, ref("%v at offset %#x branches inside the patch site (to offset %#x)", in.op, uint64(in.off)-fn.Value, rel-int64(fn.Value)))
		}
	}
	return rs
}

// relTarget returns the section offset a relative branch goes to.
func relTarget(in insn) (int64, bool) {
	return int64(in.off+in.len) + int64(in.rel), in.hasRel
}

func hasRelocIn(sec *elfobj.Section, in insn) bool {
	return len(sec.RelocsIn(uint64(in.off), uint64(in.off+in.len))) > 0
}

func symName(s *elfobj.Symbol) string {
	if s == nil {
		return "(no symbol)"
	}
	return s.Name
}
