package runpre

import (
	"fmt"
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
// lists under f's name, exactly one must match f's pre code. It returns a
// *Mismatch when none matches (the closest candidate's), an
// *AmbiguousError when several do, and a *kallsyms.LookupError when the
// name is not there.
func Find(f *pack.Function, syms *kallsyms.Table, mem Memory, opts Options) (*Match, error) {
	var cands []kallsyms.Symbol
	for _, s := range syms.Lookup(f.Name) {
		if s.Type == 't' || s.Type == 'T' {
			cands = append(cands, s)
		}
	}
	if len(cands) == 0 {
		return nil, &kallsyms.LookupError{Name: f.Name}
	}
	var found []*Match
	var closest *Mismatch
	for _, c := range cands {
		n := uint64(len(f.PreCode) + slack)
		if ext := syms.Extent(c); ext != 0 && ext < n {
			n = ext
		}
		run, err := mem.Read(c.Addr, int(n))
		if err != nil {
			return nil, fmt.Errorf("reading the running code of %s at %#x: %w", f.Name, c.Addr, err)
		}
		m, err := MatchAt(f, c.Addr, run, syms, opts)
		var mm *Mismatch
		switch {
		case err == nil:
			found = append(found, m)
		case asMismatch(err, &mm):
			if closest == nil || mm.PreOff > closest.PreOff {
				closest = mm
			}
		default:
			return nil, err
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
	}
	closest.Candidates = len(cands)
	return nil, closest
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
