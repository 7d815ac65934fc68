package differ

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// Extraction describes the object Extract wrote.
type Extraction struct {
	Functions []pack.Function // one per Changed function
	Fixups    []pack.Fixup    // references to the running kernel, applied by the module at load
	// Linked are references to symbols vmlinux exports, left in the
	// object as ELF relocations against undefined symbols: the kernel's
	// module loader resolves them (ExtractWith with Exported only).
	Linked []pack.Fixup
	// Entries counts the special-section entries carried, by section.
	Entries map[string]int
	// Anchors are pre functions the update does not replace, whose code
	// locates statics only the replacement refers to (anchors.go).
	Anchors []pack.Function
	// Livepatch are the vmlinux symbols the object references through
	// pack.LivepatchSymbol (special_carry.go), sorted.
	Livepatch []string
}

// ExtractOptions configure ExtractWith.
type ExtractOptions struct {
	// Object and Source say where the functions live in the running
	// kernel (pack.Vmlinux or a module name) and which compiled object
	// they come from (relative to the source tree): the Object and Source
	// of every pack.Function returned.
	Object, Source string
	// Prefix makes the object's global symbols unique (e.g. "ls0_").
	Prefix string
	// EntrySizes are the target kernel's special-section entry sizes and
	// field offsets, from module.EntrySizes. Without them, functions with
	// __bug_table, __ex_table, .altinstructions or __jump_table entries are
	// refused and the optional entries dropped.
	EntrySizes map[string]int
	// Exported are the symbols vmlinux exports (module.Exported): what the
	// module loader can resolve. References to them become ELF
	// relocations; without the set every reference is a fix-up and
	// entries that reference the kernel are refused or dropped.
	Exported map[string]bool
}

// RefusedError is returned by Extract when the changeset cannot be shipped.
type RefusedError struct{ Refused []Refusal }

func (e *RefusedError) Error() string {
	parts := make([]string, len(e.Refused))
	for i, r := range e.Refused {
		parts[i] = fmt.Sprintf("%s (%s): %s", r.Symbol, r.Section, r.Reason)
	}
	return fmt.Sprintf("%d refused: %s", len(e.Refused), strings.Join(parts, "; "))
}

// nopFentry replaces the fentry call in replacement code.
var nopFentry = [pack.JumpLen]byte{0x0f, 0x1f, 0x44, 0x00, 0x00}

// plan is how one post function goes into the written object.
type plan struct {
	fn     *elfobj.Symbol
	code   []byte
	local  []localReloc
	fixups []pack.Fixup // Symbol left empty, filled with the NewSymbol
	// linked are references to exported kernel symbols written as ELF
	// relocations, resolved by the module loader (Symbol left empty).
	linked  []pack.Fixup
	entries []*carriedEntry // special-section entries carried (special_carry.go)
	// data is the new data (Changeset.AddedData) the function needs,
	// directly or through other new data (newdata.go).
	data     []*carriedData
	dataSeen map[*elfobj.Symbol]bool
	// parts are the function's cold parts, written after it in its
	// section (cold.go); a part has its root and its offset there. size
	// is the function's size with its parts.
	parts []*plan
	root  *plan
	at    uint64
	size  uint64
}

// rootName is the name of the function whose section p is written in.
func (p *plan) rootName() string {
	if p.root != nil {
		return p.root.fn.Name
	}
	return p.fn.Name
}

// localReloc is a relocation that stays in the written object, to an
// extracted function or to copied content.
type localReloc struct {
	offset  uint64
	typ     elf.R_X86_64
	fn      string          // target function name, or
	data    *elfobj.Symbol  // carried new data (post symbol), or
	content *elfobj.Section // source content section
	start   int64           // content unit [start, end) in the source section
	end     int64
	addend  int64 // relative to fn or data, or to start
}

// planFunction decides how post function fn is extracted; extracted names
// the functions that go into the object, pol the new data it may carry.
func planFunction(pre, post *object, fn *elfobj.Symbol, extracted map[string]bool, pol *dataPolicy) (*plan, []Refusal) {
	code, relocs, err := post.maskedCode(fn)
	if err != nil {
		return nil, []Refusal{{Kind: RefuseOther, Symbol: fn.Name, Section: fn.Section.Name, Reason: err.Error()}}
	}
	p := &plan{fn: fn, code: code, size: uint64(len(code))}
	rs := specialRefusals(post, fn)
	fentry := fentryOffset(post, fn) == pack.JumpLen
	if fentry {
		copy(p.code, nopFentry[:])
	}
	for _, r := range relocs {
		off := r.Offset - fn.Value
		if fentry && off == 1 {
			continue
		}
		if reason := p.addReloc(pre, post, r, off, extracted, pol); reason != "" {
			rs = append(rs, Refusal{Kind: RefuseReference, Symbol: fn.Name, Section: fn.Section.Name, Reason: reason})
		}
	}
	return p, rs
}

// addReloc records one relocation of the function; it returns a refusal
// reason when the reference cannot be shipped.
func (p *plan) addReloc(pre, post *object, r elfobj.Reloc, off uint64, extracted map[string]bool, pol *dataPolicy) string {
	if r.Type == elf.R_X86_64_NONE {
		// writes nothing: objtool's mark on a jump label it made a NOP,
		// which may name the start of a cold part minus 4
		return ""
	}
	t := post.resolve(p.fn.Section, r)
	switch t.kind {
	case tNone:
		return ""
	case tContent:
		start, end, ok := contentUnit(t.sec, t.off)
		if !ok {
			return fmt.Sprintf("relocation at offset %#x points outside %s", off, t.sec.Name)
		}
		p.local = append(p.local, localReloc{offset: off, typ: r.Type, content: t.sec, start: start, end: end, addend: t.base - start})
		return ""
	case tAnon:
		return fmt.Sprintf("references anonymous data at %s%+#x (no symbol covers it): cannot name it in the running kernel", t.sec.Name, t.base)
	}
	if t.sym.Type == elf.STT_FUNC && t.sym.Section != nil && extracted[t.sym.Name] && single(post.funcs[t.sym.Name]) == t.sym {
		p.local = append(p.local, localReloc{offset: off, typ: r.Type, fn: t.sym.Name, addend: t.delta})
		return ""
	}
	if pol.copies(t.sym) {
		p.local = append(p.local, localReloc{offset: off, typ: r.Type, data: t.sym, addend: t.delta})
		return strings.Join(p.carryData(post, t.sym, extracted, pol), "; ")
	}
	if !pack.FixupType(r.Type) {
		return fmt.Sprintf("relocation %v to %s at offset %#x: the module applies only PC32, PLT32, 32S and 64", r.Type, t.sym.Name, off)
	}
	if ins, ok := post.insnAt(p.fn.Section, r.Offset); ok && ins.gs && pol != nil && pol.livepatchable != nil {
		if pol.livepatchable(t.sym) && (pol.exportable == nil || !pol.exportable(t.sym)) {
			p.linked = append(p.linked, pack.Fixup{Offset: off, Type: r.Type, Target: pack.LivepatchSymbol(t.sym.Name), Addend: t.delta})
			return ""
		}
	}
	if t.sym.Section != nil && !definedIn(pre, t.sym.Name) {
		return fmt.Sprintf("references %s, which is not in the pre object (new or renamed static): the running kernel has no such symbol", t.sym.Name)
	}
	p.fixups = append(p.fixups, pack.Fixup{Offset: off, Type: r.Type, Target: t.sym.Name, Addend: t.delta})
	return ""
}

func definedIn(o *object, name string) bool {
	for _, s := range o.f.Symbols {
		if s != nil && s.Name == name && s.Section != nil && !s.IsSection() {
			return true
		}
	}
	return false
}

// specialRefusals refuses fn when special sections this cut does not
// carry have entries pointing into it.
func specialRefusals(o *object, fn *elfobj.Symbol) []Refusal {
	seen := map[string]bool{}
	var rs []Refusal
	for _, in := range o.incomingTo(fn.Section) {
		if in.off < fn.Value || in.off >= fn.Value+fn.Size {
			continue
		}
		use, reason := special(in.from.Name)
		if use == mustRefuse && !seen[in.from.Name] {
			seen[in.from.Name] = true
			rs = append(rs, Refusal{Kind: RefuseSpecial, Symbol: fn.Name, Section: fn.Section.Name, Reason: reason})
		}
	}
	return rs
}

// Extract writes an ELF relocatable object to w with the replacement code
// for cs (changed + added functions), ready to link into a kernel module,
// from the objects cs was made from. It carries, entry by entry, the
// special-section records of every function written (see special_carry.go
// for what goes where). A changeset with refusals is refused as a whole:
// shipping part of a patch is not shipping the patch.
func Extract(cs *Changeset, opts ExtractOptions, w io.Writer) (*Extraction, error) {
	if cs == nil || cs.pre == nil || cs.post == nil {
		return nil, errors.New("differ: Extract needs a changeset made by Diff")
	}
	pre, post := cs.pre, cs.post
	if len(cs.Refused) > 0 {
		return nil, fmt.Errorf("differ: extracting %s: %w", post.Name, &RefusedError{Refused: cs.Refused})
	}
	x := newExtractor(pre, post, opts)
	if err := x.plan(cs); err != nil {
		return nil, fmt.Errorf("differ: extracting %s: %w", post.Name, err)
	}
	anchors, err := x.anchors()
	if err != nil {
		return nil, fmt.Errorf("differ: extracting %s: %w", post.Name, err)
	}
	x.out.Anchors = anchors
	if err := x.write(w); err != nil {
		return nil, fmt.Errorf("differ: extracting %s: %w", post.Name, err)
	}
	return &x.out, nil
}
