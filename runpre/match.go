package runpre

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
)

// Match is a function's pre code found in the running kernel.
type Match struct {
	Name string
	Addr uint64
	// Len is how many bytes of running code the pre code matched.
	Len int
	// Code is the running code that was matched (Len bytes).
	Code []byte
	// Derived are the running addresses of the symbols the pre code
	// references, read from the running code, by name.
	Derived map[string]Derivation
	// Steps is the whole comparison, when Options.Trace was set.
	Steps []Step
	// Parts are the function's cold parts (pack.Function.Cold) as Find
	// found them, in the pack's order.
	Parts []*Match
	// offmap maps pre offsets of instructions to running offsets.
	offmap map[int]int
}

// RunOffset returns the running offset of the pre instruction at off.
func (m *Match) RunOffset(off int) (int, bool) {
	r, ok := m.offmap[off]
	return r, ok
}

// Derivation is one symbol address read from running code.
type Derivation struct {
	Symbol string // the name in the pack
	Addr   uint64
	At     int // pre offset of the instruction it was read from
}

// Step is one step of the comparison.
type Step struct {
	PreOff, RunOff int
	Pre, Run       []byte
	Rule           string // which rule accepted it, e.g. "same", "return thunk"
}

// Options tune matching.
type Options struct {
	// Trace records every step in Match.Steps (for --debug).
	Trace bool
}

// matcher holds the state of matching one function at one address.
type matcher struct {
	f      *pack.Function
	pre    []byte
	run    []byte
	base   uint64
	syms   *kallsyms.Table
	relocs []pack.Reloc // sorted by offset
	alts   map[int][]pack.Site
	labels map[int]pack.Site
	out    *Match
	// branches are internal jumps: pre target -> running target, checked
	// once every instruction is mapped.
	branches []branch
	trace    bool
	// known are addresses the code's references must agree with: for a
	// cold part, its function's and what the function's code refers to.
	known map[string]uint64
	// derivedKeys and offKeys journal what was added to Derived and the
	// offset map, so that a failed trial can be rolled back.
	derivedKeys []string
	offKeys     []int
}

type branch struct {
	preAt, runAt         int // the jump
	preTarget, runTarget int
}

// MatchAt compares f's pre code with the running code run, which starts at
// address addr (run may extend past the function). syms, when not nil, is
// used to cross-check derived addresses and to annotate disassembly.
func MatchAt(f *pack.Function, addr uint64, run []byte, syms *kallsyms.Table, opts Options) (*Match, error) {
	return matchAt(f, addr, run, syms, opts, nil)
}

// matchAt is MatchAt where the code's references to the symbols of known
// must go to those addresses.
func matchAt(f *pack.Function, addr uint64, run []byte, syms *kallsyms.Table, opts Options, known map[string]uint64) (*Match, error) {
	m := &matcher{
		f: f, pre: f.PreCode, run: run, base: addr, syms: syms, trace: opts.Trace, known: known,
		relocs: append([]pack.Reloc(nil), f.PreRelocs...),
		alts:   map[int][]pack.Site{}, labels: map[int]pack.Site{},
		out: &Match{Name: f.Name, Addr: addr, Derived: map[string]Derivation{}, offmap: map[int]int{}},
	}
	sort.Slice(m.relocs, func(i, j int) bool { return m.relocs[i].Offset < m.relocs[j].Offset })
	for _, s := range f.PreSites {
		if s.Offset < 0 || s.Len <= 0 || s.Offset+s.Len > len(m.pre) {
			return nil, fmt.Errorf("function %s: %s site at +%#x (%d bytes) lies outside its %d bytes of code", f.Name, s.Kind, s.Offset, s.Len, len(m.pre))
		}
		switch s.Kind {
		case pack.SiteAlternative:
			m.alts[s.Offset] = append(m.alts[s.Offset], s)
		case pack.SiteJumpLabel:
			m.labels[s.Offset] = s
		default:
			return nil, fmt.Errorf("function %s: unknown site kind %q at +%#x", f.Name, s.Kind, s.Offset)
		}
	}
	end, err := m.match()
	if err != nil {
		if mm, ok := err.(*Mismatch); ok {
			m.describe(mm)
			mm.Steps = m.out.Steps[:len(m.out.Steps):len(m.out.Steps)]
		}
		return nil, err
	}
	m.out.Len = end
	m.out.Code = run[:end]
	return m.out, nil
}

// match matches the whole function and checks its internal jumps.
func (m *matcher) match() (int, error) {
	end, err := m.seq(0, len(m.pre), 0, len(m.run), -1)
	if err != nil {
		return 0, err
	}
	for _, b := range m.branches {
		if got, ok := m.out.offmap[b.preTarget]; !ok || got != b.runTarget {
			return 0, m.mismatch(b.preAt, b.runAt, fmt.Sprintf("the jump goes to +%#x in the running code, but the pack's jump target +%#x corresponds to running +%s",
				b.runTarget, b.preTarget, offText(got, ok)))
		}
	}
	if d, ok := m.out.Derived[m.f.Name]; ok && d.Addr != m.base {
		return 0, m.mismatch(d.At, m.out.offmap[d.At], fmt.Sprintf("the code refers to %s itself at %#x, but it runs at %#x", m.f.Name, d.Addr, m.base))
	}
	return end, nil
}

func offText(off int, ok bool) string {
	if !ok {
		return "(no instruction)"
	}
	return fmt.Sprintf("%#x", off)
}

// seq matches pre[pl:ph] against the running code from ri, not past rh,
// and returns where the running side ends. The alternative at pre offset
// inAlt is matched as ordinary code (it is the one being tried).
func (m *matcher) seq(pl, ph, ri, rh, inAlt int) (int, error) {
	for pi := pl; pi < ph; {
		pin, err := decode(m.pre[pi:ph])
		if err != nil {
			return ri, m.mismatch(pi, ri, fmt.Sprintf("the pack's code does not decode: %v", err))
		}
		alts := m.alts[pi]
		if pi == inAlt {
			alts = nil
		}
		sp := m.special(pi, pin)
		if alts == nil && m.labels[pi].Kind == 0 && sp == nil && isNop(pin) {
			pi += pin.Len // padding; the running side skips its own below
			continue
		}
		// The running code may have more NOP padding here (alignment
		// after a shorter jump encoding): skip it one NOP at a time,
		// as long as the item does not match.
		for {
			sv := m.save()
			n, rn, err := m.item(pi, pin, sp, alts, ri, rh)
			if err == nil {
				m.setOffset(pi, ri)
				pi += n
				ri += rn
				break
			}
			m.restore(sv)
			in, derr := decode(m.run[ri:rh])
			if derr != nil || !isNop(in) {
				return ri, err
			}
			ri += in.Len
		}
	}
	return ri, nil
}

// item matches the pre item at pi: an alternative, a static branch, a
// special instruction (sp, when not nil) or an ordinary one. It returns
// the bytes it took on both sides.
func (m *matcher) item(pi int, pin x86asm.Inst, sp *special, alts []pack.Site, ri, rh int) (int, int, error) {
	switch {
	case alts != nil:
		return m.alternative(pi, ri, rh)
	case m.labels[pi].Kind != 0:
		return m.jumpLabel(pi, ri, rh)
	}
	var rn int
	var err error
	if sp != nil {
		rn, err = sp.match(m, sp, pi, pin, ri, rh)
	} else {
		rn, err = m.instruction(pi, pin, ri, rh)
	}
	return pin.Len, rn, err
}

// setOffset records that the pre instruction at pi runs at ri.
func (m *matcher) setOffset(pi, ri int) {
	if _, ok := m.out.offmap[pi]; !ok {
		m.offKeys = append(m.offKeys, pi)
	}
	m.out.offmap[pi] = ri
}

// skipNops skips the running NOPs from ri, not past rh.
func (m *matcher) skipNops(ri, rh int) int {
	for ri < rh {
		in, err := decode(m.run[ri:rh])
		if err != nil || !isNop(in) {
			break
		}
		ri += in.Len
	}
	return ri
}

// relocsIn returns the pre relocations whose field starts in [lo, hi).
func (m *matcher) relocsIn(lo, hi int) []pack.Reloc {
	i := sort.Search(len(m.relocs), func(i int) bool { return m.relocs[i].Offset >= uint64(lo) })
	var out []pack.Reloc
	for ; i < len(m.relocs) && m.relocs[i].Offset < uint64(hi); i++ {
		out = append(out, m.relocs[i])
	}
	return out
}

// instruction matches one ordinary pre instruction.
func (m *matcher) instruction(pi int, pin x86asm.Inst, ri, rh int) (int, error) {
	rin, err := decode(m.run[ri:rh])
	if err != nil {
		return 0, m.mismatch(pi, ri, fmt.Sprintf("the running code does not decode: %v", err))
	}
	relocs := m.relocsIn(pi, pi+pin.Len)
	if rel, ok := relTarget(pin); ok {
		rrel, rok := relTarget(rin)
		if !rok || rin.Op != pin.Op {
			return 0, m.mismatch(pi, ri, "different instructions")
		}
		if len(relocs) == 0 {
			tp, tr := pi+pin.Len+int(rel), ri+rin.Len+int(rrel)
			if tp < 0 || tp >= len(m.pre) {
				// A function in an explicitly named section (.sched.text,
				// .init.text...) jumps to a neighbour without relocation:
				// the section's layout is the same in both builds.
				if tr != tp {
					return 0, m.mismatch(pi, ri, fmt.Sprintf("the jump leaves the function for +%#x in the pack's code, for +%#x in the running code", tp, tr))
				}
				return m.step(pi, pin.Len, ri, rin.Len, "same branch out of the function")
			}
			m.branches = append(m.branches, branch{preAt: pi, runAt: ri, preTarget: tp, runTarget: tr})
			return m.step(pi, pin.Len, ri, rin.Len, "same branch")
		}
		r := relocs[0]
		if err := m.deriveBranch(r, pi+pin.Len-int(r.Offset), m.base+uint64(ri+rin.Len)+uint64(rrel), pi, ri); err != nil {
			return 0, err
		}
		return m.step(pi, pin.Len, ri, rin.Len, "same branch to "+r.Symbol)
	}
	if rin.Len != pin.Len {
		return 0, m.mismatch(pi, ri, "different instructions")
	}
	mask := fieldMask(relocs, pi, pin.Len)
	rule := "same"
	for k := 0; k < pin.Len; k++ {
		p, q := m.pre[pi+k], m.run[ri+k]
		switch {
		case mask[k] || p == q:
		case p == 0xf0 && q == 0x3e && isPrefix(pin, k):
			rule = "lock prefix (uniprocessor)"
		default:
			return 0, m.mismatch(pi, ri, "different instructions")
		}
	}
	for _, r := range relocs {
		fo := int(r.Offset) - pi
		addr, err := m.readField(r, ri+fo)
		if err != nil {
			return 0, m.mismatch(pi, ri, err.Error())
		}
		if err := m.derive(r, addr, pi, ri); err != nil {
			return 0, err
		}
	}
	return m.step(pi, pin.Len, ri, rin.Len, rule)
}

// readField returns the symbol address relocation r's field holds in the
// running code, the field being at running offset at.
func (m *matcher) readField(r pack.Reloc, at int) (uint64, error) {
	n := pack.FieldSize(r.Type)
	if n == 0 {
		return 0, fmt.Errorf("relocation %s against %s: type not supported", r.Type, r.Symbol)
	}
	if at+n > len(m.run) {
		return 0, fmt.Errorf("relocation %s against %s runs past the running code", r.Type, r.Symbol)
	}
	var v uint64
	switch n {
	case 4:
		v = uint64(int64(int32(binary.LittleEndian.Uint32(m.run[at:]))))
		if r.Type == elf.R_X86_64_32 {
			v = uint64(binary.LittleEndian.Uint32(m.run[at:]))
		}
	case 8:
		v = binary.LittleEndian.Uint64(m.run[at:])
	}
	if pack.PCRelative(r.Type) {
		v += m.base + uint64(at)
	}
	return v - uint64(r.Addend), nil
}

// derive records that r's symbol is at addr in the running kernel, read
// from the instruction at pre offset pi / running offset ri.
func (m *matcher) derive(r pack.Reloc, addr uint64, pi, ri int) error {
	if ignoredTarget(r.Symbol) {
		return nil
	}
	key := r.Symbol
	if a, ok := m.known[key]; ok && a != addr {
		return m.mismatch(pi, ri, fmt.Sprintf("the pack's code refers to %s here, the running code to %s, but %s is at %#x", r.Symbol, m.symbolize(addr), r.Symbol, a))
	}
	if d, ok := m.out.Derived[key]; ok {
		if d.Addr != addr {
			return m.mismatch(pi, ri, fmt.Sprintf("%s is at %#x here, but at %#x according to the instruction at +%#x", r.Symbol, addr, d.Addr, d.At))
		}
		return nil
	}
	if m.syms != nil && r.Symbol != m.f.Name {
		if cands := m.syms.Lookup(r.Symbol); len(cands) > 0 {
			found := false
			for _, c := range cands {
				found = found || c.Addr == addr
			}
			if !found {
				return m.mismatch(pi, ri, fmt.Sprintf("the pack's code refers to %s here, the running code to %s", r.Symbol, m.symbolize(addr)))
			}
		}
	}
	m.out.Derived[key] = Derivation{Symbol: r.Symbol, Addr: addr, At: pi}
	m.derivedKeys = append(m.derivedKeys, key)
	return nil
}

// deriveBranch records the symbol of relocation r of a branch whose
// running target is target: the field, tail bytes before the end of its
// instruction, holds S + A - P, so the branch goes to S + A + tail.
func (m *matcher) deriveBranch(r pack.Reloc, tail int, target uint64, pi, ri int) error {
	return m.derive(r, target-uint64(r.Addend)-uint64(tail), pi, ri)
}

// fieldMask marks the bytes of the n-byte instruction at off that
// relocation fields cover.
func fieldMask(relocs []pack.Reloc, off, n int) []bool {
	mask := make([]bool, n)
	for _, r := range relocs {
		for k := int(r.Offset) - off; k < int(r.Offset)-off+pack.FieldSize(r.Type) && k < n; k++ {
			if k >= 0 {
				mask[k] = true
			}
		}
	}
	return mask
}

// ignoredTarget reports targets whose address is not derived: symbols
// the kernel rewrote the instructions that refer to (rewrittenKind), and
// section names (merged strings, anonymous data), which the linker merges
// and moves, so that each reference has its own target.
func ignoredTarget(name string) bool {
	return strings.HasPrefix(name, ".") || rewrittenKind(name) != ""
}

func (m *matcher) step(pi, pn, ri, rn int, rule string) (int, error) {
	if m.trace {
		m.out.Steps = append(m.out.Steps, Step{PreOff: pi, RunOff: ri, Pre: m.pre[pi : pi+pn], Run: m.run[ri : ri+rn], Rule: rule})
	}
	return rn, nil
}

// alternative matches an alternative site: the running bytes are the
// original instructions or one of the replacements, padded with NOPs.
func (m *matcher) alternative(pi, ri, rh int) (int, int, error) {
	alts := m.alts[pi]
	n := alts[0].Len
	if ri+n > rh {
		return 0, 0, m.mismatch(pi, ri, "the running code ends inside an alternative")
	}
	saved := m.save()
	end, err := m.seq(pi, pi+n, ri, ri+n, pi)
	if err == nil {
		if end = m.skipNops(end, ri+n); end == ri+n {
			for i := saved.steps; i < len(m.out.Steps); i++ {
				m.out.Steps[i].Rule = "alternative original: " + m.out.Steps[i].Rule
			}
			return n, n, nil
		}
		err = m.mismatch(pi, ri, "alternative: the original is shorter than the running code")
	}
	origErr := err
	for _, a := range alts {
		m.restore(saved)
		if err := m.replacement(a, pi, ri, ri+n); err == nil {
			_, _ = m.step(pi, n, ri, n, fmt.Sprintf("alternative replacement (feature %s)", featureText(a.Feature)))
			return n, n, nil
		}
	}
	m.restore(saved)
	if mm, ok := origErr.(*Mismatch); ok {
		mm.Reason = fmt.Sprintf("alternative at +%#x (%d bytes): the running code is neither the original (%s) nor any of %d replacements",
			pi, n, mm.Reason, len(alts))
	}
	return 0, 0, origErr
}

// replacement matches alternative a's replacement code at ri, NOP-padded to rh.
func (m *matcher) replacement(a pack.Site, pi, ri, rh int) error {
	at := ri
	for k := 0; k < len(a.Code); {
		in, err := decode(a.Code[k:])
		if err != nil {
			return err
		}
		rin, err := decode(m.run[at:rh])
		if err != nil {
			return err
		}
		var relocs []pack.Reloc
		for _, r := range a.Relocs {
			if int(r.Offset) >= k && int(r.Offset) < k+in.Len {
				relocs = append(relocs, r)
			}
		}
		if _, ok := relTarget(in); ok && len(relocs) > 0 {
			rrel, rok := relTarget(rin)
			if !rok || rin.Op != in.Op {
				return fmt.Errorf("different branch")
			}
			r := relocs[0]
			if err := m.deriveBranch(r, k+in.Len-int(r.Offset), m.base+uint64(at+rin.Len)+uint64(rrel), pi, ri); err != nil {
				return err
			}
		} else {
			// Only calls and jumps are moved to the site; other fields
			// keep the replacement's own values and are not compared.
			if rin.Len != in.Len {
				return fmt.Errorf("different length")
			}
			mask := fieldMask(relocs, k, in.Len)
			for j := 0; j < in.Len; j++ {
				if !mask[j] && a.Code[k+j] != m.run[at+j] {
					return fmt.Errorf("different bytes")
				}
			}
		}
		k += in.Len
		at += rin.Len
	}
	if m.skipNops(at, rh) != rh {
		return fmt.Errorf("not padded with NOPs")
	}
	return nil
}

// jumpLabel matches a static branch: a NOP or a jump to the label's
// target, of the same length.
func (m *matcher) jumpLabel(pi, ri, rh int) (int, int, error) {
	l := m.labels[pi]
	if ri+l.Len > rh {
		return 0, 0, m.mismatch(pi, ri, "the running code ends inside a static branch")
	}
	rin, err := decode(m.run[ri:rh])
	if err != nil || rin.Len != l.Len {
		return 0, 0, m.mismatch(pi, ri, fmt.Sprintf("static branch: want a %d-byte NOP or jump", l.Len))
	}
	if isNop(rin) {
		_, _ = m.step(pi, l.Len, ri, l.Len, "static branch (NOP)")
		return l.Len, l.Len, nil
	}
	rel, ok := relTarget(rin)
	if !ok || rin.Op != x86asm.JMP {
		return 0, 0, m.mismatch(pi, ri, fmt.Sprintf("static branch: want a %d-byte NOP or jump", l.Len))
	}
	runTarget := ri + l.Len + int(rel)
	if l.TargetSymbol != "" {
		r := pack.Reloc{Symbol: l.TargetSymbol, Addend: int64(l.Target)}
		if err := m.deriveBranch(r, 0, m.base+uint64(runTarget), pi, ri); err != nil {
			return 0, 0, err
		}
	} else {
		m.branches = append(m.branches, branch{preAt: pi, runAt: ri, preTarget: l.Target, runTarget: runTarget})
	}
	_, _ = m.step(pi, l.Len, ri, l.Len, "static branch (jump)")
	return l.Len, l.Len, nil
}

// saved is how far the matcher's journals were: a trial that fails is
// rolled back to it.
type saved struct {
	derived, offsets, branches, steps int
}

func (m *matcher) save() saved {
	return saved{len(m.derivedKeys), len(m.offKeys), len(m.branches), len(m.out.Steps)}
}

func (m *matcher) restore(s saved) {
	for _, k := range m.derivedKeys[s.derived:] {
		delete(m.out.Derived, k)
	}
	for _, k := range m.offKeys[s.offsets:] {
		delete(m.out.offmap, k)
	}
	m.derivedKeys, m.offKeys = m.derivedKeys[:s.derived], m.offKeys[:s.offsets]
	m.branches = m.branches[:s.branches]
	m.out.Steps = m.out.Steps[:s.steps]
}

func featureText(f uint16) string {
	s := fmt.Sprintf("%d*32+%d", f&0x7fff>>5, f&31)
	if f&0x8000 != 0 {
		s = "!" + s
	}
	return s
}

// decode decodes one 64-bit instruction. The register forms of opcode
// 0f 01 that x86asm does not know (rdpkru, wrpkru, serialize, ...: the
// kernel uses them) decode as a 3-byte instruction without operation,
// which is compared byte by byte.
func decode(b []byte) (x86asm.Inst, error) {
	if len(b) == 0 {
		return x86asm.Inst{}, fmt.Errorf("no bytes left")
	}
	in, err := x86asm.Decode(b, 64)
	if err != nil && len(b) >= 3 && b[0] == 0x0f && b[1] == 0x01 && b[2] >= 0xc0 {
		return x86asm.Inst{Len: 3}, nil
	}
	if err == nil && in.Len == 0 {
		err = fmt.Errorf("zero-length instruction")
	}
	return in, err
}

func isNop(in x86asm.Inst) bool {
	return in.Op == x86asm.NOP || in.Op == x86asm.XCHG && in.Len <= 2 && in.Args[0] == x86asm.AX && in.Args[1] == x86asm.AX
}

// relTarget returns the relative displacement of a branch.
func relTarget(in x86asm.Inst) (int64, bool) {
	if r, ok := in.Args[0].(x86asm.Rel); ok {
		return int64(r), true
	}
	return 0, false
}

// isPrefix reports whether byte k of in is a prefix.
func isPrefix(in x86asm.Inst, k int) bool {
	n := 0
	for _, p := range in.Prefix {
		if p != 0 && p&x86asm.PrefixImplicit == 0 {
			n++
		}
	}
	return k < n
}
