package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/livesplice/livesplice/bootimage"
	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/kcore"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre"
)

// Check is what the loader decided about an update without touching the
// kernel.
type Check struct {
	// Source says where vmlinux's running code was read from ("" when the
	// update replaces no vmlinux code).
	Source string
	// Spaces are the objects the update's functions live in, by name:
	// where their code and symbols were read from.
	Spaces map[string]*Space
	// Matches are the replaced functions found in the running code (or,
	// for a module that is not loaded, in its file), in the manifest's
	// order; Anchors the manifest's anchors.
	Matches, Anchors []*runpre.Match
	Plan             *Plan
}

// Check proves that the pack was built for the running kernel: every
// replaced function's pre code must match the running code (run-pre
// matching), which also yields the addresses of the symbols the update
// needs, and the module must be loadable here (release, build, compiler).
// A function of a module that is not loaded is matched in the module's
// file, which is what will load. The code comparison comes first: when
// the pack names another kernel but its code does not match either, the
// mismatch is what is reported.
func (l *Loader) Check(m *pack.Manifest) (*Check, error) {
	identity, err := runningIdentity(m)
	if err != nil {
		return nil, err
	}
	syms, err := kallsyms.ReadFile(l.kallsymsPath())
	if err != nil {
		return nil, refuse(KindSymbol, m.ID, err, "cannot read the kernel's symbols")
	}
	spaces, closeSpaces, err := l.openSpaces(m, syms)
	if err != nil {
		return nil, err
	}
	defer closeSpaces()
	c := &Check{Source: spaces[pack.Vmlinux].Source, Spaces: spaces}
	opts := runpre.Options{Trace: l.Debug != nil}
	for _, group := range []struct {
		what string
		fs   []pack.Function
		out  *[]*runpre.Match
	}{{"function", m.Functions, &c.Matches}, {"anchor", m.Anchors, &c.Anchors}} {
		for i := range group.fs {
			f := &group.fs[i]
			sp := spaces[f.Object]
			mt, err := find(f, sp, opts)
			l.debugMatch(group.what, f, sp.Source, mt, err)
			if err != nil {
				re := matchRefusal(m.ID, err)
				if group.what == "anchor" {
					re.Msg = fmt.Sprintf("%s (%s is not replaced; its code locates statics the update uses)", re.Msg, f.Name)
				}
				if identity != nil {
					re.Msg += fmt.Sprintf(" (besides, %s)", identity.Msg)
				}
				return nil, re
			}
			*group.out = append(*group.out, mt)
		}
	}
	if identity != nil {
		identity.Msg += "; the running code matches the pack's, but its module is built for that kernel and cannot be loaded here"
		return nil, identity
	}
	if err := checkLivepatch(m, syms); err != nil {
		return nil, err
	}
	if c.Plan, err = MakePlan(m, spaces, c.Matches, c.Anchors); err != nil {
		return nil, err
	}
	return c, nil
}

// find locates f in its object's space. A module's function must be one
// of the module's own symbols.
func find(f *pack.Function, sp *Space, opts runpre.Options) (*runpre.Match, error) {
	if f.InModule() && len(sp.own(f.Name)) == 0 {
		return nil, &kallsyms.LookupError{Name: f.Name, Module: f.Object}
	}
	return runpre.Find(f, sp.Syms, sp.Mem, opts)
}

// runningIdentity checks the pack's target against uname and
// /proc/version; a difference is returned as a refusal, not an error.
func runningIdentity(m *pack.Manifest) (*Error, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, err
	}
	procVersion, err := os.ReadFile("/proc/version")
	if err != nil {
		return nil, err
	}
	err = CheckKernel(m, unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Version[:]), string(procVersion))
	var le *Error
	if errors.As(err, &le) {
		return le, nil
	}
	return nil, err
}

// matchRefusal classifies a run-pre matching failure.
func matchRefusal(id string, err error) *Error {
	var (
		mm *runpre.Mismatch
		am *runpre.AmbiguousError
		le *kallsyms.LookupError
	)
	switch {
	case errors.As(err, &mm):
		return refuse(KindMismatch, id, nil, "the running code is not what the update was built from: %v; nothing was changed: use a pack built from this kernel's own source (see uname -r, uname -v), --debug shows the whole comparison", mm)
	case errors.As(err, &am):
		return refuse(KindSymbol, id, nil, "%v; nothing was changed: this pack cannot be applied to this kernel", err)
	case errors.As(err, &le):
		return refuse(KindSymbol, id, nil, "%v; nothing was changed: the pack is not for this kernel", err)
	}
	return refuse(KindMismatch, id, err, "comparing the running code")
}

// openMemory opens the running kernel's code: /proc/kcore, or, when it
// cannot be read (lockdown=confidentiality forbids it), the boot image
// /boot/vmlinuz-RELEASE, once its build-id proves it is the running
// kernel, relocated to where kallsyms says _text runs. The image holds the
// code before the kernel's boot-time rewriting; run-pre matching accepts
// both forms, and the helper still checks the live bytes at each patch
// site with the CPUs stopped.
func (l *Loader) openMemory(syms *kallsyms.Table) (runpre.Memory, string, func(), error) {
	path := l.Kcore
	if path == "" {
		path = "/proc/kcore"
	}
	mem, kerr := kcore.Open(path)
	if kerr == nil {
		return mem, path, func() { mem.Close() }, nil
	}
	img, source, err := l.bootImage(syms)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%w; and the boot image cannot serve instead: %w", kerr, err)
	}
	return img, source, func() {}, nil
}

func (l *Loader) bootImage(syms *kallsyms.Table) (*bootimage.Image, string, error) {
	path := l.BootImage
	if path == "" {
		var uts unix.Utsname
		if err := unix.Uname(&uts); err != nil {
			return nil, "", err
		}
		path = "/boot/vmlinuz-" + unix.ByteSliceToString(uts.Release[:])
	}
	notes := l.KernelNotes
	if notes == "" {
		notes = "/sys/kernel/notes"
	}
	running, err := bootimage.RunningBuildID(notes)
	if err != nil {
		return nil, "", err
	}
	img, err := bootimage.Open(path)
	if err != nil {
		return nil, "", err
	}
	id, err := img.BuildID()
	if err != nil {
		return nil, "", err
	}
	if !bytes.Equal(id, running) {
		return nil, "", fmt.Errorf("boot image %s has build-id %x, the running kernel %x", path, id, running)
	}
	text, err := syms.Unique("_text")
	if err != nil {
		return nil, "", err
	}
	if err := img.Relocate(text.Addr); err != nil {
		return nil, "", err
	}
	return img, fmt.Sprintf("%s, build-id %x (/proc/kcore is not readable)", path, id), nil
}

// debugMatch writes the whole comparison of f (a function or an anchor,
// says what) to l.Debug.
func (l *Loader) debugMatch(what string, f *pack.Function, source string, mt *runpre.Match, err error) {
	if l.Debug == nil {
		return
	}
	var steps []runpre.Step
	var mm *runpre.Mismatch
	switch {
	case mt != nil:
		fmt.Fprintf(l.Debug, "%s %s: %d bytes of pack code matched %d bytes at %#x (%s)\n", what, f.Name, len(f.PreCode), mt.Len, mt.Addr, source)
		steps = mt.Steps
	case errors.As(err, &mm):
		fmt.Fprintf(l.Debug, "%s %s: mismatch at %#x (%s)\n", what, f.Name, mm.Addr, source)
		steps = mm.Steps
	default:
		fmt.Fprintf(l.Debug, "%s %s: %v\n", what, f.Name, err)
	}
	runpre.WriteSteps(l.Debug, steps)
	if mt != nil {
		writeDerived(l.Debug, mt)
		for i, part := range mt.Parts {
			l.debugMatch("cold part", &f.Cold[i], source, part, nil)
		}
	}
}

func writeDerived(w io.Writer, mt *runpre.Match) {
	for _, key := range slices.Sorted(maps.Keys(mt.Derived)) {
		d := mt.Derived[key]
		fmt.Fprintf(w, "  derived %s = %#x (from +%#x)\n", key, d.Addr, d.At)
	}
}
