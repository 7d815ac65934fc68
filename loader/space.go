package loader

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/modfile"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre"
)

// Space is one kernel object's code and symbols as run-pre matching sees
// them: vmlinux's, a loaded module's (its running code), or those of a
// module that is not loaded, from the .ko file that will load, laid out
// at addresses of our own above everything kallsyms lists.
type Space struct {
	// Object is pack.Vmlinux or a module name.
	Object string
	// Syms answers for Object (kallsyms.Table.In).
	Syms *kallsyms.Table
	// Mem holds the object's code at the addresses of Syms; nil for
	// vmlinux when the update matches none of its code.
	Mem runpre.Memory
	// Source says where the code was read from, for people.
	Source string
	// Loaded says the object is in the running kernel: false for a
	// module whose code comes from its file.
	Loaded bool
}

// own returns the symbols of the space's object called name (not
// vmlinux's, for a module).
func (sp *Space) own(name string) []kallsyms.Symbol {
	var out []kallsyms.Symbol
	for _, s := range sp.Syms.Lookup(name) {
		if s.Module == sp.Syms.Object() {
			out = append(out, s)
		}
	}
	return out
}

// objectAt says which object's symbol called name is at addr: the space's
// module, vmlinux, or "" when neither has it there (a module's reference
// to another module). In vmlinux's space every address is vmlinux's.
func (sp *Space) objectAt(name string, addr uint64) string {
	if sp.Object == pack.Vmlinux {
		return pack.Vmlinux
	}
	for _, s := range sp.Syms.Lookup(name) {
		if s.Addr == addr {
			if s.Module == "" {
				return pack.Vmlinux
			}
			return s.Module
		}
	}
	return ""
}

// spaces opens the objects the manifest's functions and anchors live in.
type spaces struct {
	l      *Loader
	syms   *kallsyms.Table
	byName map[string]*Space
	// kcore is the running kernel's memory, opened once; kerr why not.
	kcore  runpre.Memory
	kerr   error
	closer func()
	// next is where the next module file is laid out.
	next uint64
}

// modulesDir is where module files are: default /lib/modules/RELEASE.
func (l *Loader) modulesDir() (string, error) {
	if l.Modules != "" {
		return l.Modules, nil
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", err
	}
	return "/lib/modules/" + unix.ByteSliceToString(uts.Release[:]), nil
}

// openSpaces opens vmlinux's space (always: its symbols serve every plan)
// and one per module the manifest's functions and anchors live in.
func (l *Loader) openSpaces(m *pack.Manifest, syms *kallsyms.Table) (map[string]*Space, func(), error) {
	ss := &spaces{l: l, syms: syms, byName: map[string]*Space{}, closer: func() {}}
	ss.next = (syms.Max() + 2<<20) &^ (1<<20 - 1)
	objects := []string{pack.Vmlinux}
	seen := map[string]bool{pack.Vmlinux: true}
	vmlinuxCode := false
	for _, fs := range [][]pack.Function{m.Functions, m.Anchors} {
		for _, f := range fs {
			vmlinuxCode = vmlinuxCode || f.Object == pack.Vmlinux
			if !seen[f.Object] {
				seen[f.Object] = true
				objects = append(objects, f.Object)
			}
		}
	}
	for _, obj := range objects {
		var sp *Space
		var err error
		if obj == pack.Vmlinux {
			sp, err = ss.vmlinux(m.ID, vmlinuxCode)
		} else {
			sp, err = ss.module(m.ID, obj)
		}
		if err != nil {
			ss.closer()
			return nil, nil, err
		}
		ss.byName[obj] = sp
	}
	return ss.byName, ss.closer, nil
}

// memory opens /proc/kcore once.
func (ss *spaces) memory() (runpre.Memory, error) {
	if ss.kcore == nil && ss.kerr == nil {
		mem, source, closeMem, err := ss.l.openMemory(ss.syms)
		if err != nil {
			ss.kerr = err
			return nil, err
		}
		ss.kcore, ss.closer = sourced{mem, source}, closeMem
	}
	return ss.kcore, ss.kerr
}

// sourced is memory that says where it reads from.
type sourced struct {
	runpre.Memory
	source string
}

func (ss *spaces) vmlinux(id string, code bool) (*Space, error) {
	sp := &Space{Object: pack.Vmlinux, Syms: ss.syms, Loaded: true}
	if !code {
		return sp, nil
	}
	mem, err := ss.memory()
	if err != nil {
		return nil, refuse(KindMismatch, id, err, "cannot read the running kernel's code to compare it")
	}
	sp.Mem, sp.Source = mem, mem.(sourced).source
	return sp, nil
}

// module opens the space of module name: its running code when it is
// loaded and /proc/kcore can be read, else its file.
func (ss *spaces) module(id, name string) (*Space, error) {
	state, err := os.ReadFile(filepath.Join(ss.l.sysModule(), name, "initstate"))
	if st := strings.TrimSpace(string(state)); err == nil && st != "live" {
		return nil, refuse(KindState, id, nil, "module %s is %s right now; try again once it is loaded or gone", name, st)
	}
	loaded := ss.syms.Loaded(name)
	if loaded {
		if mem, err := ss.memory(); err == nil {
			return &Space{Object: name, Syms: ss.syms.In(name), Mem: mem, Loaded: true,
				Source: fmt.Sprintf("%s (module %s, loaded)", mem.(sourced).source, name)}, nil
		}
	}
	dir, err := ss.l.modulesDir()
	if err != nil {
		return nil, err
	}
	path, err := modfile.Find(dir, name)
	if err != nil {
		what := "is not loaded, and its file cannot be found"
		if loaded {
			what = "is loaded, but its code cannot be read and its file cannot be found"
		}
		return nil, refuse(KindSymbol, id, err, "the update replaces functions of module %s, which %s: nothing to compare the update with", name, what)
	}
	f, err := modfile.Open(path)
	if err != nil {
		return nil, refuse(KindMismatch, id, err, "cannot read module %s's code to compare it", name)
	}
	defer f.Close()
	if f.Name != name {
		return nil, refuse(KindMismatch, id, nil, "%s is module %s, not %s", path, f.Name, name)
	}
	source := fmt.Sprintf("%s (module %s, not loaded: the update takes effect when it loads)", path, name)
	if loaded {
		if err := ss.sameBuild(f, name); err != nil {
			return nil, refuse(KindMismatch, id, err, "module %s is loaded, its code cannot be read (%v), and its file is not what was loaded", name, ss.kerr)
		}
		source = fmt.Sprintf("%s (module %s, loaded: build-id checked; %v)", path, name, ss.kerr)
	}
	im, err := f.Layout(ss.next, func(sym string) (uint64, bool) {
		s, err := ss.syms.Unique(sym)
		return s.Addr, err == nil
	})
	if err != nil {
		return nil, refuse(KindMismatch, id, err, "cannot lay out module %s's code to compare it", name)
	}
	ss.next = (im.End + 2<<20) &^ (1<<20 - 1)
	return &Space{Object: name, Syms: ss.syms.Without(name).With(im.Symbols).In(name), Mem: im, Source: source, Loaded: loaded}, nil
}

// sameBuild checks that module file f is what is loaded as module name:
// same build-id as /sys/module/NAME/notes/.note.gnu.build-id.
func (ss *spaces) sameBuild(f *modfile.File, name string) error {
	want, err := f.BuildID()
	if err != nil {
		return err
	}
	note, err := os.ReadFile(filepath.Join(ss.l.sysModule(), name, "notes", ".note.gnu.build-id"))
	if err != nil {
		return err
	}
	got, err := modfile.NoteBuildID(note)
	if err != nil {
		return err
	}
	if want == nil || !bytes.Equal(got, want) {
		return fmt.Errorf("%s has build-id %x, the loaded module %x", f.Path, want, got)
	}
	return nil
}
