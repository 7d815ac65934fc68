package differ

import (
	"debug/elf"
	"fmt"
	"sort"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// Carrying new data.
//
// Data only in post (Changeset.AddedData) has no copy in the running
// kernel: the extraction copies every such symbol an extracted function
// references, directly or through other carried data, into a section of
// its own (.data.PREFIXname, .bss.PREFIXname, .rodata.PREFIXname) with a
// local symbol of its name. References from code to it are local
// relocations. References inside it follow the relocation policy of
// special_carry.go: to extracted code, copied strings and other new data
// they stay local; to a symbol vmlinux exports they become ELF relocations
// against the undefined symbol; anything else (statics and unexported
// symbols of the running kernel) refuses the functions using the data,
// since the init-time fix-ups only cover .text.

// dataPolicy is what planFunction needs to carry new data.
type dataPolicy struct {
	added map[*elfobj.Symbol]bool // post symbols of Changeset.AddedData
	// exportable decides references from new data to kernel symbols;
	// nil in Diff, which does not know the exports: references to
	// global or undefined symbols are accepted there and decided by
	// ExtractWith.
	exportable func(*elfobj.Symbol) bool
	// livepatchable says which unexported symbols per-CPU references
	// may reach through livepatch relocations (special_carry.go); nil
	// in Diff.
	livepatchable func(*elfobj.Symbol) bool
}

// addedData finds the post symbols of list.
func addedData(post *object, list []Data) map[*elfobj.Symbol]bool {
	want := map[[2]string]bool{}
	for _, d := range list {
		want[[2]string{d.Name, d.Section}] = true
	}
	set := map[*elfobj.Symbol]bool{}
	for _, s := range post.f.Symbols {
		if s != nil && s.Section != nil && !s.IsSection() && s.Type != elf.STT_FUNC && want[[2]string{s.Name, s.Section.Name}] {
			set[s] = true
		}
	}
	return set
}

// copies reports whether references from extracted code to data symbol
// sym carry a copy of it into the update module: new data, and dynamic
// debug descriptors (__dyndbg), whose static key the replacement's
// pr_debug branches on: the copy registers under the update module's name
// and is controlled like any module's (dynamic_debug/control), starting
// disabled.
func (pol *dataPolicy) copies(sym *elfobj.Symbol) bool {
	return pol != nil && (pol.added[sym] || dyndbg(sym))
}

// dyndbg reports a dynamic debug descriptor.
func dyndbg(sym *elfobj.Symbol) bool {
	return sym.Section != nil && sym.Section.Name == "__dyndbg" && sym.Type == elf.STT_OBJECT
}

// readOnlyConstant reports a static of the object that never changes and
// points nowhere (a __func__ string, a const table): new data pointing to
// it gets its own copy.
func readOnlyConstant(sym *elfobj.Symbol) bool {
	sec := sym.Section
	return sec != nil && sym.Type == elf.STT_OBJECT && sec.Alloc() && sec.Flags&(elf.SHF_WRITE|elf.SHF_EXECINSTR) == 0 &&
		sec.Type == elf.SHT_PROGBITS && len(sec.RelocsIn(sym.Value, sym.Value+sym.Size)) == 0
}

// carriedData is one new data symbol copied into the written object.
type carriedData struct {
	sym    *elfobj.Symbol
	local  []localReloc // offsets within sym
	linked []pack.Fixup // references to exported kernel symbols, offsets within sym
}

// carryData plans sym and the new data it references into p; it returns
// the refusal reasons.
func (p *plan) carryData(post *object, sym *elfobj.Symbol, extracted map[string]bool, pol *dataPolicy) []string {
	if p.dataSeen == nil {
		p.dataSeen = map[*elfobj.Symbol]bool{}
	}
	if p.dataSeen[sym] {
		return nil
	}
	p.dataSeen[sym] = true
	sec := sym.Section
	if sec.Type != elf.SHT_NOBITS && sym.Value+sym.Size > uint64(len(sec.Data)) {
		return []string{fmt.Sprintf("new data %s lies outside %s", sym.Name, sec.Name)}
	}
	cd := &carriedData{sym: sym}
	p.data = append(p.data, cd)
	var reasons []string
	for _, r := range sec.Relocs {
		if r.Offset < sym.Value || r.Offset >= sym.Value+sym.Size {
			continue
		}
		off := r.Offset - sym.Value
		t := post.resolve(sec, r)
		switch t.kind {
		case tNone:
			continue
		case tContent:
			start, end, ok := contentUnit(t.sec, t.off)
			if !ok {
				reasons = append(reasons, fmt.Sprintf("new data %s: relocation at offset %#x points outside %s", sym.Name, off, t.sec.Name))
				continue
			}
			cd.local = append(cd.local, localReloc{offset: off, typ: r.Type, content: t.sec, start: start, end: end, addend: t.base - start})
			continue
		case tAnon:
			reasons = append(reasons, fmt.Sprintf("new data %s references anonymous data at %s%+#x (no symbol covers it)", sym.Name, t.sec.Name, t.base))
			continue
		}
		ts := t.sym
		switch {
		case ts.Type == elf.STT_FUNC && ts.Section != nil && extracted[ts.Name] && single(post.funcs[ts.Name]) == ts:
			cd.local = append(cd.local, localReloc{offset: off, typ: r.Type, fn: ts.Name, addend: t.delta})
		case pol.copies(ts) || readOnlyConstant(ts):
			cd.local = append(cd.local, localReloc{offset: off, typ: r.Type, data: ts, addend: t.delta})
			reasons = append(reasons, p.carryData(post, ts, extracted, pol)...)
		case pol.exportable == nil && (ts.Section == nil || ts.Bind == elf.STB_GLOBAL || ts.Bind == elf.STB_WEAK):
			// decided by ExtractWith, which knows the exports
			cd.linked = append(cd.linked, pack.Fixup{Offset: off, Type: r.Type, Target: ts.Name, Addend: t.delta})
		case pol.exportable != nil && pol.exportable(ts):
			cd.linked = append(cd.linked, pack.Fixup{Offset: off, Type: r.Type, Target: ts.Name, Addend: t.delta})
		default:
			reasons = append(reasons, fmt.Sprintf("new data %s references %s at offset %#x, a static or unexported symbol of the running kernel: "+
				"new data may point only to extracted code, strings, other new data and exported symbols (init-time fix-ups cover .text only)",
				sym.Name, ts.Name, off))
		}
	}
	return reasons
}

// dataSectionName is the name of the section a carried datum gets.
func dataSectionName(src *elfobj.Section, prefix, name string) string {
	switch {
	case src.Name == "__dyndbg":
		return src.Name // where the module loader looks for descriptors
	case src.Type == elf.SHT_NOBITS:
		return ".bss." + prefix + name
	case src.Flags&elf.SHF_WRITE != 0:
		return ".data." + prefix + name
	}
	return ".rodata." + prefix + name
}

// addData writes the new data the plans carry, each once, in name order,
// and returns them for addDataRelocs.
func (img *image) addData(plans []*plan, prefix string) []*carriedData {
	seen := map[*elfobj.Symbol]bool{}
	var all []*carriedData
	for _, p := range plans {
		for _, cd := range p.data {
			if !seen[cd.sym] {
				seen[cd.sym] = true
				all = append(all, cd)
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].sym.Name < all[j].sym.Name })
	for _, cd := range all {
		src, sym := cd.sym.Section, cd.sym
		sec := &elfobj.Section{Name: dataSectionName(src, prefix, sym.Name), Type: src.Type,
			Flags: src.Flags &^ (elf.SHF_GROUP | elf.SHF_MERGE | elf.SHF_STRINGS), Addralign: max(src.Addralign, 1), Size: sym.Size}
		if src.Type != elf.SHT_NOBITS {
			sec.Type = elf.SHT_PROGBITS
			sec.Data = append([]byte(nil), src.Data[sym.Value:sym.Value+sym.Size]...)
			for _, lr := range cd.local {
				zeroField(sec.Data, lr.offset, lr.typ)
			}
			for _, fx := range cd.linked {
				zeroField(sec.Data, fx.Offset, fx.Type)
			}
		}
		img.addSection(sec)
		local := &elfobj.Symbol{Name: sym.Name, Bind: elf.STB_LOCAL, Type: elf.STT_OBJECT, Section: sec, Size: sym.Size}
		img.f.Symbols = append(img.f.Symbols, local)
		img.dataSyms[sym] = local
	}
	return all
}

// addDataRelocs writes the relocations inside the carried data.
func (img *image) addDataRelocs(all []*carriedData) error {
	for _, cd := range all {
		if err := img.appendRelocs(img.dataSyms[cd.sym].Section, cd.local, cd.linked); err != nil {
			return fmt.Errorf("new data %s: %w", cd.sym.Name, err)
		}
	}
	return nil
}

// localReloc is the written relocation of lr.
func (img *image) localReloc(lr localReloc) (elfobj.Reloc, error) {
	r := elfobj.Reloc{Offset: lr.offset, Type: lr.typ}
	switch {
	case lr.content != nil:
		c := img.copyContent(lr.content)
		r.Sym, r.Addend = c.sym, c.unit(lr.content, lr.start, lr.end)+lr.addend
	case lr.data != nil:
		sym, ok := img.dataSyms[lr.data]
		if !ok {
			return r, fmt.Errorf("relocation at %#x to new data %s, which is not carried", lr.offset, lr.data.Name)
		}
		r.Sym, r.Addend = sym, lr.addend
	default:
		sym, ok := img.funcSyms[lr.fn]
		if !ok {
			return r, fmt.Errorf("relocation at %#x to %s, which is not extracted", lr.offset, lr.fn)
		}
		r.Sym, r.Addend = sym, lr.addend
	}
	return r, nil
}
