package differ

import (
	"debug/elf"
	"fmt"
	"io"

	"github.com/livesplice/livesplice/elfobj"
)

// extractor holds the state of one Extract call.
type extractor struct {
	pre, post *object
	prefix    string
	plans     []*plan
	out       Extraction
}

func newExtractor(pre, post *elfobj.File, prefix string) *extractor {
	return &extractor{pre: newObject(pre), post: newObject(post), prefix: prefix}
}

// plan checks and plans every function of cs.
func (x *extractor) plan(cs *Changeset) error {
	extracted := map[string]bool{}
	for _, fn := range append(append([]Function{}, cs.Changed...), cs.Added...) {
		extracted[fn.Name] = true
	}
	var refused []Refusal
	for _, fn := range cs.Changed {
		refused = append(refused, x.planChanged(fn.Name, extracted)...)
	}
	for _, fn := range cs.Added {
		refused = append(refused, x.planAdded(fn.Name, extracted)...)
	}
	if len(refused) > 0 {
		return &RefusedError{Refused: refused}
	}
	for _, p := range x.plans {
		for _, fx := range p.fixups {
			fx.Symbol = x.prefix + p.fn.Name
			x.out.Fixups = append(x.out.Fixups, fx)
		}
	}
	return nil
}

func (x *extractor) planChanged(name string, extracted map[string]bool) []Refusal {
	preFn, postFn := single(x.pre.funcs[name]), single(x.post.funcs[name])
	if preFn == nil || postFn == nil {
		return []Refusal{{Symbol: name, Reason: fmt.Sprintf("%s is not a single STT_FUNC symbol in both pre (%d) and post (%d)",
			name, len(x.pre.funcs[name]), len(x.post.funcs[name]))}}
	}
	if rs := kindRefusals(x.pre, x.post, postFn, true); len(rs) > 0 {
		return rs
	}
	site, rs := siteCheck(x.pre, preFn)
	p, prs := planFunction(x.pre, x.post, postFn, extracted)
	rs = append(rs, prs...)
	if len(rs) > 0 {
		return rs
	}
	preCode, preRelocs, err := x.pre.maskedCode(preFn)
	if err != nil {
		return []Refusal{{Symbol: name, Section: preFn.Section.Name, Reason: err.Error()}}
	}
	x.plans = append(x.plans, p)
	x.out.Functions = append(x.out.Functions, Replacement{
		Name: name, NewSymbol: x.prefix + name, PreSize: int(preFn.Size), NewSize: int(postFn.Size),
		SiteOffset: site, PreCode: preCode, PreRelocs: namedRelocs(x.pre, preFn, preRelocs),
	})
	return nil
}

func (x *extractor) planAdded(name string, extracted map[string]bool) []Refusal {
	postFn := single(x.post.funcs[name])
	if postFn == nil {
		return []Refusal{{Symbol: name, Reason: fmt.Sprintf("%s is not a single STT_FUNC symbol in post (%d)", name, len(x.post.funcs[name]))}}
	}
	if rs := kindRefusals(x.pre, x.post, postFn, false); len(rs) > 0 {
		return rs
	}
	p, rs := planFunction(x.pre, x.post, postFn, extracted)
	if len(rs) == 0 {
		x.plans = append(x.plans, p)
	}
	return rs
}

// namedRelocs names the targets of pre relocations for run-pre matching.
func namedRelocs(o *object, fn *elfobj.Symbol, relocs []elfobj.Reloc) []Reloc {
	out := make([]Reloc, 0, len(relocs))
	for _, r := range relocs {
		nr := Reloc{Offset: r.Offset - fn.Value, Type: r.Type, Addend: r.Addend}
		t := o.resolve(fn.Section, r)
		switch t.kind {
		case tNamed:
			nr.Symbol, nr.Addend = t.sym.Name, t.delta
		case tContent, tAnon:
			nr.Symbol, nr.Addend = t.sec.Name, t.base
		}
		out = append(out, nr)
	}
	return out
}

// image is the object being written.
type image struct {
	f        *elfobj.File
	funcSyms map[string]*elfobj.Symbol // local symbol of each extracted function
	textSyms map[string]*elfobj.Symbol // section symbol of each extracted function
	copies   map[*elfobj.Section]*contentCopy
}

// contentCopy is the copy of the referenced units of one content section.
type contentCopy struct {
	sec    *elfobj.Section
	sym    *elfobj.Symbol
	starts map[int64]int64 // source unit start -> start in the copy
}

func (x *extractor) write(w io.Writer) error {
	img := &image{
		f:        &elfobj.File{Name: "extracted replacement object", Sections: []*elfobj.Section{{}}, Symbols: []*elfobj.Symbol{{}}},
		funcSyms: map[string]*elfobj.Symbol{},
		textSyms: map[string]*elfobj.Symbol{},
		copies:   map[*elfobj.Section]*contentCopy{},
	}
	texts := make([]*elfobj.Section, len(x.plans))
	for i, p := range x.plans {
		texts[i] = img.addFunction(p, x.prefix)
	}
	for i, p := range x.plans {
		if err := img.addRelocs(texts[i], p); err != nil {
			return err
		}
	}
	img.addORC(x.plans)
	img.f.Sections = append(img.f.Sections, &elfobj.Section{Name: ".note.GNU-stack", Type: elf.SHT_PROGBITS, Addralign: 1})
	return img.f.Write(w)
}

func (img *image) addSection(s *elfobj.Section) *elfobj.Symbol {
	img.f.Sections = append(img.f.Sections, s)
	sym := &elfobj.Symbol{Name: s.Name, Bind: elf.STB_LOCAL, Type: elf.STT_SECTION, Section: s}
	img.f.Symbols = append(img.f.Symbols, sym)
	return sym
}

func (img *image) addFunction(p *plan, prefix string) *elfobj.Section {
	sec := &elfobj.Section{Name: ".text." + prefix + p.fn.Name, Type: elf.SHT_PROGBITS,
		Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addralign: max(p.fn.Section.Addralign, 1),
		Data: p.code, Size: uint64(len(p.code))}
	img.textSyms[p.fn.Name] = img.addSection(sec)
	local := &elfobj.Symbol{Name: p.fn.Name, Bind: elf.STB_LOCAL, Type: elf.STT_FUNC, Section: sec, Size: sec.Size}
	global := &elfobj.Symbol{Name: prefix + p.fn.Name, Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC, Section: sec, Size: sec.Size}
	img.f.Symbols = append(img.f.Symbols, local, global)
	img.funcSyms[p.fn.Name] = local
	return sec
}

func (img *image) addRelocs(sec *elfobj.Section, p *plan) error {
	for _, lr := range p.local {
		r := elfobj.Reloc{Offset: lr.offset, Type: lr.typ}
		if lr.content != nil {
			c := img.copyContent(lr.content)
			r.Sym, r.Addend = c.sym, c.unit(lr.content, lr.start, lr.end)+lr.addend
		} else {
			sym, ok := img.funcSyms[lr.fn]
			if !ok {
				return fmt.Errorf("%s: relocation at %#x to %s, which is not extracted", p.fn.Name, lr.offset, lr.fn)
			}
			r.Sym, r.Addend = sym, lr.addend
		}
		sec.Relocs = append(sec.Relocs, r)
	}
	return nil
}

func (img *image) copyContent(src *elfobj.Section) *contentCopy {
	if c, ok := img.copies[src]; ok {
		return c
	}
	sec := &elfobj.Section{Name: src.Name, Type: elf.SHT_PROGBITS, Flags: src.Flags, Addralign: src.Addralign, Entsize: src.Entsize}
	c := &contentCopy{sec: sec, starts: map[int64]int64{}}
	c.sym = img.addSection(sec)
	img.copies[src] = c
	return c
}

// unit copies src[start:end) once and returns where it starts in the copy.
func (c *contentCopy) unit(src *elfobj.Section, start, end int64) int64 {
	if at, ok := c.starts[start]; ok {
		return at
	}
	for c.sec.Addralign > 1 && uint64(len(c.sec.Data))%c.sec.Addralign != 0 {
		c.sec.Data = append(c.sec.Data, 0)
	}
	at := int64(len(c.sec.Data))
	c.sec.Data = append(c.sec.Data, src.Data[start:end]...)
	c.sec.Size = uint64(len(c.sec.Data))
	c.starts[start] = at
	return at
}

// addORC carries the ORC entries of the extracted functions, so the
// unwinder can walk through replacement code.
func (img *image) addORC(plans []*plan) {
	ip := &elfobj.Section{Name: ".orc_unwind_ip", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC, Addralign: 4, Entsize: 4}
	unwind := &elfobj.Section{Name: ".orc_unwind", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC, Addralign: 2, Entsize: orcSize}
	for _, p := range plans {
		for _, e := range p.orc {
			ip.Relocs = append(ip.Relocs, elfobj.Reloc{Offset: uint64(len(ip.Data)), Type: elf.R_X86_64_PC32,
				Sym: img.textSyms[p.fn.Name], Addend: int64(e.off)})
			ip.Data = append(ip.Data, 0, 0, 0, 0)
			unwind.Data = append(unwind.Data, e.entry...)
		}
	}
	if len(ip.Data) == 0 {
		return
	}
	ip.Size, unwind.Size = uint64(len(ip.Data)), uint64(len(unwind.Data))
	img.f.Sections = append(img.f.Sections, unwind, ip)
}
