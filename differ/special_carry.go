package differ

import (
	"debug/elf"
	"fmt"
	"sort"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// Carrying special sections.
//
// The kernel's module loader processes a module's special sections before
// the module's init runs: apply_relocate_add, then module_finalize
// (alternatives, paravirt sites, lock prefixes, retpoline and return thunk
// sites, the exception table, the bug table, ORC), then at
// MODULE_STATE_COMING jump labels and static call sites. So whatever those
// entries reference in the running kernel must be resolved by the module
// loader itself, as a plain ELF relocation against an exported symbol,
// not by the fix-ups our helper applies in init.
//
// Relocation policy (ExtractOptions.Exported set):
//   - references to extracted code, and copied strings, stay inside the
//     object (local relocations);
//   - every other reference to the running kernel whose target is exported
//     by vmlinux (Module.symvers) and is not a static of the object
//     becomes an ELF relocation against the undefined symbol: the module
//     loader resolves it, modpost versions it. That holds for .text too,
//     because the loader rewrites some .text bytes itself (alternatives,
//     thunk sites) before init could fix them up;
//   - references from .text to statics and unexported symbols stay
//     fix-ups, applied by the helper at init with text_poke. A fix-up
//     inside an instruction the loader rewrites (an alternative's original
//     instruction) refuses the function; for optional entries (thunk
//     sites, static call sites, paravirt sites) the entry is dropped
//     instead and the unpatched instruction stays;
//   - a reference from a required entry (bug, exception, alternative, jump
//     label) to an unexported kernel symbol refuses the function.
//
// __mcount_loc is never carried: the replacement's fentry call is a NOP
// (the old function's fentry site still serves ftrace, and registering a
// second site would make ftrace patch our code behind the helper).

// entryRef is one relocation of a carried entry (or of a piece of
// .altinstr_replacement), with its target decided.
type entryRef struct {
	off    uint64 // within the entry or piece
	typ    elf.R_X86_64
	kind   refKind
	fn     string          // refFunc: extracted function
	sec    *elfobj.Section // refContent: source section; refRepl: source .altinstr_replacement
	start  int64           // refContent: unit start; refRepl: piece start
	end    int64           // refContent: unit end; refRepl: piece end
	name   string          // refKernel: kernel symbol
	data   *elfobj.Symbol  // refData: carried post data symbol
	addend int64           // relative to fn, unit start, piece start, or kernel symbol
}

type refKind int

const (
	refFunc refKind = iota
	refContent
	refKernel
	refRepl
	refData
)

// carriedEntry is one entry copied into the written object.
type carriedEntry struct {
	sec   *elfobj.Section // source section
	start uint64
	size  int
	refs  []entryRef
	pars  []byte // .orc_unwind entry parallel to an .orc_unwind_ip one
}

// piece is a range of .altinstr_replacement an alternative uses.
type piece struct {
	start, end int64
	refs       []entryRef
}

// codeRange is a range of a function the module loader rewrites.
type codeRange struct {
	lo, hi uint64
	sec    string
	kind   string
	entry  *carriedEntry
}

// refuse builds a refusal for p's function.
func (p *plan) refusal(kind RefusalKind, format string, args ...any) Refusal {
	return Refusal{Kind: kind, Symbol: p.fn.Name, Section: p.fn.Section.Name, Reason: fmt.Sprintf(format, args...)}
}

// planSpecial decides the special-section entries of plan p and turns its
// fix-ups to exported symbols into ELF relocations.
func (x *extractor) planSpecial(p *plan) []Refusal {
	if x.opts.EntrySizes == nil {
		return x.planLegacy(p)
	}
	var rs []Refusal
	var ranges []codeRange
	names := make([]string, 0, len(carriedSections))
	for n := range carriedSections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		sec := x.post.f.Section(name)
		if sec == nil {
			continue
		}
		c := carriedSections[name]
		size := x.opts.EntrySizes[name]
		if size <= 0 || len(sec.Data)%size != 0 {
			if x.anchoredIn(sec, p) {
				rs = append(rs, p.refusal(RefuseSpecial, "has %s entries, but the target kernel's entry size for %s is unknown or does not divide the section (%d bytes, entry %d)",
					name, name, len(sec.Data), size))
			}
			continue
		}
		for start := uint64(0); start+uint64(size) <= uint64(len(sec.Data)); start += uint64(size) {
			e, why := x.planEntry(p, sec, start, size)
			if e == nil && why == "" {
				continue // another function's entry
			}
			if why != "" {
				if c.required {
					rs = append(rs, p.refusal(RefuseReference, "%s", why))
				}
				continue
			}
			if name == ".orc_unwind_ip" {
				unwind := x.post.f.Section(".orc_unwind")
				us := x.opts.EntrySizes[".orc_unwind"]
				idx := start / uint64(size)
				b, ok := []byte(nil), false
				if unwind != nil && us > 0 {
					b, ok = unwind.Bytes(idx*uint64(us), uint64(us))
				}
				if !ok {
					rs = append(rs, p.refusal(RefuseSpecial, "ORC entry %d has no .orc_unwind counterpart of %d bytes", idx, us))
					continue
				}
				e.pars = b
			}
			p.entries = append(p.entries, e)
			if c.rewrites {
				if lo, hi, ok := x.rewrittenRange(p, name, e); ok {
					ranges = append(ranges, codeRange{lo: lo, hi: hi, sec: name, kind: c.what, entry: e})
				}
			}
		}
	}
	x.linkExported(p)
	// A fix-up applied at init must not sit in bytes the loader rewrites.
	drop := map[*carriedEntry]bool{}
	for _, fx := range p.fixups {
		k := uint64(elfobj.FieldSize(fx.Type))
		for _, cr := range ranges {
			if fx.Offset+k <= cr.lo || fx.Offset >= cr.hi {
				continue
			}
			if carriedSections[cr.sec].required {
				rs = append(rs, p.refusal(RefuseReference, "reference to %s at offset %#x lies in an instruction the module loader rewrites (%s in %s) before the update's init can fix it up: %s is not exported",
					fx.Target, fx.Offset, cr.kind, cr.sec, fx.Target))
			} else {
				drop[cr.entry] = true
			}
		}
	}
	if len(drop) > 0 {
		kept := p.entries[:0]
		for _, e := range p.entries {
			if !drop[e] {
				kept = append(kept, e)
			}
		}
		p.entries = kept
	}
	return rs
}

// anchoredIn reports whether sec has an entry relocation pointing into p's
// function.
func (x *extractor) anchoredIn(sec *elfobj.Section, p *plan) bool {
	for _, r := range sec.Relocs {
		if fn, _, ok := x.codeTarget(r); ok && fn == p.fn.Name {
			return true
		}
	}
	return false
}

// planEntry returns the entry of sec at start when its anchor (the field
// at offset 0) points into p's function: nil, "" for other functions'
// entries, or a refusal reason.
func (x *extractor) planEntry(p *plan, sec *elfobj.Section, start uint64, size int) (*carriedEntry, string) {
	relocs := sec.RelocsIn(start, start+uint64(size))
	anchored := false
	for _, r := range relocs {
		if r.Offset == start {
			fn, _, ok := x.codeTarget(r)
			anchored = ok && fn == p.fn.Name
		}
	}
	if !anchored {
		return nil, ""
	}
	c := carriedSections[sec.Name]
	e := &carriedEntry{sec: sec, start: start, size: size}
	for _, r := range relocs {
		ref, why := x.entryTarget(p, sec, r, c.what)
		if why != "" {
			return nil, why
		}
		ref.off = r.Offset - start
		if ref.kind == refRepl {
			if why := x.planPiece(p, sec, start, ref); why != "" {
				return nil, why
			}
		}
		e.refs = append(e.refs, ref)
	}
	return e, ""
}

// codeTarget returns the extracted function a data relocation points
// into, and the offset in it (which may be its end).
func (x *extractor) codeTarget(r elfobj.Reloc) (string, int64, bool) {
	if r.Sym == nil || r.Sym.Section == nil {
		return "", 0, false
	}
	v := int64(r.Sym.Value) + r.Addend
	var best *elfobj.Symbol
	for _, q := range x.bySection[r.Sym.Section] {
		lo, hi := int64(q.Value), int64(q.Value+q.Size)
		if v >= lo && v < hi {
			best = q
			break
		}
		if v == hi && best == nil {
			best = q
		}
	}
	if best == nil {
		return "", 0, false
	}
	return best.Name, v - int64(best.Value), true
}

// entryTarget decides where a relocation of a carried entry (or of
// replacement code) of plan p points; it returns a refusal reason when the
// module loader could not resolve it. Data p carries (a pr_debug's
// descriptor, whose key a jump label names) is referenced in the copy.
func (x *extractor) entryTarget(p *plan, sec *elfobj.Section, r elfobj.Reloc, what string) (entryRef, string) {
	ref := entryRef{typ: r.Type}
	if r.Sym == nil {
		return ref, fmt.Sprintf("%s in %s at %#x has a relocation without a symbol", what, sec.Name, r.Offset)
	}
	if fn, off, ok := x.codeTarget(r); ok {
		ref.kind, ref.fn, ref.addend = refFunc, fn, off
		return ref, ""
	}
	if s := r.Sym.Section; s != nil {
		v := int64(r.Sym.Value) + r.Addend
		switch {
		case s.Name == ".altinstr_replacement" && sec.Name == ".altinstructions":
			ref.kind, ref.sec, ref.start = refRepl, s, v
			return ref, ""
		case isContent(s):
			start, end, ok := contentUnit(s, v)
			if !ok {
				return ref, fmt.Sprintf("%s in %s points outside %s", what, sec.Name, s.Name)
			}
			ref.kind, ref.sec, ref.start, ref.end, ref.addend = refContent, s, start, end, v-start
			return ref, ""
		case s.Executable() && !x.post.isCodeOfKernel(s, v):
			return ref, fmt.Sprintf("%s in %s points at %s%+#x, code that is not extracted and has no symbol", what, sec.Name, s.Name, v)
		}
	}
	t := x.post.resolve(sec, r)
	if t.kind != tNamed {
		return ref, fmt.Sprintf("%s in %s references %s", what, sec.Name, unnamedTarget(t))
	}
	if p.dataSeen[t.sym] {
		ref.kind, ref.data, ref.addend = refData, t.sym, t.delta
		return ref, ""
	}
	if !x.exportable(t.sym) && sec.Name == "__jump_table" && x.livepatchable(t.sym) {
		// A key defined elsewhere in vmlinux (a tracepoint's): the
		// kernel's module loader resolves it by name before it sets up
		// jump labels.
		ref.kind, ref.name, ref.addend = refKernel, pack.LivepatchSymbol(t.sym.Name), t.delta
		return ref, ""
	}
	if !x.exportable(t.sym) {
		kind := "target " + t.sym.Name
		switch sec.Name {
		case "__jump_table":
			kind = "key " + t.sym.Name
		case ".static_call_sites":
			kind = "key " + t.sym.Name
		}
		return ref, fmt.Sprintf("%s %s is not exported: the module loader cannot resolve it before the update's init runs", what, kind)
	}
	ref.kind, ref.name, ref.addend = refKernel, t.sym.Name, t.delta
	return ref, ""
}

// isCodeOfKernel reports whether offset v of executable section s lies
// in a named function of the object (code of the running kernel the
// entry may name).
func (o *object) isCodeOfKernel(s *elfobj.Section, v int64) bool {
	return o.coveringAt(s, v) != nil
}

// exportable reports whether the module loader resolves a reference to
// sym: vmlinux exports it and it is not a static of this object.
func (x *extractor) exportable(sym *elfobj.Symbol) bool {
	if x.opts.Exported == nil || !x.opts.Exported[sym.Name] {
		return false
	}
	return sym.Section == nil || sym.Bind == elf.STB_GLOBAL || sym.Bind == elf.STB_WEAK
}

// livepatchable reports whether the kernel's livepatch relocations can
// resolve a reference to sym at load: a global defined in another object
// of vmlinux (undefined here), looked up by name in kallsyms. Statics of
// the object are not: their position among same-named kallsyms symbols is
// not known at build time.
func (x *extractor) livepatchable(sym *elfobj.Symbol) bool {
	return x.opts.Exported != nil && x.opts.Object == pack.Vmlinux && sym.Section == nil && sym.Name != ""
}

// planPiece plans the .altinstr_replacement bytes an alternative uses:
// replacementlen (at the target kernel's offset in struct alt_instr) bytes
// from the entry's replacement.
func (x *extractor) planPiece(p *plan, alt *elfobj.Section, start uint64, ref entryRef) string {
	lenOff, ok := x.opts.EntrySizes["alt_instr.replacementlen"]
	if !ok {
		return "the target kernel's offset of alt_instr.replacementlen is unknown"
	}
	b, ok := alt.Bytes(start+uint64(lenOff), 1)
	if !ok {
		return fmt.Sprintf("alternative at %#x is cut short", start)
	}
	end := ref.start + int64(b[0])
	if _, ok := x.pieces[ref.start]; ok {
		return ""
	}
	if ref.start < 0 || end > int64(len(ref.sec.Data)) {
		return fmt.Sprintf("alternative replacement [%#x, %#x) lies outside .altinstr_replacement", ref.start, end)
	}
	pc := &piece{start: ref.start, end: end}
	for _, r := range ref.sec.RelocsIn(uint64(ref.start), uint64(end)) {
		rr, why := x.entryTarget(p, ref.sec, r, "alternative replacement")
		if why != "" {
			return why
		}
		if rr.kind == refRepl {
			return "alternative replacement refers to other replacement code"
		}
		rr.off = r.Offset - uint64(ref.start)
		pc.refs = append(pc.refs, rr)
	}
	x.pieces[ref.start] = pc
	return ""
}

// rewrittenRange is the range of p's function the loader rewrites for
// entry e of section name.
func (x *extractor) rewrittenRange(p *plan, name string, e *carriedEntry) (uint64, uint64, bool) {
	if len(e.refs) == 0 || e.refs[0].off != 0 || e.refs[0].kind != refFunc {
		return 0, 0, false
	}
	at := uint64(e.refs[0].addend)
	var n uint64
	switch name {
	case ".altinstructions", ".parainstructions":
		key := "alt_instr.instrlen"
		if name == ".parainstructions" {
			key = "paravirt_patch_site.len"
		}
		off, ok := x.opts.EntrySizes[key]
		if !ok {
			return 0, 0, false
		}
		b, ok := e.sec.Bytes(e.start+uint64(off), 1)
		if !ok {
			return 0, 0, false
		}
		n = uint64(b[0])
	default:
		in, ok := x.post.insnAt(p.fn.Section, p.fn.Value+at)
		if !ok {
			return at, at + pack.JumpLen, true
		}
		n = uint64(in.len)
	}
	return at, at + n, true
}

// linkExported turns p's fix-ups to exported symbols into ELF relocations
// the module loader resolves.
func (x *extractor) linkExported(p *plan) {
	if x.opts.Exported == nil {
		return
	}
	kept := p.fixups[:0]
	for _, fx := range p.fixups {
		if sym := x.post.kernelSymbol(fx.Target); sym != nil && x.exportable(sym) {
			p.linked = append(p.linked, fx)
			continue
		}
		kept = append(kept, fx)
	}
	p.fixups = kept
}

// kernelSymbol returns the symbol a fix-up target names in the object: a
// defined one first (a static shadows an export of the same name).
func (o *object) kernelSymbol(name string) *elfobj.Symbol {
	var undef *elfobj.Symbol
	for _, s := range o.f.Symbols {
		if s == nil || s.Name != name || s.IsSection() {
			continue
		}
		if s.Section != nil {
			return s
		}
		undef = s
	}
	return undef
}

// planLegacy is Extract without the target's entry sizes: functions with
// entries it must carry are refused, the other entries dropped, ORC
// carried with entry sizes derived from the object itself.
func (x *extractor) planLegacy(p *plan) []Refusal {
	var rs []Refusal
	seen := map[string]bool{}
	for _, in := range x.post.incomingTo(p.fn.Section) {
		if in.off < p.fn.Value || in.off >= p.fn.Value+p.fn.Size {
			continue
		}
		if why := legacyRefusal(in.from.Name); why != "" && !seen[in.from.Name] {
			seen[in.from.Name] = true
			rs = append(rs, p.refusal(RefuseReference, "%s", why))
		}
	}
	ip, unwind := x.post.f.Section(".orc_unwind_ip"), x.post.f.Section(".orc_unwind")
	if ip == nil || unwind == nil || len(ip.Relocs) == 0 ||
		len(ip.Data)%len(ip.Relocs) != 0 || len(unwind.Data)%len(ip.Relocs) != 0 {
		return rs
	}
	ipSize, unwindSize := len(ip.Data)/len(ip.Relocs), len(unwind.Data)/len(ip.Relocs)
	for start := uint64(0); start+uint64(ipSize) <= uint64(len(ip.Data)); start += uint64(ipSize) {
		e, why := x.planEntry(p, ip, start, ipSize)
		if e == nil || why != "" {
			continue
		}
		b, ok := unwind.Bytes(start/uint64(ipSize)*uint64(unwindSize), uint64(unwindSize))
		if !ok {
			continue
		}
		e.pars = b
		p.entries = append(p.entries, e)
	}
	return rs
}
