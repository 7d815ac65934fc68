package kallsyms

import (
	"bufio"
	"errors"
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
	// Seq is the symbol's position in the table's input: for a module's
	// symbols, the order of the module's own symbol table.
	Seq int
}

// Table is a parsed symbol table. A table has an object it answers for
// (In): vmlinux, or one module.
type Table struct {
	byName map[string][]int
	syms   []Symbol // sorted by address
	// object is the module whose symbols Lookup, Unique and At answer
	// with, before vmlinux's; "" for vmlinux alone.
	object string
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
	sc.Buffer(make([]byte, 0, 64*1024), maxLine)
	line := 0
	nonzero := false
	for sc.Scan() {
		line++
		s, err := parseLine(sc.Text())
		if err != nil {
			return nil, &SyntaxError{Line: line, Text: sc.Text(), Err: err}
		}
		s.Seq = len(t.syms)
		nonzero = nonzero || s.Addr != 0
		t.syms = append(t.syms, s)
	}
	if err := sc.Err(); err != nil {
		return nil, &SyntaxError{Line: line + 1, Err: err}
	}
	if len(t.syms) == 0 {
		return nil, ErrEmpty
	}
	if !nonzero {
		return nil, ErrRestricted
	}
	t.index()
	return t, nil
}

// maxLine bounds a line: /proc/kallsyms lines are names of at most
// KSYM_NAME_LEN (512) bytes and a module name.
const maxLine = 1 << 20

// errFormat says a line is not "ADDRESS TYPE NAME [MODULE]".
var errFormat = errors.New(`not "ADDRESS TYPE NAME [MODULE]"`)

// parseLine parses one line, "%px %c %s\t[%s]" as kernel/kallsyms.c
// prints it, the module part only for a module's symbols.
func parseLine(text string) (Symbol, error) {
	fields := strings.Fields(text)
	// The type is one printable ASCII character (an nm letter).
	if len(fields) < 3 || len(fields) > 4 || len(fields[1]) != 1 || fields[1][0] <= ' ' || fields[1][0] > '~' {
		return Symbol{}, errFormat
	}
	addr, err := strconv.ParseUint(fields[0], 16, 64)
	if err != nil {
		return Symbol{}, fmt.Errorf("bad address %q: %w", fields[0], err)
	}
	s := Symbol{Addr: addr, Type: fields[1][0], Name: fields[2]}
	if len(fields) == 4 {
		m, ok := strings.CutPrefix(fields[3], "[")
		if m, ok = strings.CutSuffix(m, "]"); !ok || m == "" {
			return Symbol{}, fmt.Errorf("module %q is not [NAME]", fields[3])
		}
		s.Module = m
	}
	return s, nil
}

// Errors of Parse for tables it reads but cannot use.
var (
	ErrEmpty      = errors.New("no symbols")
	ErrRestricted = errors.New("all addresses are zero: run as root with kernel.kptr_restrict < 2")
)

// SyntaxError says a line of a symbol table cannot be read.
type SyntaxError struct {
	Line int    // from 1
	Text string // the line, if it was read
	Err  error
}

func (e *SyntaxError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	text := e.Text
	if len(text) > 100 {
		text = text[:100] + "..."
	}
	return fmt.Sprintf("line %d: %q: %v", e.Line, text, e.Err)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// index sorts the symbols by address and indexes them by name.
func (t *Table) index() {
	sort.SliceStable(t.syms, func(i, j int) bool { return t.syms[i].Addr < t.syms[j].Addr })
	t.byName = make(map[string][]int)
	for i, s := range t.syms {
		t.byName[s.Name] = append(t.byName[s.Name], i)
	}
}

// With returns a new table with t's symbols and extra ones (a module's
// symbols as it will be laid out, say), answering for t's object. The
// extra symbols' Seq follow t's in their order.
func (t *Table) With(extra []Symbol) *Table {
	n := &Table{syms: make([]Symbol, 0, len(t.syms)+len(extra)), object: t.object}
	n.syms = append(n.syms, t.syms...)
	seq := len(t.syms)
	for _, s := range extra {
		s.Seq = seq
		seq++
		n.syms = append(n.syms, s)
	}
	n.index()
	return n
}

// Without returns a new table with t's symbols less module's, answering
// for t's object.
func (t *Table) Without(module string) *Table {
	n := &Table{object: t.object}
	for _, s := range t.syms {
		if s.Module != module {
			n.syms = append(n.syms, s)
		}
	}
	n.index()
	return n
}

// In returns a view of t that answers for object: module object's
// symbols come first, vmlinux's are there for the names the module does
// not define (the names its code links against). "" or "vmlinux" is
// vmlinux alone.
func (t *Table) In(object string) *Table {
	if object == "vmlinux" {
		object = ""
	}
	return &Table{byName: t.byName, syms: t.syms, object: object}
}

// Object is the module the table answers for, "" for vmlinux.
func (t *Table) Object() string { return t.object }

// Loaded reports whether module has symbols in the table: whether it is
// loaded.
func (t *Table) Loaded(module string) bool {
	for _, s := range t.syms {
		if s.Module == module {
			return true
		}
	}
	return false
}

// Lookup returns every symbol called name of the table's object: its
// module's, or, when the module has none of that name (and for vmlinux),
// vmlinux's. Other modules' symbols are never returned.
func (t *Table) Lookup(name string) []Symbol {
	var own, kernel []Symbol
	for _, i := range t.byName[name] {
		switch m := t.syms[i].Module; {
		case t.object != "" && m == t.object:
			own = append(own, t.syms[i])
		case m == "":
			kernel = append(kernel, t.syms[i])
		}
	}
	if len(own) > 0 {
		return own
	}
	return kernel
}

// Unique returns the one symbol called name (see Lookup). It is an error
// for the name to be missing or to name several symbols: a static name
// used in several files cannot be told apart by name.
func (t *Table) Unique(name string) (Symbol, error) {
	syms := t.Lookup(name)
	switch len(syms) {
	case 0:
		return Symbol{}, &LookupError{Name: name, Module: t.object}
	case 1:
		return syms[0], nil
	default:
		return Symbol{}, &LookupError{Name: name, Count: len(syms), Module: t.object}
	}
}

// Position returns which of its module's symbols called s.Name s is, in
// the order of the module's symbol table (Seq), from 0: how the update
// module tells a module's symbols of one name apart. It is an error for
// s not to be in the table.
func (t *Table) Position(s Symbol) (int, error) {
	pos, found := 0, false
	for _, i := range t.byName[s.Name] {
		o := t.syms[i]
		if o.Module != s.Module {
			continue
		}
		if o.Addr == s.Addr && o.Seq == s.Seq {
			found = true
		} else if o.Seq < s.Seq {
			pos++
		}
	}
	if !found {
		return 0, &LookupError{Name: s.Name, Module: s.Module}
	}
	return pos, nil
}

// Max returns the highest address in the table.
func (t *Table) Max() uint64 {
	return t.syms[len(t.syms)-1].Addr
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
	// Module is the module the name was looked up in, "" for vmlinux.
	Module string
}

func (e *LookupError) Error() string {
	where := "the running kernel's kallsyms"
	if e.Module != "" {
		where = "module " + e.Module + "'s symbols"
	}
	if e.Count == 0 {
		return fmt.Sprintf("symbol %s is not in %s", e.Name, where)
	}
	return fmt.Sprintf("symbol %s is ambiguous: %d symbols of that name in %s", e.Name, e.Count, where)
}

// At returns the symbol of the table's object (its module or vmlinux)
// that covers addr: the one at the highest address not above it. Of
// several symbols at that address it prefers one that does not mark a
// section's start or end (__start_*, *_end...).
func (t *Table) At(addr uint64) (Symbol, bool) {
	i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].Addr > addr })
	var best Symbol
	found := false
	for i--; i >= 0 && (!found || t.syms[i].Addr == best.Addr); i-- {
		s := t.syms[i]
		if s.Module != "" && s.Module != t.object {
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
