package loader

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre"
)

// coldSymtab adds to symtab a cold part of cmdline_proc_show and a static,
// twice in kallsyms, that only the cold part refers to.
const coldSymtab = symtab + `ffffffff81500000 t cmdline_proc_show.cold
ffffffff82000100 b counter
ffffffff82000200 b counter
`

// TestMakePlanCold: a replaced function's cold part (runpre's Match.Parts)
// gets its address from its match, for the helper's stack check, and what
// only the cold part's code refers to is located through it.
func TestMakePlanCold(t *testing.T) {
	syms, err := kallsyms.Parse(strings.NewReader(coldSymtab))
	if err != nil {
		t.Fatal(err)
	}
	part := func(counter uint64) *runpre.Match {
		return &runpre.Match{Name: "cmdline_proc_show.cold", Addr: 0xffffffff81500000, Derived: map[string]runpre.Derivation{
			"cmdline_proc_show":  {Symbol: "cmdline_proc_show", Addr: 0xffffffff81300000},
			"saved_command_line": {Symbol: "saved_command_line", Addr: 0xffffffff82000010},
			"counter":            {Symbol: "counter", Addr: counter},
		}}
	}
	m := demoManifest()
	m.Functions[0].Cold = []pack.Function{{Name: "cmdline_proc_show.cold", Object: pack.Vmlinux, Size: 3, PreCode: []byte{0xc3, 0xcc, 0xcc}}}
	m.Symbols = append(m.Symbols, vmlinuxSymbols("cmdline_proc_show.cold", "counter")...)

	matches := demoMatches(t, m, syms)
	matches[0].Parts = []*runpre.Match{part(0xffffffff82000200)}
	plan, err := MakePlan(m, vmlinuxSpaces(syms), matches, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{0xffffffff81000000, 0xffffffff81300000, 0xffffffff81300100, 0xffffffff81500000, 0xffffffff82000200}; !slices.Equal(plan.Addrs, want) {
		t.Errorf("Addrs = %x, want %x", plan.Addrs, want)
	}

	// Without the part's match its name and the static cannot be told.
	matches[0].Parts = nil
	_, err = MakePlan(m, vmlinuxSpaces(syms), matches, nil)
	var le *Error
	if !errors.As(err, &le) || le.Kind != KindSymbol || !strings.Contains(err.Error(), "counter is ambiguous") {
		t.Errorf("MakePlan without the cold part's match = %v, want counter refused as ambiguous", err)
	}

	// The part's references must agree with the function's.
	bad := part(0xffffffff82000200)
	bad.Derived["saved_command_line"] = runpre.Derivation{Symbol: "saved_command_line", Addr: 0xffffffff82000018}
	matches[0].Parts = []*runpre.Match{bad}
	_, err = MakePlan(m, vmlinuxSpaces(syms), matches, nil)
	if !errors.As(err, &le) || le.Kind != KindSymbol || !strings.Contains(err.Error(), "saved_command_line") {
		t.Errorf("MakePlan with a disagreeing cold part = %v, want a refusal naming saved_command_line", err)
	}
}
