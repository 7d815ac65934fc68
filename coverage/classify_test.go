package coverage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/module"
)

// Refusal texts as the builder writes them: "OBJECT: SYMBOL (section
// SECTION): REASON", the reasons in the differ's words.
const (
	coldText       = "net/ipv4/arp.o: arp_ioctl (section .text.arp_ioctl): has a .cold part (arp_ioctl.cold, moved out by gcc): not supported by this cut"
	dataText       = "net/ipv4/arp.o: arp_tbl (section .data.arp_tbl): initialised data .data.arp_tbl changed: not supported"
	layoutText     = "net/ipv4/arp.o: struct neighbour (section .debug_info): layout of struct neighbour changed (size 400 -> 408): code that is not replaced and data already allocated in the running kernel use the old layout"
	keyText        = "kernel/sys.o: prctl_set_mm (section .text.prctl_set_mm): reference to __tracepoint_foo at offset 0x10 lies in an instruction the module loader rewrites (__jump_table in .text.prctl_set_mm) before the update's init can fix it up: __tracepoint_foo is not exported"
	initText       = "init/main.o: start_kernel (section .init.text): __init function changed: it already ran"
	noCodeText     = "the patch changes no function's code"
	unexportedText = "kernel/sys.o: prctl_set_mm (section .text.prctl_set_mm): reference to secret_sym at offset 0x10: secret_sym is not exported"
	siteText       = "kernel/sys.o: f (section .text.f): function is 4 bytes: too short for the 5-byte jump (patch site [0, 5) of the pre function)"
)

func TestClassifyBuild(t *testing.T) {
	names := Names{Tree: "/cache/trees/6.1.0-53-amd64", Patch: "/corpus/net__ipv4__arp.c.patch", Object: "net/ipv4/arp.o", Work: "/cache/work/c-arp"}
	refused := func(rs ...builder.Refusal) error {
		return fmt.Errorf("building: %w", &builder.RefusedError{Patch: "/corpus/net__ipv4__arp.c.patch", Refusals: rs})
	}
	cold := builder.Refusal{Kind: differ.RefuseOther, Text: coldText}
	data := builder.Refusal{Kind: differ.RefuseData, Text: dataText}
	layout := builder.Refusal{Kind: differ.RefuseLayout, Text: layoutText}
	key := builder.Refusal{Kind: differ.RefuseReference, Text: keyText}
	unexported := builder.Refusal{Kind: differ.RefuseReference, Text: unexportedText}
	site := builder.Refusal{Kind: differ.RefuseSite, Text: siteText}
	init := builder.Refusal{Kind: differ.RefuseOther, Text: initText}
	noCode := builder.Refusal{Kind: differ.RefuseOther, Text: noCodeText}
	// The kind decides, not the words: a data refusal worded like a
	// site one is data.
	dataWorded := builder.Refusal{Kind: differ.RefuseData, Text: siteText}
	tests := []struct {
		name     string
		err      error
		want     Category
		reason   string
		refusals []Category
	}{
		{"built", nil, Built, "", nil},
		{"cold", refused(cold), Cold,
			"OBJ: arp_ioctl (section .text.arp_ioctl): has a .cold part (arp_ioctl.cold, moved out by gcc): not supported by this cut", []Category{Cold}},
		{"data decides over cold", refused(cold, data), DataChanged,
			"OBJ: arp_tbl (section .data.arp_tbl): initialised data .data.arp_tbl changed: not supported", []Category{Cold, DataChanged}},
		{"layout", refused(layout), Layout, "", []Category{Layout}},
		{"static key", refused(key), StaticKey, "", []Category{StaticKey}},
		{"unexported", refused(unexported, key), StaticKey, "", []Category{Unexported, StaticKey}},
		{"site", refused(site), PatchSite, "", []Category{PatchSite}},
		{"kind decides", refused(dataWorded), DataChanged, "", []Category{DataChanged}},
		{"cold before __init", refused(init, cold), Cold, "", []Category{InitCode, Cold}},
		{"no code", refused(noCode), NoCode, noCodeText, []Category{NoCode}},
		{"nothing to do", fmt.Errorf("x: %w", &builder.NothingToDoError{Patch: "/corpus/net__ipv4__arp.c.patch"}), NothingToDo, "", nil},
		{"next boot", &builder.NothingToDoError{Patch: "/corpus/init__main.c.patch", NextBoot: []string{"init/main.o: start_kernel (.init.text)"}}, NothingToDo,
			"init/main.o: start_kernel (.init.text)", nil},
		{"unknown reason", refused(builder.Refusal{Text: "net/ipv4/arp.o: x (section .text.x): something new"}), OtherRefusal,
			"OBJ: x (section .text.x): something new", []Category{OtherRefusal}},
		{"does not compile alone", fmt.Errorf("x: %w", &builder.CompileError{Patch: "/corpus/net__ipv4__arp.c.patch", Object: "net/ipv4/arp.o",
			FirstError: "net/ipv4/arp.c:10:5: error: implicit declaration of function 'new_helper'"}), NotAlone,
			"OBJ: net/ipv4/arp.c:10:5: error: implicit declaration of function 'new_helper'", nil},
		{"pristine does not build", &builder.CompileError{Object: "drivers/gpu/x.o", FirstError: "x.c:23:10: fatal error: pp_debug.h: No such file or directory", Pristine: true},
			PreBroken, "drivers/gpu/x.o: x.c:23:10: fatal error: pp_debug.h: No such file or directory", nil},
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
		if !r.c.Known() {
			t.Errorf("rule for %s: category not in the report's list", r.c)
		}
	}
	// Every kind the differ has (its String names the unknown ones by
	// number) has a category.
	for k := differ.RefuseOther + 1; k.String() != fmt.Sprintf("refusal kind %d", int(k)); k++ {
		if _, ok := kindCategory[k]; !ok {
			t.Errorf("refusal kind %s has no category in kindCategory", k)
		}
	}
	for k, c := range kindCategory {
		if !c.Known() {
			t.Errorf("refusal kind %s: category %s not in the report's list", k, c)
		}
	}
}
