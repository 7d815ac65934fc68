package differ

import (
	"debug/elf"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/livesplice/livesplice/elfobj"
	"golang.org/x/arch/x86/x86asm"
)

// object wraps one elfobj.File with the indexes the differ needs.
type object struct {
	f     *elfobj.File
	funcs map[string][]*elfobj.Symbol // defined STT_FUNC symbols by name
	cold  map[string][]*elfobj.Symbol // cold parts by parent name (cold.go)
	insns map[*elfobj.Section][]insn  // decoded code, filled lazily
	// decoded, when not nil, holds decoded code by its bytes, shared
	// with the other objects of one Diff: a section whose bytes did not
	// change is decoded once (insns are never modified once made).
	decoded  map[string][]insn
	incoming map[*elfobj.Section][]incoming
}

// insn is what the differ keeps of one decoded instruction (a whole
// x86asm.Inst is ten times the size, for every instruction of an object):
// its extent, opcode, relative branch displacement and %gs prefix; bad
// marks a byte x86asm could not decode.
type insn struct {
	off, len int32
	op       x86asm.Op
	rel      int32 // the x86asm.Rel argument, when hasRel
	hasRel   bool
	gs       bool // a %gs segment prefix: a per-CPU access
	bad      bool
}

func newInsn(off int, inst x86asm.Inst) insn {
	in := insn{off: int32(off), len: int32(inst.Len), op: inst.Op}
	for _, a := range inst.Args {
		if rel, ok := a.(x86asm.Rel); ok {
			in.rel, in.hasRel = int32(rel), true
			break
		}
	}
	for _, p := range inst.Prefix {
		if p == 0 {
			break
		}
		if p&0xff == x86asm.PrefixGS {
			in.gs = true
		}
	}
	return in
}

// incoming is a relocation in section from whose target lies in another
// (or the same) section at off.
type incoming struct {
	from *elfobj.Section
	r    elfobj.Reloc
	off  uint64
}

func newObject(f *elfobj.File) *object {
	o := &object{f: f, funcs: map[string][]*elfobj.Symbol{}, insns: map[*elfobj.Section][]insn{}}
	for _, s := range f.Symbols {
		if s != nil && s.Type == elf.STT_FUNC && s.Section != nil && s.Name != "" {
			o.funcs[s.Name] = append(o.funcs[s.Name], s)
		}
	}
	o.indexCold()
	return o
}

// code returns the bytes of function fn, or an error naming the file.
func (o *object) code(fn *elfobj.Symbol) ([]byte, error) {
	b, ok := fn.Section.Bytes(fn.Value, fn.Size)
	if !ok {
		return nil, fmt.Errorf("%s: function %s [%#x, +%d) lies outside section %s (%d bytes)",
			o.f.Name, fn.Name, fn.Value, fn.Size, fn.Section.Name, len(fn.Section.Data))
	}
	return b, nil
}

// maskedCode returns a copy of fn's bytes with every relocation field zeroed.
func (o *object) maskedCode(fn *elfobj.Symbol) ([]byte, []elfobj.Reloc, error) {
	b, err := o.code(fn)
	if err != nil {
		return nil, nil, err
	}
	out := append([]byte(nil), b...)
	relocs := fn.Section.RelocsIn(fn.Value, fn.Value+fn.Size)
	for _, r := range relocs {
		zeroField(out, r.Offset-fn.Value, r.Type)
	}
	return out, relocs, nil
}

func zeroField(b []byte, off uint64, t elf.R_X86_64) {
	for i := uint64(0); i < uint64(elfobj.FieldSize(t)) && off+i < uint64(len(b)); i++ {
		b[off+i] = 0
	}
}

// decode returns the instructions of an executable section, decoded
// linearly from its start.
func (o *object) decode(sec *elfobj.Section) []insn {
	if ins, ok := o.insns[sec]; ok {
		return ins
	}
	if ins, ok := o.decoded[string(sec.Data)]; ok {
		o.insns[sec] = ins
		return ins
	}
	var ins []insn
	for off := 0; off < len(sec.Data); {
		inst, err := x86asm.Decode(sec.Data[off:], 64)
		if err != nil || inst.Len == 0 {
			ins = append(ins, insn{off: int32(off), len: 1, bad: true})
			off++
			continue
		}
		ins = append(ins, newInsn(off, inst))
		off += inst.Len
	}
	o.insns[sec] = ins
	if o.decoded != nil {
		o.decoded[string(sec.Data)] = ins
	}
	return ins
}

// insnAt returns the decoded instruction of sec covering off.
func (o *object) insnAt(sec *elfobj.Section, off uint64) (insn, bool) {
	ins := o.decode(sec)
	i := sort.Search(len(ins), func(i int) bool { return uint64(ins[i].off+ins[i].len) > off })
	if i == len(ins) || uint64(ins[i].off) > off || ins[i].bad {
		return insn{}, false
	}
	return ins[i], true
}

// adjust is what a PC-relative relocation in code adds to its addend to
// get the target: the distance from the field to the end of its
// instruction (4 for a rel32 at the end, 5 when an imm8 follows, ...).
func (o *object) adjust(sec *elfobj.Section, r elfobj.Reloc) int64 {
	if !sec.Executable() || !elfobj.IsPCRelative(r.Type) {
		return 0
	}
	if in, ok := o.insnAt(sec, r.Offset); ok && uint64(in.off+in.len) >= r.Offset+uint64(elfobj.FieldSize(r.Type)) {
		return int64(uint64(in.off+in.len) - r.Offset)
	}
	return int64(elfobj.FieldSize(r.Type))
}

// targetKind classifies what a relocation points to.
type targetKind int

const (
	tNone    targetKind = iota // no symbol (R_X86_64_NONE)
	tNamed                     // a named symbol plus delta
	tContent                   // merged string / constant / __func__ content
	tAnon                      // data no symbol names
)

// target is a relocation's target as the differ sees it.
type target struct {
	kind  targetKind
	sym   *elfobj.Symbol  // tNamed: the naming symbol
	delta int64           // tNamed: addend relative to sym
	sec   *elfobj.Section // tContent, tAnon: the section holding the target
	off   int64           // tContent, tAnon: target offset in sec (addend + adjust)
	base  int64           // tContent, tAnon: sym.Value + addend (what S+A points at)
}

// key is t's comparison key, independent of layout; named targets by
// name, given by nameOf when not nil.
func (t target) key(nameOf func(*elfobj.Symbol) string) string {
	switch t.kind {
	case tNone:
		return "none"
	case tNamed:
		name := t.sym.Name
		if nameOf != nil {
			name = nameOf(t.sym)
		}
		return "sym:" + name + signed(t.delta)
	case tContent:
		return contentKey(t.sec, t.off) + signed(t.base-t.off)
	}
	return "anon:" + t.sec.Name + signed(t.base)
}

// signed formats v as %+d does.
func signed(v int64) string {
	if v >= 0 {
		return "+" + strconv.FormatInt(v, 10)
	}
	return strconv.FormatInt(v, 10)
}

// resolve names the target of r, a relocation in section sec.
func (o *object) resolve(sec *elfobj.Section, r elfobj.Reloc) target {
	s := r.Sym
	if s == nil {
		return target{kind: tNone}
	}
	if s.Section != nil && (isContent(s.Section) || isLocalLabel(s) || s.IsSection()) {
		base := int64(s.Value) + r.Addend
		off := base + o.adjust(sec, r)
		t := target{sec: s.Section, off: off, base: base}
		if isContent(s.Section) {
			t.kind = tContent
			return t
		}
		if cov := o.coveringAt(s.Section, off); cov != nil {
			return named(cov, base-int64(cov.Value))
		}
		t.kind = tAnon
		return t
	}
	return named(s, r.Addend)
}

func named(s *elfobj.Symbol, delta int64) target {
	return target{kind: tNamed, sym: s, delta: delta}
}

// coveringAt returns the symbol that names sec+off in the running kernel:
// the one whose extent covers off, or else a data object that ends at off
// (a loop's end pointer, &arr[ARRAY_SIZE(arr)], which GCC writes as the
// section plus the array's size).
func (o *object) coveringAt(sec *elfobj.Section, off int64) *elfobj.Symbol {
	if off < 0 {
		return nil
	}
	if s := o.f.Covering(sec, uint64(off)); s != nil {
		if isLocalLabel(s) {
			return nil
		}
		return s
	}
	for _, s := range o.f.Symbols {
		if s != nil && s.Section == sec && s.Type == elf.STT_OBJECT && s.Size > 0 &&
			s.Value+s.Size == uint64(off) && s.Name != "" && !isLocalLabel(s) {
			return s
		}
	}
	return nil
}

// isLocalLabel reports assembler-local labels (.LC0, .L123) that name no
// kernel symbol.
func isLocalLabel(s *elfobj.Symbol) bool {
	return s.Type != elf.STT_SECTION && strings.HasPrefix(s.Name, ".L")
}

// isStrings reports sections holding NUL-terminated strings the
// extraction copies: merged string sections and __func__-style names.
func isStrings(sec *elfobj.Section) bool {
	if sec.Flags&elf.SHF_MERGE != 0 && sec.Flags&elf.SHF_STRINGS != 0 {
		return true
	}
	for _, p := range []string{".rodata.__func__", ".rodata.__FUNCTION__", ".rodata.__PRETTY_FUNCTION__"} {
		if strings.HasPrefix(sec.Name, p) {
			return true
		}
	}
	return false
}

// isContent reports sections whose referenced content is compared and
// copied by value: strings and merged constants (.rodata.cst*).
func isContent(sec *elfobj.Section) bool {
	return sec.Alloc() && !sec.Executable() && sec.Type == elf.SHT_PROGBITS &&
		(isStrings(sec) || sec.Flags&elf.SHF_MERGE != 0)
}

// contentUnit returns the extent [start, end) of the string or constant
// covering off in a content section.
func contentUnit(sec *elfobj.Section, off int64) (int64, int64, bool) {
	size := int64(len(sec.Data))
	if off < 0 || off >= size {
		return 0, 0, false
	}
	if !isStrings(sec) {
		if sec.Entsize == 0 {
			return 0, size, true
		}
		es := int64(sec.Entsize)
		start := off / es * es
		return start, min(start+es, size), true
	}
	start := off
	for start > 0 && sec.Data[start-1] != 0 {
		start--
	}
	end := off
	for end < size && sec.Data[end] != 0 {
		end++
	}
	return start, min(end+1, size), true
}

func contentKey(sec *elfobj.Section, off int64) string {
	start, end, ok := contentUnit(sec, off)
	if !ok {
		return fmt.Sprintf("badcontent:%s%+d", sec.Name, off)
	}
	return fmt.Sprintf("content:%q@%d", sec.Data[start:end], off-start)
}

// incomingTo returns the relocations of allocated sections whose target
// lies in sec, with the target offset.
func (o *object) incomingTo(sec *elfobj.Section) []incoming {
	if o.incoming == nil {
		o.buildIncoming()
	}
	return o.incoming[sec]
}

func (o *object) buildIncoming() {
	o.incoming = map[*elfobj.Section][]incoming{}
	for _, from := range o.f.Sections {
		if from == nil || !from.Alloc() {
			continue
		}
		for _, r := range from.Relocs {
			if r.Sym == nil || r.Sym.Section == nil {
				continue
			}
			off := int64(r.Sym.Value) + r.Addend + o.adjust(from, r)
			if off < 0 {
				continue
			}
			o.incoming[r.Sym.Section] = append(o.incoming[r.Sym.Section], incoming{from: from, r: r, off: uint64(off)})
		}
	}
}
