package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/pack"
)

// TestModule applies a fix to a module, binfmt_misc: bm_entry_read
// replaced by code that reads the module's own static "enabled".
//
// With the module loaded: check reads the module's running code, apply
// patches it live, the registered format's file shows the fix, undo
// restores it and the function's bytes are what they were. With the
// module not loaded: check and apply read its .ko, list says the
// function waits, and the fix is there from the first read after insmod;
// rmmod while patched works, and a second insmod is patched again. Undone
// once with the module loaded and once with it gone; the module then
// loads unpatched. No livesplice module is left, and the kernel log is
// clean.
func TestModule(t *testing.T) {
	s, bin := newSetup(t)
	packPath, m := buildPack(t, s, demo.Module, "module.tar.xz", demo.ModuleFunction)
	if f := m.Functions[0]; f.Object != demo.ModuleName || f.Source != "fs/binfmt_misc.o" {
		t.Fatalf("the pack replaces %s of %s (%s), want binfmt_misc's", f.Name, f.Object, f.Source)
	}
	if !slices.Contains(m.Symbols, pack.Symbol{Name: "enabled", Object: demo.ModuleName}) {
		t.Errorf("the pack does not resolve binfmt_misc's enabled: symbols %v", m.Symbols)
	}
	files, err := s.ModuleFiles()
	if err != nil {
		t.Fatal(err)
	}
	steps := boot(t, s, bin, map[string]string{"module.tar.xz": packPath}, "module", files...)
	for _, step := range []string{"check-file", "load", "check-loaded", "apply-loaded", "list-live", "patched", "undo-loaded", "undone",
		"unload", "apply-waiting", "list-waiting", "load-patched", "reload", "undo-live", "undo-waiting", "refuse-other", "modules"} {
		t.Logf("%s:\n%s", step, steps[step])
	}
	const (
		fn       = "bm_entry_read [binfmt_misc]"
		original = "entry: enabled"
		fixed    = "entry: disabled"
	)
	checkSteps(t, steps, []stepWant{
		{"check-file", 0, []string{"binfmt-entry fits the running kernel:", "module binfmt_misc: code read from /lib/modules/" + s.Tree.Release +
			"/kernel/fs/binfmt_misc.ko (module binfmt_misc, not loaded", fn + " at 0x"}},
		{"load", 0, []string{original}},
		{"check-loaded", 0, []string{"module binfmt_misc: code read from /proc/kcore (module binfmt_misc, loaded)"}},
		{"apply-loaded", 0, []string{"applied binfmt-entry: " + fn + " live"}},
		{"undo-loaded", 0, []string{"undone binfmt-entry"}},
		{"unload", 0, nil},
		{"apply-waiting", 0, []string{"applied binfmt-entry: " + fn + " waiting", "not loaded: binfmt_misc; the update takes effect when it loads"}},
	})
	checkContains(t, steps, "list-live", "binfmt-entry", "applied", fn+" live")
	// The fix follows binfmt_misc's own switch, which only the running
	// module's "enabled" can tell.
	if got := steps["patched"]; got != fixed+"\n"+original {
		t.Errorf("patched: got\n%s\nwant\n%s\n%s", got, fixed, original)
	}
	checkContains(t, steps, "undone", original)
	if before, after := steps["text-before"], steps["text-after"]; !strings.Contains(before, "sha256:") || before != after {
		t.Errorf("bm_entry_read's bytes changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	checkContains(t, steps, "list-waiting", fn+" waiting", "waiting: patched when binfmt_misc loads")
	// Patched as it loads: the first read already has the fix.
	checkContains(t, steps, "load-patched", "@@rc 0", fixed, fn+" live")
	checkContains(t, steps, "reload", fn+" waiting", fixed)
	if rc := strings.Count(steps["reload"], "@@rc 0"); rc != 2 {
		t.Errorf("reload: rmmod and insmod of the patched module did not both succeed:\n%s", steps["reload"])
	}
	checkContains(t, steps, "undo-live", "undone binfmt-entry", original)
	// Undone while the module is gone: it then loads unpatched.
	checkContains(t, steps, "undo-waiting", "undone binfmt-entry", original)
	if w := steps["undo-waiting"]; strings.Count(w, "@@rc 0") != 4 || strings.Contains(w, fixed) || strings.Contains(w, "binfmt-entry  applied") {
		t.Errorf("undo-waiting: apply, undo, insmod and rmmod did not all succeed, or the module loaded patched:\n%s", w)
	}
	// Another build of the module, whose patch site differs, is refused as
	// it loads; the update keeps waiting, and the real one loads patched.
	checkContains(t, steps, "refuse-other", "other build: refused", "binfmt_misc in /proc/modules: 0", fn+" waiting", "last error:  mismatch: binfmt_misc: bm_entry_read+0x5: expected 41 57 41 56 49, found 41 56 41 56 49", fixed, "undone binfmt-entry")
	if !strings.Contains(steps["dmesg"], "binfmt-entry: refusing to load module binfmt_misc: mismatch: binfmt_misc: bm_entry_read+0x5") {
		t.Error("the kernel log does not say why binfmt_misc's other build was refused")
	}
	if !strings.Contains(steps["modules"], "none") {
		t.Errorf("a livesplice module or binfmt_misc stayed loaded:\n%s", steps["modules"])
	}
	for _, w := range []string{"binfmt-entry: patched module binfmt_misc as it loads", "binfmt-entry: module binfmt_misc is going"} {
		if !strings.Contains(steps["dmesg"], w) {
			t.Errorf("the kernel log lacks %q", w)
		}
	}
}
