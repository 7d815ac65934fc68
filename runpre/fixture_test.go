package runpre

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
)

// fixture is a real sequence from Debian's kernel (see
// testdata/README.md): a function's pre code and the running code of
// every kallsyms symbol of its name, with the kallsyms lines it needs.
type fixture struct {
	Source   string        `json:"source"`
	Function pack.Function `json:"function"`
	Memory   []window      `json:"memory"`
	Kallsyms string        `json:"kallsyms"`
	syms     *kallsyms.Table
}

type window struct {
	Addr uint64 `json:"addr"`
	Code []byte `json:"code"`
}

// Read serves the fixture's windows as kernel memory.
func (f *fixture) Read(addr uint64, n int) ([]byte, error) {
	for _, w := range f.Memory {
		if addr >= w.Addr && addr+uint64(n) <= w.Addr+uint64(len(w.Code)) {
			return w.Code[addr-w.Addr : addr-w.Addr+uint64(n)], nil
		}
	}
	return nil, fmt.Errorf("%#x+%d is not in the fixture", addr, n)
}

func loadFixture(t testing.TB, name string) *fixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if f.syms, err = kallsyms.Parse(strings.NewReader(f.Kallsyms)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &f
}

// rules returns the distinct rules of a match's steps.
func rules(steps []Step) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range steps {
		if !seen[s.Rule] {
			seen[s.Rule] = true
			out = append(out, s.Rule)
		}
	}
	return out
}
