package kallsyms

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/internal/fuzzguard"
)

// hostExcerpt returns the first lines of the host's /proc/kallsyms and its
// first module lines: real text, with real addresses when read as root.
func hostExcerpt(tb testing.TB) []byte {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var head, mods []byte
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		switch line := sc.Bytes(); {
		case n < 200:
			head = append(append(head, line...), '\n')
		case bytes.IndexByte(line, '[') >= 0 && len(mods) < 8<<10:
			mods = append(append(mods, line...), '\n')
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return append(head, mods...)
}

// FuzzParse mutates real symbol tables: the guest /proc/kallsyms lines of
// bootimage's test data and an excerpt of the host's. Parse returns a
// typed error, or a table that answers consistently and prints and parses
// back to itself.
func FuzzParse(f *testing.F) {
	guests, err := filepath.Glob("../bootimage/testdata/boots/*/kallsyms")
	if err != nil || len(guests) == 0 {
		f.Fatalf("no guest kallsyms in ../bootimage/testdata/boots (%v)", err)
	}
	for _, g := range guests {
		b, err := os.ReadFile(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(hostExcerpt(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "Parse")
		tab, err := Parse(bytes.NewReader(data))
		if err != nil {
			var se *SyntaxError
			switch {
			case errors.As(err, &se):
				if lines := bytes.Count(data, []byte("\n")) + 1; se.Line < 1 || se.Line > lines {
					t.Fatalf("%v: line %d of %d", err, se.Line, lines)
				}
			case errors.Is(err, ErrEmpty), errors.Is(err, ErrRestricted):
			default:
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		checkTable(t, tab)
		again, err := Parse(strings.NewReader(format(tab)))
		if err != nil {
			t.Fatalf("the table printed does not parse: %v", err)
		}
		if !slices.Equal(again.syms, tab.syms) {
			t.Fatalf("printed and parsed again, the table differs")
		}
	})
}

// format prints a table as /proc/kallsyms does, in its input's order.
func format(t *Table) string {
	syms := slices.Clone(t.syms)
	slices.SortFunc(syms, func(a, b Symbol) int { return a.Seq - b.Seq })
	var b strings.Builder
	for _, s := range syms {
		fmt.Fprintf(&b, "%016x %c %s", s.Addr, s.Type, s.Name)
		if s.Module != "" {
			fmt.Fprintf(&b, "\t[%s]", s.Module)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// checkTable checks the answers of a table about each of its symbols.
func checkTable(t *testing.T, tab *Table) {
	t.Helper()
	if !slices.IsSortedFunc(tab.syms, func(a, b Symbol) int { return cmp.Compare(a.Addr, b.Addr) }) {
		t.Fatal("symbols not sorted by address")
	}
	if tab.Max() != tab.syms[len(tab.syms)-1].Addr {
		t.Fatalf("Max = %#x", tab.Max())
	}
	for i, s := range tab.syms {
		if s.Name == "" || strings.ContainsAny(s.Name, " \t\n") || strings.ContainsAny(s.Module, " \t\n") {
			t.Fatalf("symbol %+v", s)
		}
		in := tab.In(s.Module)
		if !slices.Contains(in.Lookup(s.Name), s) {
			t.Fatalf("Lookup(%s) in %q lacks %+v", s.Name, s.Module, s)
		}
		var le *LookupError
		switch u, err := in.Unique(s.Name); {
		case err == nil && u != s:
			t.Fatalf("Unique(%s) in %q = %+v, not %+v, its only symbol", s.Name, s.Module, u, s)
		case err != nil && (!errors.As(err, &le) || le.Count != len(in.Lookup(s.Name))):
			t.Fatalf("Unique(%s): %v", s.Name, err)
		}
		if _, err := tab.Position(s); err != nil {
			t.Fatalf("Position(%+v): %v", s, err)
		}
		if at, ok := in.At(s.Addr); !ok || at.Addr != s.Addr {
			t.Fatalf("At(%#x) in %q = %+v, %v", s.Addr, s.Module, at, ok)
		}
		if n := tab.Extent(s); n != 0 && i < 64 {
			next := s.Addr + n
			for _, o := range tab.syms {
				if o.Addr > s.Addr && o.Addr < next {
					t.Fatalf("Extent(%+v) = %#x, but %+v lies between", s, n, o)
				}
			}
		}
	}
}
