package runpre

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Mismatch says the running code is not the code an update was built from.
type Mismatch struct {
	Func string
	Addr uint64 // where the function runs
	// PreOff and RunOff are the offsets, in the pack's code and in the
	// running code, of the instructions that differ.
	PreOff, RunOff int
	// Pre and Run are those instructions' bytes and disassembly.
	Pre, Run       []byte
	PreAsm, RunAsm string
	Reason         string
	// Candidates is how many functions of that name were tried (Find);
	// this is the one that matched furthest.
	Candidates int
	// Steps are the comparison up to the mismatch (with Options.Trace).
	Steps []Step
}

func (e *Mismatch) Error() string {
	which := ""
	if e.Candidates > 1 {
		which = fmt.Sprintf(" (none of %d functions of that name matches; the closest)", e.Candidates)
	}
	return fmt.Sprintf("%s at %#x%s: +%#x: pack: %s (%s); running (+%#x): %s (%s): %s",
		e.Func, e.Addr, which, e.PreOff, e.PreAsm, hexBytes(e.Pre), e.RunOff, e.RunAsm, hexBytes(e.Run), e.Reason)
}

func hexBytes(b []byte) string {
	if len(b) == 0 {
		return "no bytes"
	}
	h := hex.EncodeToString(b)
	var s strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			s.WriteByte(' ')
		}
		s.WriteString(h[i : i+2])
	}
	return s.String()
}

// mismatch builds the error for the instructions at pre offset pi and
// running offset ri. The disassembly is added by describe, once the error
// leaves the matcher: failed trials (NOP padding, alternatives) are cheap.
func (m *matcher) mismatch(pi, ri int, reason string) *Mismatch {
	return &Mismatch{Func: m.f.Name, Addr: m.base, PreOff: pi, RunOff: ri, Reason: reason}
}

// describe adds both instructions, disassembled, to e.
func (m *matcher) describe(e *Mismatch) {
	e.Pre, e.PreAsm = m.disasmPre(e.PreOff)
	e.Run, e.RunAsm = m.disasmRun(e.RunOff)
}

// disasmPre disassembles the pack's instruction at pi, naming relocation
// targets.
func (m *matcher) disasmPre(pi int) ([]byte, string) {
	if pi >= len(m.pre) {
		return nil, "(end of function)"
	}
	in, err := decode(m.pre[pi:])
	if err != nil {
		return m.pre[pi:min(pi+1, len(m.pre))], "(bad)"
	}
	text := gnu(in, m.pre[pi:], uint64(pi), nil)
	var refs []string
	for _, r := range m.relocsIn(pi, pi+in.Len) {
		refs = append(refs, fmt.Sprintf("%s%+d", r.Symbol, r.Addend))
	}
	if len(refs) > 0 {
		if _, ok := relTarget(in); ok {
			text = strings.Fields(text)[0] + " " + strings.Join(refs, ", ")
		} else {
			text += " # " + strings.Join(refs, ", ")
		}
	}
	return m.pre[pi : pi+in.Len], text
}

// disasmRun disassembles the running instruction at ri.
func (m *matcher) disasmRun(ri int) ([]byte, string) {
	if ri >= len(m.run) {
		return nil, "(end of running code)"
	}
	in, err := decode(m.run[ri:])
	if err != nil {
		return m.run[ri:min(ri+1, len(m.run))], "(bad)"
	}
	return m.run[ri : ri+in.Len], gnu(in, m.run[ri:], m.base+uint64(ri), m.lookup)
}

// gnu prints in (decoded from b) in GNU syntax; instructions x86asm
// does not know as bytes.
func gnu(in x86asm.Inst, b []byte, pc uint64, lookup x86asm.SymLookup) string {
	if in.Op == 0 {
		return ".byte " + strings.ReplaceAll(hexBytes(b[:in.Len]), " ", ",")
	}
	return x86asm.GNUSyntax(in, pc, lookup)
}

// lookup names running addresses for the disassembler.
func (m *matcher) lookup(addr uint64) (string, uint64) {
	if m.syms == nil {
		return "", 0
	}
	s, ok := m.syms.At(addr)
	if !ok {
		return "", 0
	}
	return s.Name, s.Addr
}

// symbolize prints a running address as NAME+0xOFF (0xADDR).
func (m *matcher) symbolize(addr uint64) string {
	name, base := m.lookup(addr)
	switch {
	case name == "":
		return fmt.Sprintf("%#x", addr)
	case base == addr:
		return fmt.Sprintf("%s (%#x)", name, addr)
	}
	return fmt.Sprintf("%s+%#x (%#x)", name, addr-base, addr)
}

// WriteSteps prints a comparison, one step per line: offsets, bytes and
// disassembly of both sides, and the rule that accepted it.
func WriteSteps(w io.Writer, steps []Step) error {
	for _, s := range steps {
		pre, run := disasm(s.Pre), disasm(s.Run)
		if _, err := fmt.Fprintf(w, "  +%#05x %-24s %-36s | +%#05x %-24s %-36s [%s]\n",
			s.PreOff, hexBytes(s.Pre), pre, s.RunOff, hexBytes(s.Run), run, s.Rule); err != nil {
			return err
		}
	}
	return nil
}

// disasm disassembles b as a sequence, without addresses.
func disasm(b []byte) string {
	var parts []string
	for len(b) > 0 {
		in, err := decode(b)
		if err != nil {
			parts = append(parts, "(bad)")
			break
		}
		parts = append(parts, gnu(in, b, 0, nil))
		b = b[in.Len:]
	}
	return strings.Join(parts, "; ")
}
