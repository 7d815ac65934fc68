package runpre

import (
	"fmt"
	"slices"
	"strings"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
)

// Memory reads the running kernel's memory: kcore.Mem, bootimage.Image.
type Memory interface {
	Read(addr uint64, n int) ([]byte, error)
}

// slack is how many bytes past the pack's size are read when kallsyms
// does not bound the function: the running code may be longer (NOP
// padding, near instead of short jumps in the other direction).
const slack = 256

// Find locates f in the running kernel: of the text symbols kallsyms
// lists under f's name, exactly one must match f's pre code, and its cold
// parts (f.Cold) theirs (findParts). It returns a *Mismatch when none
// matches (the closest candidate's, or a cold part's), an
// *AmbiguousError when several do, and a *kallsyms.LookupError when the
// name is not there.
func Find(f *pack.Function, syms *kallsyms.Table, mem Memory, opts Options) (*Match, error) {
	cands := textSymbols(syms, f.Name)
	if len(cands) == 0 {
		return nil, &kallsyms.LookupError{Name: f.Name}
	}
	return pick(f, cands, syms, mem, opts, nil)
}

// textSymbols returns the text symbols kallsyms lists under name.
func textSymbols(syms *kallsyms.Table, name string) []kallsyms.Symbol {
	var out []kallsyms.Symbol
	for _, s := range syms.Lookup(name) {
		if s.Type == 't' || s.Type == 'T' {
			out = append(out, s)
		}
	}
	return out
}

// pick matches f at each candidate; exactly one must match, with its cold
// parts. The references of f's code to the symbols of known must go to
// those addresses.
func pick(f *pack.Function, cands []kallsyms.Symbol, syms *kallsyms.Table, mem Memory, opts Options, known map[string]uint64) (*Match, error) {
	var found []*Match
	var closest, part *Mismatch
	for _, c := range cands {
		n := uint64(len(f.PreCode) + slack)
		if ext := syms.Extent(c); ext != 0 && ext < n {
			n = ext
		}
		run, err := mem.Read(c.Addr, int(n))
		if err != nil {
			return nil, fmt.Errorf("reading the running code of %s at %#x: %w", f.Name, c.Addr, err)
		}
		m, err := matchAt(f, c.Addr, run, syms, opts, known)
		matched := err == nil
		if matched {
			err = findParts(f, m, syms, mem, opts)
		}
		var mm *Mismatch
		switch {
		case err == nil:
			found = append(found, m)
		case !asMismatch(err, &mm):
			return nil, err
		case matched:
			part = mm
		case closest == nil || mm.PreOff > closest.PreOff:
			closest = mm
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		e := &AmbiguousError{Func: f.Name}
		for _, m := range found {
			e.Addrs = append(e.Addrs, m.Addr)
		}
		return nil, e
	case part != nil:
		// The function matched, one of its cold parts did not.
		return nil, part
	}
	closest.Candidates = len(cands)
	return nil, closest
}

// findParts finds the cold parts of f, whose code matched as m: each is
// the kallsyms symbol of its name that f's code refers to (any of them
// when it does not), and its code must match, referring to f at m's
// address and to what f's code refers to at the same addresses.
func findParts(f *pack.Function, m *Match, syms *kallsyms.Table, mem Memory, opts Options) error {
	if len(f.Cold) == 0 {
		return nil
	}
	known := map[string]uint64{f.Name: m.Addr}
	for k, d := range m.Derived {
		known[k] = d.Addr
	}
	for i := range f.Cold {
		p := &f.Cold[i]
		cands := textSymbols(syms, p.Name)
		if d, ok := m.Derived[p.Name]; ok {
			cands = slices.DeleteFunc(cands, func(s kallsyms.Symbol) bool { return s.Addr != d.Addr })
		}
		if len(cands) == 0 {
			// The helper checks the part's address with kallsyms: it
			// must be a symbol of that name.
			return &kallsyms.LookupError{Name: p.Name}
		}
		pm, err := pick(p, cands, syms, mem, opts, known)
		if err != nil {
			return err
		}
		for k, d := range pm.Derived {
			known[k] = d.Addr
		}
		m.Parts = append(m.Parts, pm)
	}
	return nil
}

func asMismatch(err error, mm **Mismatch) bool {
	m, ok := err.(*Mismatch)
	*mm = m
	return ok
}

// AmbiguousError says several functions of the running kernel match the
// pack's code: identical copies of a static function in several objects.
type AmbiguousError struct {
	Func  string
	Addrs []uint64
}

func (e *AmbiguousError) Error() string {
	addrs := make([]string, len(e.Addrs))
	for i, a := range e.Addrs {
		addrs[i] = fmt.Sprintf("%#x", a)
	}
	return fmt.Sprintf("%s: %d functions of that name in the running kernel match the pack's code (%s); cannot tell which one the update is for",
		e.Func, len(e.Addrs), strings.Join(addrs, ", "))
}
