package kallsyms

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const sample = `ffffffff81000000 T _text
ffffffff81000000 T startup_64
ffffffff812a3b40 t cmdline_proc_show
ffffffff812a3b70 t proc_show
ffffffff812a3c00 T seq_puts
ffffffff813a0000 t proc_show
ffffffff82000000 D saved_command_line
ffffffffc0000000 t proc_show	[loop]
`

func TestUnique(t *testing.T) {
	tab, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		addr    uint64
		missing bool
		dups    int
	}{
		{name: "cmdline_proc_show", addr: 0xffffffff812a3b40},
		{name: "saved_command_line", addr: 0xffffffff82000000},
		{name: "proc_show", dups: 2},
		{name: "nosuch", missing: true},
	}
	for _, tt := range tests {
		s, err := tab.Unique(tt.name)
		var le *LookupError
		switch {
		case tt.missing || tt.dups > 0:
			if !errors.As(err, &le) || le.Count != tt.dups {
				t.Errorf("Unique(%s) = %v, want LookupError with count %d", tt.name, err, tt.dups)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q does not name %s", err, tt.name)
			}
		case err != nil:
			t.Errorf("Unique(%s): %v", tt.name, err)
		case s.Addr != tt.addr:
			t.Errorf("Unique(%s) = %#x, want %#x", tt.name, s.Addr, tt.addr)
		}
	}
	s, _ := tab.Unique("cmdline_proc_show")
	if got := tab.Extent(s); got != 0x30 {
		t.Errorf("Extent(cmdline_proc_show) = %#x, want 0x30", got)
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"zeros", "0000000000000000 T _text\n0000000000000000 t foo\n", "all addresses are zero"},
		{"garbage", "hello\n", "line 1"},
		{"badaddr", "zzzz T foo\n", "bad address"},
		{"empty", "", "no symbols"},
		{"module not bracketed", "ffffffff81000000 T _text\nffffffffc0000000 t f loop\n", `line 2: "ffffffffc0000000 t f loop": module "loop" is not [NAME]`},
		{"module empty", "ffffffffc0000000 t f\t[]\n", "module \"[]\" is not [NAME]"},
		{"fifth field", "ffffffffc0000000 t f [loop] x\n", "line 1"},
		{"line too long", "ffffffff81000000 T _text\nffffffff81000000 T " + strings.Repeat("x", maxLine) + "\n", "line 2: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want error containing %q", tt.name, err, tt.want)
		}
		var se *SyntaxError
		if typed := errors.As(err, &se) || errors.Is(err, ErrEmpty) || errors.Is(err, ErrRestricted); !typed {
			t.Errorf("%s: error %v is neither a SyntaxError, ErrEmpty nor ErrRestricted", tt.name, err)
		}
	}
}

// modSample has a module, binfmt_misc, with a static name of its own used
// twice (two objects), one vmlinux also has, and another module.
const modSample = `ffffffff81000000 T _text
ffffffff812a3b40 t entries
ffffffff812a3c00 T seq_puts
ffffffffc0100000 t bm_status_read	[binfmt_misc]
ffffffffc0100080 t entries	[binfmt_misc]
ffffffffc0100040 t entries	[binfmt_misc]
ffffffffc0100100 t bm_status_write	[binfmt_misc]
ffffffffc0200000 t entries	[loop]
`

func TestModuleScope(t *testing.T) {
	tab, err := Parse(strings.NewReader(modSample))
	if err != nil {
		t.Fatal(err)
	}
	bm := tab.In("binfmt_misc")
	tests := []struct {
		name   string
		tab    *Table
		lookup string
		want   []uint64
	}{
		{"vmlinux sees no module", tab, "entries", []uint64{0xffffffff812a3b40}},
		{"vmlinux alias", tab.In("vmlinux"), "entries", []uint64{0xffffffff812a3b40}},
		{"module's own first", bm, "entries", []uint64{0xffffffffc0100040, 0xffffffffc0100080}},
		{"vmlinux for what the module lacks", bm, "seq_puts", []uint64{0xffffffff812a3c00}},
		{"no other module", bm, "nosuch", nil},
		{"other module", tab.In("loop"), "entries", []uint64{0xffffffffc0200000}},
	}
	for _, tt := range tests {
		var got []uint64
		for _, s := range tt.tab.Lookup(tt.lookup) {
			got = append(got, s.Addr)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Lookup(%s) = %x, want %x", tt.name, tt.lookup, got, tt.want)
		}
	}
	// Position follows the module's symbol table order, not addresses:
	// 0xffffffffc0100080 comes first in the input.
	for addr, want := range map[uint64]int{0xffffffffc0100080: 0, 0xffffffffc0100040: 1} {
		s, ok := bm.At(addr)
		if !ok || s.Name != "entries" || s.Module != "binfmt_misc" {
			t.Fatalf("At(%#x) = %+v, %v", addr, s, ok)
		}
		if pos, err := bm.Position(s); err != nil || pos != want {
			t.Errorf("Position(entries at %#x) = %d, %v; want %d", addr, pos, err, want)
		}
	}
	var le *LookupError
	if _, err := bm.Unique("entries"); !errors.As(err, &le) || le.Count != 2 || le.Module != "binfmt_misc" ||
		!strings.Contains(err.Error(), "module binfmt_misc's symbols") {
		t.Errorf("Unique(entries) in binfmt_misc = %v, want an ambiguity in the module", err)
	}
	if _, err := bm.Position(Symbol{Name: "entries", Module: "binfmt_misc", Addr: 1}); !errors.As(err, &le) {
		t.Errorf("Position of a symbol not in the table = %v, want a LookupError", err)
	}
	// At in vmlinux skips module symbols; in a module, other modules'.
	if s, _ := tab.At(0xffffffffc0100010); s.Module != "" {
		t.Errorf("vmlinux At(module address) = %+v, want a vmlinux symbol", s)
	}
	if s, _ := tab.In("loop").At(0xffffffffc0100010); s.Module == "binfmt_misc" {
		t.Errorf("loop's At(binfmt_misc address) = %+v", s)
	}
	if !tab.Loaded("binfmt_misc") || tab.Loaded("ext4") {
		t.Error("Loaded: want binfmt_misc, not ext4")
	}
	if w := tab.Without("binfmt_misc"); w.Loaded("binfmt_misc") || !w.Loaded("loop") || !tab.Loaded("binfmt_misc") {
		t.Error("Without(binfmt_misc): want binfmt_misc gone from the new table only")
	}
}

func TestWith(t *testing.T) {
	tab, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	w := tab.With([]Symbol{
		{Addr: 0xffffffffd0000100, Type: 't', Name: "f", Module: "m"},
		{Addr: 0xffffffffd0000000, Type: 't', Name: "f", Module: "m"},
	}).In("m")
	if len(tab.In("m").Lookup("f")) != 0 {
		t.Error("With changed the original table")
	}
	fs := w.Lookup("f")
	if len(fs) != 2 || fs[0].Addr != 0xffffffffd0000000 {
		t.Fatalf("Lookup(f) = %+v", fs)
	}
	if pos, _ := w.Position(fs[0]); pos != 1 {
		t.Errorf("Position of the second f in the extra symbols = %d, want 1", pos)
	}
	if got := w.Extent(fs[0]); got != 0x100 {
		t.Errorf("Extent = %#x, want 0x100", got)
	}
	if w.Max() != 0xffffffffd0000100 {
		t.Errorf("Max = %#x", w.Max())
	}
}
