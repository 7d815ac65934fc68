package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/pack"
)

func TestLockSerializes(t *testing.T) {
	var notes strings.Builder
	l := &Loader{LockFile: filepath.Join(t.TempDir(), "run", "lock"), LockWait: 500 * time.Millisecond, Notify: &notes}
	unlock, err := l.lock("apply", "first")
	if err != nil {
		t.Fatal(err)
	}
	if h, held := l.holder(); !held || h.String() != fmt.Sprintf("livesplice apply first (pid %d)", os.Getpid()) {
		t.Errorf("holder = %v, %v, want this process's apply of first", h, held)
	}
	start := time.Now()
	_, err = l.lock("undo", "second")
	var le *Error
	if !errors.As(err, &le) || le.Kind != KindState || !strings.Contains(err.Error(), "livesplice apply first (pid") {
		t.Errorf("second lock = %v, want a state refusal naming the holder", err)
	}
	if time.Since(start) < l.LockWait {
		t.Errorf("second lock gave up after %s, before LockWait %s", time.Since(start), l.LockWait)
	}
	if !strings.Contains(notes.String(), "waiting for livesplice apply first") {
		t.Errorf("no word of the wait: %q", notes.String())
	}
	unlock()
	if _, held := l.holder(); held {
		t.Error("still held after unlock")
	}
	unlock, err = l.lock("undo", "second")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock()
}

// fakeUpdate writes the sysfs directory of an update module with state
// and the extra files.
func fakeUpdate(t *testing.T, root, id, state string, extra map[string]string) {
	t.Helper()
	d := filepath.Join(root, pack.ModuleName(id), "livesplice")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"id": id + "\n", "state": state + "\n",
		"functions": "cmdline_proc_show vmlinux 0xffffffff81300000 0xffffffffc0001000 5 off\n"}
	for name, data := range extra {
		files[name] = data
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListExplainsLeftovers(t *testing.T) {
	root := t.TempDir()
	fakeUpdate(t, root, "left-apply", "loaded", nil)
	fakeUpdate(t, root, "left-undo", "loaded", map[string]string{"undo_stop_ns": "900000\n"})
	fakeUpdate(t, root, "at-work", "loaded", nil)
	fakeUpdate(t, root, "applied", "applied", nil)
	l := &Loader{SysModule: root, LockFile: filepath.Join(root, "lock")}
	other := &Loader{LockFile: l.LockFile}
	unlock, err := other.lock("apply", "at-work")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	all, err := l.List()
	if err != nil || len(all) != 4 {
		t.Fatalf("List = %v, %v", all, err)
	}
	for _, tt := range []struct {
		id   string
		left Leftover
		note string
	}{
		{"applied", "", ""},
		{"at-work", LeftAtWork, "loaded, not applied yet: livesplice apply at-work (pid"},
		{"left-apply", LeftApply, "an apply was interrupted after loading the module, before patching; the kernel code is unchanged; `livesplice undo left-apply` unloads it"},
		{"left-undo", LeftUndo, "undone, not unloaded: an undo restored the code and was interrupted before unloading the module; `livesplice undo left-undo` unloads it"},
	} {
		s, err := findStatus(tt.id, all)
		if err != nil {
			t.Fatal(err)
		}
		if s.Leftover != tt.left || !strings.Contains(s.Note, tt.note) || (tt.note == "") != (s.Note == "") {
			t.Errorf("%s: leftover %q, note %q; want %q, %q", tt.id, s.Leftover, s.Note, tt.left, tt.note)
		}
	}
	// Apply and undo hold the lock themselves: to them nobody else is at
	// work, and the update is a leftover of an interrupted apply.
	mine, err := l.list(lockHolder{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := findStatus("at-work", mine); s.Leftover != LeftApply {
		t.Errorf("list under the lock: at-work is %q, want %q", s.Leftover, LeftApply)
	}
}

// TestApplyRefusesBeforeLoading checks the refusals Apply decides from
// the updates loaded, before it checks the pack or touches the kernel.
func TestApplyRefusesBeforeLoading(t *testing.T) {
	root := t.TempDir()
	fakeUpdate(t, root, "demo", "applied", nil)
	fakeUpdate(t, root, "other", "applied", nil)
	l := &Loader{SysModule: root, LockFile: filepath.Join(root, "lock")}
	for _, tt := range []struct {
		id, want string
	}{
		{"demo", "already applied (livesplice list shows it); `livesplice undo demo` takes it out"},
		{"third", "function cmdline_proc_show is already replaced by update demo; undo that first"},
	} {
		m := *demoManifest()
		m.ID, m.ModuleName = tt.id, pack.ModuleName(tt.id)
		_, err := l.Apply(&pack.Pack{Manifest: m})
		var le *Error
		if !errors.As(err, &le) || le.Kind != KindState || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Apply(%s) = %v, want a state refusal %q", tt.id, err, tt.want)
		}
	}
	if _, held := l.holder(); held {
		t.Error("Apply kept the lock")
	}
	_, err := l.Undo("nothing")
	var le *Error
	if !errors.As(err, &le) || le.Kind != KindState {
		t.Errorf("Undo(nothing) = %v, want a state refusal", err)
	}
}

func TestFaults(t *testing.T) {
	l := &Loader{Fault: "apply:typo"}
	if _, err := l.Apply(&pack.Pack{Manifest: *demoManifest()}); err == nil || !strings.Contains(err.Error(), `"apply:typo": no such point`) {
		t.Errorf("Apply with an unknown fault = %v", err)
	}
	m := demoManifest()
	m.Symbols = append([]pack.Symbol{{Name: "seq_putc", Object: "ext4"}}, m.Symbols...)
	plan := &Plan{Addrs: []uint64{7, 0xffffffff81000000, 0xffffffff81300000}}
	image := []byte("0123456789")
	for _, tt := range []struct {
		fault string
		image string
		addrs []uint64
	}{
		{"", "0123456789", plan.Addrs},
		{FaultApplyAfterLoad, "0123456789", plan.Addrs},
		{FaultBadImage, "01234", plan.Addrs},
		{FaultBadAddr, "0123456789", []uint64{7, 0xffffffff81000001, 0xffffffff81300000}},
	} {
		l := &Loader{Fault: tt.fault}
		gotImage, gotPlan := l.faulty(m, image, plan)
		if string(gotImage) != tt.image || fmt.Sprint(gotPlan.Addrs) != fmt.Sprint(tt.addrs) {
			t.Errorf("%q: image %q, addrs %x; want %q, %x", tt.fault, gotImage, gotPlan.Addrs, tt.image, tt.addrs)
		}
	}
	if fmt.Sprint(plan.Addrs) != fmt.Sprint([]uint64{7, 0xffffffff81000000, 0xffffffff81300000}) {
		t.Errorf("faulty changed the plan it was given: %x", plan.Addrs)
	}
}
