package kallsyms

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Symbol is one line of /proc/kallsyms.
type Symbol struct {
	Addr uint64
	// Type is the nm-style type letter: 't'/'T' text, 'd'/'D' data, ...
	Type byte
	Name string
	// Module is the module the symbol belongs to, "" for vmlinux.
	Module string
}

// Table is a parsed symbol table.
type Table struct {
	byName map[string][]int
	syms   []Symbol // sorted by address
}

// ReadFile parses the symbol table at path (normally /proc/kallsyms).
func ReadFile(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse reads a symbol table in /proc/kallsyms format. It fails when every
// address is zero: that is what an unprivileged reader or kptr_restrict=2
// gets, and no address could be trusted.
func Parse(r io.Reader) (*Table, error) {
	t := &Table{byName: make(map[string][]int)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 0
	nonzero := false
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || len(fields[1]) != 1 {
			return nil, fmt.Errorf("line %d: %q is not \"ADDRESS TYPE NAME [MODULE]\"", line, sc.Text())
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad address %q: %w", line, fields[0], err)
		}
		s := Symbol{Addr: addr, Type: fields[1][0], Name: fields[2]}
		if len(fields) > 3 {
			s.Module = strings.Trim(fields[3], "[]")
		}
		nonzero = nonzero || addr != 0
		t.syms = append(t.syms, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.syms) == 0 {
		return nil, fmt.Errorf("no symbols")
	}
	if !nonzero {
		return nil, fmt.Errorf("all addresses are zero: run as root with kernel.kptr_restrict < 2")
	}
	sort.SliceStable(t.syms, func(i, j int) bool { return t.syms[i].Addr < t.syms[j].Addr })
	for i, s := range t.syms {
		t.byName[s.Name] = append(t.byName[s.Name], i)
	}
	return t, nil
}

// Lookup returns every vmlinux symbol (not module symbols) called name.
func (t *Table) Lookup(name string) []Symbol {
	var out []Symbol
	for _, i := range t.byName[name] {
		if t.syms[i].Module == "" {
			out = append(out, t.syms[i])
		}
	}
	return out
}

// Unique returns the address of the one vmlinux symbol called name. It is an
// error for the name to be missing or to name several symbols: a static
// name used in several files cannot be told apart by name.
func (t *Table) Unique(name string) (Symbol, error) {
	syms := t.Lookup(name)
	switch len(syms) {
	case 0:
		return Symbol{}, &LookupError{Name: name}
	case 1:
		return syms[0], nil
	default:
		return Symbol{}, &LookupError{Name: name, Count: len(syms)}
	}
}

// Extent returns how many bytes there are from s to the next symbol at a
// higher address: an upper bound on the size of the function at s.
func (t *Table) Extent(s Symbol) uint64 {
	i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].Addr > s.Addr })
	if i == len(t.syms) {
		return 0
	}
	return t.syms[i].Addr - s.Addr
}

// LookupError says a name is missing or ambiguous.
type LookupError struct {
	Name  string
	Count int // 0: missing; >1: that many symbols share the name
}

func (e *LookupError) Error() string {
	if e.Count == 0 {
		return fmt.Sprintf("symbol %s is not in the running kernel's kallsyms", e.Name)
	}
	return fmt.Sprintf("symbol %s is ambiguous: %d symbols of that name in kallsyms", e.Name, e.Count)
}

// At returns the vmlinux symbol that covers addr: the one at the highest
// address not above it. Of several symbols at that address it prefers
// one that does not mark a section's start or end (__start_*, *_end...).
func (t *Table) At(addr uint64) (Symbol, bool) {
	i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].Addr > addr })
	var best Symbol
	found := false
	for i--; i >= 0 && (!found || t.syms[i].Addr == best.Addr); i-- {
		s := t.syms[i]
		if s.Module != "" {
			continue
		}
		if !found || !marker(s.Name) {
			best, found = s, true
		}
	}
	return best, found
}

// marker reports names that mark the bounds of a section.
func marker(name string) bool {
	return strings.HasPrefix(name, "__start") || strings.HasPrefix(name, "__stop") ||
		strings.HasSuffix(name, "_start") || strings.HasSuffix(name, "_end")
}
