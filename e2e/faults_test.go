package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
	"github.com/livesplice/livesplice/pack"
)

// otherID is another update of the demo's function: the demo pack
// renamed (renamedPack), an id as long as the demo's.
const otherID = "demo-cmdlin2"

// TestFaults, in one boot: livesplice killed at every step of apply and
// undo, or inside the helper's control write (which finishes first),
// leaves the kernel fully patched or its text as it was, list says
// which, and apply or undo recovers; racing applies are serialized and
// never both patch the function; a pack swapped between check and apply
// is judged on its own; a module the kernel refuses, or whose init
// refuses its addresses, leaves nothing behind.
func TestFaults(t *testing.T) {
	s, bin, packPath := setup(t)
	otherPath, err := renamedPack(packPath, otherID)
	if err != nil {
		t.Fatal(err)
	}
	packs, err := demo.BadPacks(packPath)
	if err != nil {
		t.Fatal(err)
	}
	packs["demo.tar.xz"], packs["demo-b.tar.xz"] = packPath, otherPath
	// About 2 minutes on an idle 2-core host; up to twice that on a
	// loaded one.
	steps := bootWith(t, s, bin, packs, "faults", guest.Config{Timeout: 6 * time.Minute})

	const killed = 128 + 9 // the shell's status of a process killed by SIGKILL
	checkSteps(t, steps, []stepWant{
		{"kill-apply-before-load", killed, nil},
		{"recover-apply-before-load", 0, []string{"applied demo-cmdline"}},
		{"undo-1", 0, []string{"undone demo-cmdline"}},
		{"kill-apply-after-load", killed, nil},
		{"recover-apply-after-load", 0, []string{"update demo-cmdline was left loaded, not applied, by an interrupted apply: unloading it and starting over", "applied demo-cmdline"}},
		{"undo-2", 0, []string{"undone demo-cmdline"}},
		{"kill-apply-after-load-2", killed, nil},
		{"recover-undo-after-load", 0, []string{"unloaded demo-cmdline: it was loaded, not applied (an interrupted apply); the kernel code was not changed by it"}},
		{"kill-apply-after-stop", killed, nil},
		{"again-apply-after-stop", 8, []string{"already applied", "`livesplice undo demo-cmdline` takes it out"}},
		{"undo-3", 0, []string{"undone demo-cmdline"}},
		{"apply-4", 0, []string{"applied demo-cmdline"}},
		{"kill-undo-before-stop", killed, nil},
		{"recover-undo-before-stop", 0, []string{"undone demo-cmdline"}},
		{"apply-5", 0, []string{"applied demo-cmdline"}},
		{"kill-undo-after-stop", killed, nil},
		{"recover-undo-after-stop", 0, []string{"unloaded demo-cmdline: an earlier undo had restored cmdline_proc_show", "only the unload was left"}},
		{"kill-in-stop", killed, nil},
		{"undo-in-stop", 0, []string{"undone demo-cmdline"}},
		{"undo-race", 0, []string{"undone demo-cmdline"}},
		{"other-apply", 0, []string{"applied " + otherID}},
		{"other-undo", 0, []string{"undone " + otherID}},
		{"swap-check", 0, []string{"demo-cmdline fits the running kernel"}},
		{"swap-damaged", 3, []string{"/tmp/swap.tar.xz"}},
		{"swap-stale", 7, []string{"code mismatch", "cmdline_proc_show"}},
		{"bad-image", 9, []string{"module load", "loading module livesplice_demo_cmdline"}},
		{"bad-addr", 9, []string{"module load", "is not the start of"}},
	})

	// What each fault left, as list, the modules, /proc/cmdline and the
	// kernel text show it: patched (the update applied, the text
	// changed), or not (the text as it was), with the module loaded or
	// not and list's words for it.
	for _, tt := range []struct {
		look    string
		patched bool
		module  bool
		list    []string
	}{
		{"apply-before-load", false, false, nil},
		{"apply-after-load", false, true, []string{"demo-cmdline: loaded, not applied: an apply was interrupted after loading the module, before patching; the kernel code is unchanged; `livesplice undo demo-cmdline` unloads it"}},
		{"undone-after-load", false, false, nil},
		{"apply-after-stop", true, true, []string{"applied"}},
		{"undo-before-stop", true, true, []string{"applied"}},
		{"undo-after-stop", false, true, []string{"demo-cmdline: undone, not unloaded: an undo restored the code and was interrupted before unloading the module; `livesplice undo demo-cmdline` unloads it"}},
		{"in-stop", true, true, []string{"applied"}},
		{"race", true, true, []string{"applied"}},
		{"refused", false, false, nil},
	} {
		list, mods, cmdline, text := steps["list-"+tt.look], steps["modules-"+tt.look], steps["cmdline-"+tt.look], steps["text-"+tt.look]
		t.Logf("%s: list:\n%s\nmodules: %s", tt.look, list, mods)
		if rc := demo.ExitStatus(list); rc != 0 {
			t.Errorf("%s: list exited %d:\n%s", tt.look, rc, list)
		}
		checkContains(t, steps, "list-"+tt.look, tt.list...)
		if strings.Contains(list, "demo-cmdline") != tt.module || strings.Contains(mods, "livesplice_demo_cmdline") != tt.module {
			t.Errorf("%s: want the module loaded %v; list:\n%s\nmodules: %s", tt.look, tt.module, list, mods)
		}
		if strings.Contains(list, otherID) || strings.Contains(mods, pack.ModuleName(otherID)) {
			t.Errorf("%s: the other update is loaded too:\n%s\n%s", tt.look, list, mods)
		}
		unchanged := textOK(steps["text-before"]) && text == steps["text-before"]
		if tt.patched {
			if !strings.Contains(cmdline, demo.SecretHidden) || unchanged || !textOK(text) {
				t.Errorf("%s: not patched: /proc/cmdline %q, text:\n%s", tt.look, cmdline, text)
			}
		} else if !strings.Contains(cmdline, demo.Secret) || !unchanged {
			t.Errorf("%s: the kernel changed: /proc/cmdline %q, text:\n%s\nbefore:\n%s", tt.look, cmdline, text, steps["text-before"])
		}
	}
	for _, look := range []string{"apply-after-stop", "in-stop"} {
		if strings.Contains(steps["list-"+look], "not applied") {
			t.Errorf("%s: list calls a finished apply a leftover:\n%s", look, steps["list-"+look])
		}
	}

	// The race: the first apply held the lock through its stop; the
	// other update of the same function and the same pack again waited
	// for it, then were refused.
	checkContains(t, steps, "race", "first: rc 0", "applied demo-cmdline",
		"other: rc 8", "waiting for livesplice apply demo-cmdline (pid", "update "+otherID+" refused (state): function cmdline_proc_show is already replaced by update demo-cmdline; undo that first",
		"again: rc 8", "already applied")
	t.Logf("race:\n%s", steps["race"])
	if before, after := steps["text-before"], steps["text-after"]; !textOK(before) || before != after {
		t.Errorf("kernel text changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// renamedPack writes next to the pack at src the same update as update
// id, which must be as long as its own, and returns its path: its module
// is the same code with the id and the module name replaced byte for
// byte, so that it loads beside the other as another update of the same
// functions (building another pack would take minutes).
func renamedPack(src, id string) (string, error) {
	p, err := pack.ReadFile(src)
	if err != nil {
		return "", err
	}
	m := p.Manifest
	if len(id) != len(m.ID) {
		return "", fmt.Errorf("id %q is not as long as %q", id, m.ID)
	}
	image := p.Files[m.Module]
	for _, r := range [][2]string{{m.ModuleName, pack.ModuleName(id)}, {m.ID, id}} {
		if !bytes.Contains(image, []byte(r[0])) {
			return "", fmt.Errorf("%s does not hold %q", m.Module, r[0])
		}
		image = bytes.ReplaceAll(image, []byte(r[0]), []byte(r[1]))
	}
	files := maps.Clone(p.Files)
	delete(files, m.Module)
	m.ID, m.ModuleName, m.Module = id, pack.ModuleName(id), pack.ModuleName(id)+".ko"
	files[m.Module] = image
	out := filepath.Join(filepath.Dir(src), id+".tar.xz")
	return out, pack.Write(out, m, files)
}

// textOK says whether a text step printed the kernel text's hash.
func textOK(text string) bool { return strings.Count(text, "sha256:") == 1 }
