package elfobj

import (
	"bytes"
	"debug/elf"
	"os"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/internal/fuzzguard"
)

// The seeds are real objects (see testdata/fuzz/README.md at the top of
// the repository): a kernel object as the builder compiles it, and an
// update module as kbuild links it, with livepatch relocations and
// .modinfo.
var fuzzSeeds = []string{
	"../testdata/fuzz/ucs2_string.o",
	"../testdata/fuzz/livesplice_c_drivers_base_core_7c91ec.ko",
}

// FuzzParse mutates real objects: Parse refuses them with an error naming
// the object (never a panic it recovered from), or returns a File whose
// references stay inside it and that writes and reads back the same.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := Parse(s, b); err != nil {
			f.Fatalf("the seed does not parse: %v", err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "Parse")
		const name = "fuzz.o"
		obj, err := Parse(name, data)
		if err != nil {
			fuzzguard.Names(t, err, name)
			if strings.Contains(err.Error(), "malformed ELF") {
				t.Fatalf("Parse panicked: %v", err)
			}
			return
		}
		checkFile(t, obj)
		var buf bytes.Buffer
		if err := obj.Write(&buf); err != nil {
			fuzzguard.Names(t, err, name)
			return
		}
		again, err := Parse("again.o", buf.Bytes())
		if err != nil {
			t.Fatalf("the object written does not parse: %v", err)
		}
		sameFile(t, obj, again)
	})
}

// checkFile checks that a File read refers only to its own sections and
// symbols, and its relocations to fields inside their sections.
func checkFile(t *testing.T, f *File) {
	t.Helper()
	secs := map[*Section]bool{}
	for _, s := range f.Sections {
		secs[s] = true
		if s.Type != elf.SHT_NOBITS && s.Type != elf.SHT_NULL && uint64(len(s.Data)) != s.Size {
			t.Fatalf("section %q: %d bytes of data, size %d", s.Name, len(s.Data), s.Size)
		}
	}
	syms := map[*Symbol]bool{}
	for _, s := range f.Symbols {
		syms[s] = true
		if s != nil && s.Section != nil && !secs[s.Section] {
			t.Fatalf("symbol %q: section not in the file", s.Name)
		}
	}
	for _, s := range f.Sections {
		if s.Link != nil && !secs[s.Link] {
			t.Fatalf("section %q: sh_link not in the file", s.Name)
		}
		for _, r := range append(append([]Reloc(nil), s.Relocs...), s.Livepatch...) {
			if r.Sym != nil && !syms[r.Sym] {
				t.Fatalf("section %q: relocation at %#x against a symbol not in the file", s.Name, r.Offset)
			}
			if n := uint64(FieldSize(r.Type)); r.Offset > s.Size || s.Size-r.Offset < n {
				t.Fatalf("section %q: %v at %#x outside its %d bytes", s.Name, r.Type, r.Offset, s.Size)
			}
		}
	}
}

// sameFile compares what Write keeps of a File: the sections it copies
// (not the symbol, string and relocation tables, which it makes again),
// their relocations, and the symbols by name.
func sameFile(t *testing.T, a, b *File) {
	t.Helper()
	user := func(f *File) map[string]*Section {
		m := map[string]*Section{}
		for _, s := range f.Sections {
			if s != nil && s.Type != elf.SHT_NULL && !linksInternal(s.Type) {
				m[s.Name] = s
			}
		}
		return m
	}
	ua, ub := user(a), user(b)
	if len(ua) != len(ub) {
		t.Fatalf("%d sections written, %d read back", len(ua), len(ub))
	}
	for name, sa := range ua {
		sb := ub[name]
		switch {
		case sb == nil:
			t.Fatalf("section %q lost", name)
		case sa.Type != sb.Type || sa.Flags != sb.Flags || sa.Size != sb.Size || !bytes.Equal(sa.Data, sb.Data):
			t.Fatalf("section %q: %v %v %d bytes written, %v %v %d read back", name, sa.Type, sa.Flags, sa.Size, sb.Type, sb.Flags, sb.Size)
		case len(sa.Relocs) != len(sb.Relocs) || len(sa.Livepatch) != len(sb.Livepatch):
			t.Fatalf("section %q: %d+%d relocations written, %d+%d read back", name, len(sa.Relocs), len(sa.Livepatch), len(sb.Relocs), len(sb.Livepatch))
		}
		for i, ra := range sa.Relocs {
			rb := sb.Relocs[i]
			if ra.Offset != rb.Offset || ra.Type != rb.Type || ra.Addend != rb.Addend || symName(ra.Sym) != symName(rb.Sym) {
				t.Fatalf("section %q: relocation %d %+v written, %+v read back", name, i, ra, rb)
			}
		}
	}
}

func symName(s *Symbol) string {
	if s == nil {
		return ""
	}
	if s.IsSection() && s.Section != nil {
		return "section " + s.Section.Name
	}
	return s.Name
}
