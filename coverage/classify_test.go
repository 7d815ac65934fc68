package coverage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/module"
)

// Refusal texts as the builder writes them: "OBJECT: SYMBOL (section
// SECTION): REASON", the reasons in the differ's words.
const (
	coldText   = "net/ipv4/arp.o: arp_ioctl (section .text.arp_ioctl): has a .cold part (arp_ioctl.cold, moved out by gcc): not supported by this cut"
	dataText   = "net/ipv4/arp.o: arp_tbl (section .data.arp_tbl): initialised data .data.arp_tbl changed: not supported"
	layoutText = "net/ipv4/arp.o: struct neighbour (section .debug_info): layout of struct neighbour changed (size 400 -> 408): code that is not replaced and data already allocated in the running kernel use the old layout"
	keyText    = "kernel/sys.o: prctl_set_mm (section .text.prctl_set_mm): reference to __tracepoint_foo at offset 0x10 lies in an instruction the module loader rewrites (__jump_table in .text.prctl_set_mm) before the update's init can fix it up: __tracepoint_foo is not exported"
	initText   = "init/main.o: start_kernel (section .init.text): __init function changed: it already ran"
	noCodeText = "the patch changes no function's code"
)

func TestClassifyBuild(t *testing.T) {
	names := Names{Tree: "/cache/trees/6.1.0-53-amd64", Patch: "/corpus/net__ipv4__arp.c.patch", Object: "net/ipv4/arp.o", Work: "/cache/work/c-arp"}
	refused := func(texts ...string) error {
		re := &builder.RefusedError{Patch: "/corpus/net__ipv4__arp.c.patch"}
		for _, t := range texts {
			re.Refusals = append(re.Refusals, builder.Refusal{Text: t})
		}
		return fmt.Errorf("building: %w", re)
	}
	tests := []struct {
		name     string
		err      error
		want     Category
		reason   string
		refusals []Category
	}{
		{"built", nil, Built, "", nil},
		{"cold", refused(coldText), Cold,
			"OBJ: arp_ioctl (section .text.arp_ioctl): has a .cold part (arp_ioctl.cold, moved out by gcc): not supported by this cut", []Category{Cold}},
		{"data decides over cold", refused(coldText, dataText), DataChanged,
			"OBJ: arp_tbl (section .data.arp_tbl): initialised data .data.arp_tbl changed: not supported", []Category{Cold, DataChanged}},
		{"layout", refused(layoutText), Layout, "", []Category{Layout}},
		{"static key before unexported", refused(keyText), StaticKey, "", []Category{StaticKey}},
		{"cold before __init", refused(initText, coldText), Cold, "", []Category{InitCode, Cold}},
		{"no code", refused(noCodeText), NoCode, noCodeText, []Category{NoCode}},
		{"nothing to do", fmt.Errorf("x: %w", &builder.NothingToDoError{Patch: "/corpus/net__ipv4__arp.c.patch"}), NothingToDo, "", nil},
		{"next boot", &builder.NothingToDoError{Patch: "/corpus/init__main.c.patch", NextBoot: []string{"init/main.o: start_kernel (.init.text)"}}, NothingToDo,
			"init/main.o: start_kernel (.init.text)", nil},
		{"unknown reason", refused("net/ipv4/arp.o: x (section .text.x): something new"), OtherRefusal,
			"OBJ: x (section .text.x): something new", []Category{OtherRefusal}},
		{"update module", fmt.Errorf("module: make in /cache/work/c-arp/module: %w: exit status 2\nERROR: modpost: ...", module.ErrBuild), UpdateModule,
			"module: make in WORK/module: " + module.ErrBuild.Error() + ": exit status 2", nil},
		{"timeout", fmt.Errorf("make -j2 net/ipv4/arp.o in /cache/trees/6.1.0-53-amd64: %w", context.DeadlineExceeded), BuildTimeout,
			"make -j2 OBJ in TREE: context deadline exceeded", nil},
		{"module object, untyped", errors.New("object net/ipv4/arp.o is part of a module, not of vmlinux: patching modules is not supported yet"), ModuleObject,
			"object OBJ is part of a module, not of vmlinux: patching modules is not supported yet", nil},
		{"other", errors.New("patch /corpus/net__ipv4__arp.c.patch: something broke\ndetails in /cache/trees/6.1.0-53-amd64"), OtherError, "patch PATCH: something broke", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ClassifyBuild(tc.err, names)
			if got.Category != tc.want {
				t.Errorf("category %q (%s), want %q", got.Category, got.Reason, tc.want)
			}
			if tc.reason != "" && got.Reason != tc.reason && !strings.HasSuffix(got.Reason, " "+tc.reason) {
				t.Errorf("reason %q, want %q", got.Reason, tc.reason)
			}
			var cats []Category
			for _, r := range got.Refusals {
				cats = append(cats, r.Category)
			}
			if (got.Detail != "") != (tc.want == OtherError) {
				t.Errorf("detail %q: want one for other errors only", got.Detail)
			}
			if !reflect.DeepEqual(cats, tc.refusals) {
				t.Errorf("refusals %v, want %v", cats, tc.refusals)
			}
		})
	}
}

// Every category has a title of its own, and the categories the report
// lists are distinct.
func TestCategoryTitles(t *testing.T) {
	seen := map[string]Category{}
	for _, d := range categories {
		if d.title == "" || d.title == string(d.c) {
			t.Errorf("%s has no title", d.c)
		}
		if c, dup := seen[d.title]; dup {
			t.Errorf("%s and %s have the same title %q", c, d.c, d.title)
		}
		seen[d.title] = d.c
	}
	if got := Category("new-kind").Title(); got != "new-kind" {
		t.Errorf("unknown category titled %q, want its key", got)
	}
	for _, r := range refusalRules {
		if r.c.rank() == len(categories) {
			t.Errorf("rule for %s: category not in the report's list", r.c)
		}
	}
}
