package runpre

import (
	"fmt"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// A special is an instruction the kernel rewrites at run time, recognised
// by the symbol its relocation names: the fentry call, return thunk and
// retpoline thunk branches, static calls and paravirt calls.
type special struct {
	name   string
	symbol string // the relocation's symbol
	match  func(m *matcher, sp *special, pi int, pin x86asm.Inst, ri, rh int) (int, error)
}

// special returns how the pre instruction at pi is rewritten at run time,
// or nil for an ordinary instruction.
func (m *matcher) special(pi int, pin x86asm.Inst) *special {
	var sym string
	for _, r := range m.relocsIn(pi, pi+pin.Len) {
		sym = r.Symbol
	}
	_, branch := relTarget(pin)
	kind := rewrittenKind(sym)
	switch {
	case kind == "":
		return nil
	case branch && pin.Op == x86asm.CALL && kind == "fentry call":
		return &special{name: kind, symbol: sym, match: matchFentry}
	case branch && kind == "return thunk":
		return &special{name: kind, symbol: sym, match: matchReturn}
	case branch && kind == "retpoline":
		return &special{name: kind, symbol: sym, match: matchRetpoline}
	case branch && kind == "static call":
		return &special{name: kind, symbol: sym, match: matchStaticCall}
	case !branch && pin.Op == x86asm.CALL && kind == "paravirt call":
		return &special{name: kind, symbol: sym, match: matchParavirt}
	}
	return nil
}

// rewrittenKind says which kind of runtime-rewritten instruction refers
// to symbol name, "" for none.
func rewrittenKind(name string) string {
	switch {
	case name == "__fentry__":
		return "fentry call"
	case name == "__x86_return_thunk":
		return "return thunk"
	case strings.HasPrefix(name, "__x86_indirect_thunk_"):
		return "retpoline"
	case strings.HasPrefix(name, "__SCT__"):
		return "static call"
	case name == "pv_ops":
		return "paravirt call"
	}
	return ""
}

// window returns the running bytes where the pre instruction at pi was.
func (m *matcher) window(pi int, pin x86asm.Inst, ri, rh int) ([]byte, error) {
	if ri+pin.Len > rh {
		return nil, m.mismatch(pi, ri, "the running code ends here")
	}
	return m.run[ri : ri+pin.Len], nil
}

// nopsOnly reports whether b decodes as NOPs only.
func nopsOnly(b []byte) bool {
	for len(b) > 0 {
		in, err := decode(b)
		if err != nil || !isNop(in) {
			return false
		}
		b = b[in.Len:]
	}
	return true
}

// sameBranch reports whether the running window starts with the same
// kind of rel32 branch as pin, of the same length (to any target).
func sameBranch(pin x86asm.Inst, w []byte) bool {
	rin, err := decode(w)
	_, ok := relTarget(rin)
	return err == nil && ok && rin.Op == pin.Op && rin.Len == pin.Len
}

// fill reports whether b is made of byte c only.
func fill(b []byte, c byte) bool {
	for _, x := range b {
		if x != c {
			return false
		}
	}
	return true
}

func (m *matcher) accept(sp *special, pi int, pin x86asm.Inst, ri int, form string) (int, error) {
	return m.step(pi, pin.Len, ri, pin.Len, sp.name+" ("+form+")")
}

func (m *matcher) reject(sp *special, pi, ri int, want string) error {
	return m.mismatch(pi, ri, fmt.Sprintf("%s: want %s", sp.name, want))
}

// matchFentry: a 5-byte NOP, or a call to a tracer while traced.
func matchFentry(m *matcher, sp *special, pi int, pin x86asm.Inst, ri, rh int) (int, error) {
	w, err := m.window(pi, pin, ri, rh)
	if err != nil {
		return 0, err
	}
	switch {
	case nopsOnly(w):
		return m.accept(sp, pi, pin, ri, "NOP")
	case sameBranch(pin, w):
		return m.accept(sp, pi, pin, ri, "traced")
	}
	return 0, m.reject(sp, pi, ri, "a NOP or a call of the same length")
}

// matchReturn: the thunk jump (to whichever return thunk the CPU needs:
// with kallsyms, a symbol whose name says return_thunk), or "ret" padded
// with int3.
func matchReturn(m *matcher, sp *special, pi int, pin x86asm.Inst, ri, rh int) (int, error) {
	w, err := m.window(pi, pin, ri, rh)
	if err != nil {
		return 0, err
	}
	switch {
	case sameBranch(pin, w):
		if name, _ := m.lookup(m.branchAddr(ri, w)); m.syms != nil && !strings.Contains(name, "return_thunk") {
			return 0, m.reject(sp, pi, ri, "a jump to a return thunk, not to "+m.branchTarget(ri, w))
		}
		return m.accept(sp, pi, pin, ri, "jump to "+m.branchTarget(ri, w))
	case pin.Op == x86asm.JMP && w[0] == 0xc3 && fill(w[1:], 0xcc):
		return m.accept(sp, pi, pin, ri, "ret")
	}
	return 0, m.reject(sp, pi, ri, "a jump to a return thunk or ret; int3")
}

// matchRetpoline: the thunk call (or an ITS thunk), or the register's
// indirect branch, after an inverted short Jcc for a conditional jump and
// an lfence, padded with int3 and NOPs.
func matchRetpoline(m *matcher, sp *special, pi int, pin x86asm.Inst, ri, rh int) (int, error) {
	w, err := m.window(pi, pin, ri, rh)
	if err != nil {
		return 0, err
	}
	if sameBranch(pin, w) {
		return m.accept(sp, pi, pin, ri, "thunk "+m.branchTarget(ri, w))
	}
	reg := strings.TrimPrefix(sp.symbol, "__x86_indirect_thunk_")
	b := w
	form := ""
	if pin.Op != x86asm.CALL && pin.Op != x86asm.JMP {
		// Jcc thunk: "J!cc.d8 over; jmp *%reg"
		in, err := decode(b)
		rel, ok := relTarget(in)
		if err != nil || !ok || in.Len != 2 || in.Op == pin.Op || int(rel)+in.Len != len(w) {
			return 0, m.reject(sp, pi, ri, "the thunk branch or an inverted short jump over an indirect jump")
		}
		b, form = b[in.Len:], "inverted jcc; "
	}
	in, err := decode(b)
	if err == nil && in.Op == x86asm.LFENCE {
		b, form = b[in.Len:], form+"lfence; "
		in, err = decode(b)
	}
	want := x86asm.CALL
	if pin.Op != x86asm.CALL {
		want = x86asm.JMP
	}
	r, isReg := in.Args[0].(x86asm.Reg)
	if err != nil || in.Op != want || !isReg || !strings.EqualFold(r.String(), reg) {
		return 0, m.reject(sp, pi, ri, fmt.Sprintf("the thunk branch or an indirect %s through %%%s", strings.ToLower(want.String()), reg))
	}
	b = b[in.Len:]
	for len(b) > 0 && b[0] == 0xcc {
		b = b[1:]
	}
	if !nopsOnly(b) {
		return 0, m.reject(sp, pi, ri, "int3 or NOP padding after the indirect branch")
	}
	return m.accept(sp, pi, pin, ri, form+"inline "+strings.ToLower(want.String())+" *%"+reg)
}

// matchStaticCall: a direct branch to the current target, a 5-byte NOP
// (no target), "xor %eax,%eax" (return 0), or ret / a return thunk jump
// for a tail call without target.
func matchStaticCall(m *matcher, sp *special, pi int, pin x86asm.Inst, ri, rh int) (int, error) {
	w, err := m.window(pi, pin, ri, rh)
	if err != nil {
		return 0, err
	}
	switch {
	case sameBranch(pin, w):
		return m.accept(sp, pi, pin, ri, "to "+m.branchTarget(ri, w))
	case pin.Op == x86asm.CALL && nopsOnly(w):
		return m.accept(sp, pi, pin, ri, "NOP")
	case pin.Op == x86asm.CALL && string(w) == "\x2e\x2e\x2e\x31\xc0":
		return m.accept(sp, pi, pin, ri, "return 0")
	case pin.Op == x86asm.JMP && w[0] == 0xc3 && fill(w[1:], 0xcc):
		return m.accept(sp, pi, pin, ri, "ret")
	}
	return 0, m.reject(sp, pi, ri, "a branch of the same kind, a NOP, xor %eax,%eax or ret")
}

// matchParavirt: the indirect call through pv_ops, a direct call to the
// native implementation padded with NOPs, NOPs, or ud2 for a missing op.
func matchParavirt(m *matcher, sp *special, pi int, pin x86asm.Inst, ri, rh int) (int, error) {
	w, err := m.window(pi, pin, ri, rh)
	if err != nil {
		return 0, err
	}
	if in, err := decode(w); err == nil && in.Len == len(w) && string(w[:2]) == string(m.pre[pi:pi+2]) {
		n, err := m.instruction(pi, pin, ri, rh)
		return n, err
	}
	in, err := decode(w)
	_, rel := relTarget(in)
	switch {
	case err == nil && in.Op == x86asm.CALL && rel && in.Len <= len(w) && nopsOnly(w[in.Len:]):
		return m.accept(sp, pi, pin, ri, "direct call to "+m.branchTarget(ri, w))
	case nopsOnly(w):
		return m.accept(sp, pi, pin, ri, "NOP")
	case err == nil && in.Op == x86asm.UD2:
		return m.accept(sp, pi, pin, ri, "ud2")
	}
	return 0, m.reject(sp, pi, ri, "the pv_ops call, a direct call padded with NOPs, NOPs or ud2")
}

// branchAddr returns the target of the branch at the start of w, which is
// at running offset ri (0 if it is not a relative branch).
func (m *matcher) branchAddr(ri int, w []byte) uint64 {
	in, err := decode(w)
	rel, ok := relTarget(in)
	if err != nil || !ok {
		return 0
	}
	return m.base + uint64(ri+in.Len) + uint64(rel)
}

// branchTarget names the target of the branch at the start of w.
func (m *matcher) branchTarget(ri int, w []byte) string {
	if a := m.branchAddr(ri, w); a != 0 {
		return m.symbolize(a)
	}
	return "?"
}
