package kallsyms

import (
	"errors"
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
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}
