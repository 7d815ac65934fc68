package differ

import (
	"debug/elf"
	"fmt"
	"io"
	"sort"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// extractor holds the state of one Extract call.
type extractor struct {
	pre, post *object
	prefix    string
	opts      ExtractOptions
	plans     []*plan
	out       Extraction
	// bySection holds the extracted post functions by section, to find
	// what special-section entries point into.
	bySection  map[*elfobj.Section][]*elfobj.Symbol
	pieces     map[int64]*piece // .altinstr_replacement pieces by source start
	dataPolicy *dataPolicy      // new data functions may carry (newdata.go)
}

func newExtractor(pre, post *elfobj.File, opts ExtractOptions) *extractor {
	return &extractor{pre: newObject(pre), post: newObject(post), prefix: opts.Prefix, opts: opts,
		bySection: map[*elfobj.Section][]*elfobj.Symbol{}, pieces: map[int64]*piece{}}
}

// plan checks and plans every function of cs.
func (x *extractor) plan(cs *Changeset) error {
	x.dataPolicy = &dataPolicy{added: addedData(x.post, cs.AddedData), exportable: x.exportable, livepatchable: x.livepatchable}
	extracted := map[string]bool{}
	for _, fn := range append(append([]Function{}, cs.Changed...), cs.Added...) {
		extracted[fn.Name] = true
		if s := single(x.post.funcs[fn.Name]); s != nil {
			x.bySection[s.Section] = append(x.bySection[s.Section], s)
			for _, c := range x.post.coldParts(fn.Name) {
				x.bySection[c.Section] = append(x.bySection[c.Section], c)
			}
		}
	}
	extracted = extractedWithCold(x.post, extracted)
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
			fx.Symbol, fx.Offset = x.prefix+p.rootName(), fx.Offset+p.at
			x.out.Fixups = append(x.out.Fixups, fx)
		}
		for _, fx := range p.linked {
			fx.Symbol, fx.Offset = x.prefix+p.rootName(), fx.Offset+p.at
			x.out.Linked = append(x.out.Linked, fx)
		}
		for _, e := range p.entries {
			if x.out.Entries == nil {
				x.out.Entries = map[string]int{}
			}
			x.out.Entries[e.sec.Name]++
		}
	}
	return nil
}

func (x *extractor) planChanged(name string, extracted map[string]bool) []Refusal {
	preFn, postFn := single(x.pre.funcs[name]), single(x.post.funcs[name])
	if preFn == nil || postFn == nil {
		return []Refusal{{Kind: RefuseAmbiguous, Symbol: name, Reason: fmt.Sprintf("%s is not a single STT_FUNC symbol in both pre (%d) and post (%d)",
			name, len(x.pre.funcs[name]), len(x.post.funcs[name]))}}
	}
	if rs := kindRefusals(postFn, true); len(rs) > 0 {
		return rs
	}
	site, rs := siteCheck(x.pre, preFn)
	p, prs := x.planWithCold(postFn, extracted)
	if rs = append(rs, prs...); len(rs) > 0 {
		return rs
	}
	pre, err := x.preFunction(preFn)
	if err == nil {
		pre.Cold, err = preCold(x.pre, preFn, x.opts.EntrySizes)
	}
	if err != nil {
		return []Refusal{{Kind: RefuseOther, Symbol: name, Section: preFn.Section.Name, Reason: err.Error()}}
	}
	for i := range pre.Cold {
		pre.Cold[i].Object, pre.Cold[i].Source = pre.Object, pre.Source
	}
	x.plans = append(append(x.plans, p), p.parts...)
	pre.NewSymbol, pre.NewSize, pre.SiteOffset = x.prefix+name, int(p.size), site
	x.out.Functions = append(x.out.Functions, pre)
	return nil
}

// planWithCold plans post function fn and its cold parts, their special
// entries included.
func (x *extractor) planWithCold(fn *elfobj.Symbol, extracted map[string]bool) (*plan, []Refusal) {
	p, rs := planFunction(x.pre, x.post, fn, extracted, x.dataPolicy)
	if len(rs) > 0 {
		return p, rs
	}
	if rs = planCold(x.pre, x.post, p, extracted, x.dataPolicy); len(rs) > 0 {
		return p, rs
	}
	for _, q := range append([]*plan{p}, p.parts...) {
		rs = append(rs, x.planSpecial(q)...)
	}
	return p, rs
}

func (x *extractor) planAdded(name string, extracted map[string]bool) []Refusal {
	postFn := single(x.post.funcs[name])
	if postFn == nil {
		return []Refusal{{Kind: RefuseAmbiguous, Symbol: name, Reason: fmt.Sprintf("%s is not a single STT_FUNC symbol in post (%d)", name, len(x.post.funcs[name]))}}
	}
	if rs := kindRefusals(postFn, false); len(rs) > 0 {
		return rs
	}
	p, rs := x.planWithCold(postFn, extracted)
	if len(rs) == 0 {
		x.plans = append(append(x.plans, p), p.parts...)
	}
	return rs
}

// preFunction describes pre function fn for run-pre matching, placed in
// the object and source the options name.
func (x *extractor) preFunction(fn *elfobj.Symbol) (pack.Function, error) {
	f, err := preFunction(x.pre, fn, x.opts.EntrySizes)
	f.Object, f.Source = x.opts.Object, x.opts.Source
	return f, err
}

// namedRelocs names the targets of pre relocations for run-pre matching.
// Offsets are made relative to base, the start of the code in sec.
func namedRelocs(o *object, sec *elfobj.Section, base uint64, relocs []elfobj.Reloc) []pack.Reloc {
	out := make([]pack.Reloc, 0, len(relocs))
	for _, r := range relocs {
		nr := pack.Reloc{Offset: r.Offset - base, Type: r.Type, Addend: r.Addend}
		t := o.resolve(sec, r)
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
	textSyms map[string]textAt         // section of each extracted function, and where in it
	copies   map[*elfobj.Section]*contentCopy
	undefs   map[string]*elfobj.Symbol         // kernel symbols the module loader resolves
	dataSyms map[*elfobj.Symbol]*elfobj.Symbol // local symbol of each carried new datum, by post symbol
}

// textAt is where an extracted function is: at offset at of the section
// whose symbol is sym (a cold part follows its function in its section).
type textAt struct {
	sym *elfobj.Symbol
	at  uint64
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
		textSyms: map[string]textAt{},
		copies:   map[*elfobj.Section]*contentCopy{},
		undefs:   map[string]*elfobj.Symbol{},
		dataSyms: map[*elfobj.Symbol]*elfobj.Symbol{},
	}
	texts := make([]*elfobj.Section, len(x.plans))
	for i, p := range x.plans {
		texts[i] = img.addFunction(p, x.prefix)
	}
	data := img.addData(x.plans, x.prefix)
	if err := img.addDataRelocs(data); err != nil {
		return err
	}
	for i, p := range x.plans {
		if err := img.addRelocs(texts[i], p); err != nil {
			return err
		}
	}
	if err := img.addSpecial(x); err != nil {
		return err
	}
	img.f.Sections = append(img.f.Sections, &elfobj.Section{Name: ".note.GNU-stack", Type: elf.SHT_PROGBITS, Addralign: 1})
	for name := range img.undefs {
		if target, ok := pack.LivepatchTarget(name); ok {
			x.out.Livepatch = append(x.out.Livepatch, target)
		}
	}
	sort.Strings(x.out.Livepatch)
	return img.f.Write(w)
}

func (img *image) addSection(s *elfobj.Section) *elfobj.Symbol {
	img.f.Sections = append(img.f.Sections, s)
	sym := &elfobj.Symbol{Name: s.Name, Bind: elf.STB_LOCAL, Type: elf.STT_SECTION, Section: s}
	img.f.Symbols = append(img.f.Symbols, sym)
	return sym
}

// addFunction writes p's code: a function in a section of its own, with
// a local symbol of its name and a global one of the prefixed name that
// covers its cold parts too; a cold part after its root's code, at p.at,
// padded with int3, with a local symbol. It returns the section.
func (img *image) addFunction(p *plan, prefix string) *elfobj.Section {
	if p.root != nil {
		root := img.textSyms[p.root.fn.Name].sym
		sec := root.Section
		for uint64(len(sec.Data)) < p.at {
			sec.Data = append(sec.Data, 0xcc)
		}
		sec.Data = append(sec.Data, p.code...)
		sec.Size = uint64(len(sec.Data))
		img.textSyms[p.fn.Name] = textAt{sym: root, at: p.at}
		local := &elfobj.Symbol{Name: p.fn.Name, Bind: elf.STB_LOCAL, Type: elf.STT_FUNC, Section: sec, Value: p.at, Size: uint64(len(p.code))}
		img.f.Symbols = append(img.f.Symbols, local)
		img.funcSyms[p.fn.Name] = local
		return sec
	}
	sec := &elfobj.Section{Name: ".text." + prefix + p.fn.Name, Type: elf.SHT_PROGBITS,
		Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addralign: max(p.fn.Section.Addralign, 1),
		Data: append([]byte(nil), p.code...), Size: uint64(len(p.code))}
	img.textSyms[p.fn.Name] = textAt{sym: img.addSection(sec)}
	local := &elfobj.Symbol{Name: p.fn.Name, Bind: elf.STB_LOCAL, Type: elf.STT_FUNC, Section: sec, Size: sec.Size}
	global := &elfobj.Symbol{Name: prefix + p.fn.Name, Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC, Section: sec, Size: p.size}
	img.f.Symbols = append(img.f.Symbols, local, global)
	img.funcSyms[p.fn.Name] = local
	return sec
}

// addRelocs writes p's relocations into sec, its root's section for a
// cold part (at p.at).
func (img *image) addRelocs(sec *elfobj.Section, p *plan) error {
	n := len(sec.Relocs)
	if err := img.appendRelocs(sec, p.local, p.linked); err != nil {
		return fmt.Errorf("%s: %w", p.fn.Name, err)
	}
	for i := n; i < len(sec.Relocs); i++ {
		sec.Relocs[i].Offset += p.at
	}
	return nil
}

// appendRelocs adds to sec the relocations inside the object (local) and
// those against exported kernel symbols (linked).
func (img *image) appendRelocs(sec *elfobj.Section, local []localReloc, linked []pack.Fixup) error {
	for _, lr := range local {
		r, err := img.localReloc(lr)
		if err != nil {
			return err
		}
		sec.Relocs = append(sec.Relocs, r)
	}
	for _, fx := range linked {
		sec.Relocs = append(sec.Relocs, elfobj.Reloc{Offset: fx.Offset, Type: fx.Type, Sym: img.undef(fx.Target), Addend: fx.Addend})
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

// addSpecial writes the carried special-section entries, section by
// section in a fixed order, with their relocations, and the
// .altinstr_replacement pieces the alternatives use.
func (img *image) addSpecial(x *extractor) error {
	bySec := map[string][]*carriedEntry{}
	var names []string
	for _, p := range x.plans {
		for _, e := range p.entries {
			if _, ok := bySec[e.sec.Name]; !ok {
				names = append(names, e.sec.Name)
			}
			bySec[e.sec.Name] = append(bySec[e.sec.Name], e)
		}
	}
	sort.Strings(names)
	var repl *elfobj.Section
	var replSym *elfobj.Symbol
	replAt := map[int64]int64{}
	piece := func(start int64) (int64, error) {
		if at, ok := replAt[start]; ok {
			return at, nil
		}
		pc, ok := x.pieces[start]
		if !ok {
			return 0, fmt.Errorf(".altinstr_replacement piece at %#x not planned", start)
		}
		if repl == nil {
			src := x.post.f.Section(".altinstr_replacement")
			repl = &elfobj.Section{Name: src.Name, Type: elf.SHT_PROGBITS, Flags: src.Flags, Addralign: max(src.Addralign, 1)}
			replSym = img.addSection(repl)
		}
		at := int64(len(repl.Data))
		code := append([]byte(nil), src(x, start, pc.end)...)
		for _, r := range pc.refs {
			zeroField(code, r.off, r.typ)
		}
		for _, r := range pc.refs {
			rel, err := img.entryReloc(r, uint64(at)+r.off, nil)
			if err != nil {
				return 0, err
			}
			repl.Relocs = append(repl.Relocs, rel)
		}
		repl.Data = append(repl.Data, code...)
		repl.Size = uint64(len(repl.Data))
		replAt[start] = at
		return at, nil
	}
	var unwind *elfobj.Section
	for _, name := range names {
		es := bySec[name]
		src := es[0].sec
		out := &elfobj.Section{Name: name, Type: src.Type, Flags: src.Flags, Addralign: max(src.Addralign, 1), Entsize: src.Entsize}
		img.addSection(out)
		if name == ".orc_unwind_ip" {
			u := x.post.f.Section(".orc_unwind")
			unwind = &elfobj.Section{Name: u.Name, Type: u.Type, Flags: u.Flags, Addralign: max(u.Addralign, 1), Entsize: u.Entsize}
		}
		for _, e := range es {
			at := uint64(len(out.Data))
			b, _ := e.sec.Bytes(e.start, uint64(e.size))
			b = append([]byte(nil), b...)
			for _, r := range e.refs {
				zeroField(b, r.off, r.typ)
			}
			for _, r := range e.refs {
				var replStart *int64
				if r.kind == refRepl {
					pa, err := piece(r.start)
					if err != nil {
						return err
					}
					replStart = &pa
				}
				rel, err := img.entryReloc(r, at+r.off, replStart)
				if err != nil {
					return err
				}
				if r.kind == refRepl {
					rel.Sym = replSym
				}
				out.Relocs = append(out.Relocs, rel)
			}
			out.Data = append(out.Data, b...)
			if unwind != nil && name == ".orc_unwind_ip" {
				unwind.Data = append(unwind.Data, e.pars...)
			}
		}
		out.Size = uint64(len(out.Data))
	}
	if unwind != nil {
		unwind.Size = uint64(len(unwind.Data))
		img.addSection(unwind)
	}
	return nil
}

// src returns bytes [start, end) of the post .altinstr_replacement.
func src(x *extractor, start, end int64) []byte {
	b, _ := x.post.f.Section(".altinstr_replacement").Bytes(uint64(start), uint64(end-start))
	return b
}

// entryReloc is the written relocation of one carried reference at off.
func (img *image) entryReloc(r entryRef, off uint64, replStart *int64) (elfobj.Reloc, error) {
	rel := elfobj.Reloc{Offset: off, Type: r.typ}
	switch r.kind {
	case refFunc:
		t, ok := img.textSyms[r.fn]
		if !ok {
			return rel, fmt.Errorf("special entry refers to %s, which is not extracted", r.fn)
		}
		rel.Sym, rel.Addend = t.sym, int64(t.at)+r.addend
	case refContent:
		c := img.copyContent(r.sec)
		rel.Sym, rel.Addend = c.sym, c.unit(r.sec, r.start, r.end)+r.addend
	case refKernel:
		rel.Sym, rel.Addend = img.undef(r.name), r.addend
	case refData:
		sym, ok := img.dataSyms[r.data]
		if !ok {
			return rel, fmt.Errorf("special entry refers to data %s, which is not carried", r.data.Name)
		}
		rel.Sym, rel.Addend = sym, r.addend
	case refRepl:
		if replStart == nil {
			return rel, fmt.Errorf("replacement code refers to other replacement code")
		}
		rel.Addend = *replStart
	}
	return rel, nil
}

// undef returns the undefined global symbol name, added once.
func (img *image) undef(name string) *elfobj.Symbol {
	if s, ok := img.undefs[name]; ok {
		return s
	}
	s := &elfobj.Symbol{Name: name, Bind: elf.STB_GLOBAL, Type: elf.STT_NOTYPE, Shndx: elf.SHN_UNDEF}
	if _, ok := pack.LivepatchTarget(name); ok {
		// Weak, so that modpost leaves it alone; module.Build turns it
		// into a livepatch symbol the kernel resolves.
		s.Bind = elf.STB_WEAK
	}
	img.f.Symbols = append(img.f.Symbols, s)
	img.undefs[name] = s
	return s
}
