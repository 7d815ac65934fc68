package loader

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Status is an update as the kernel reports it.
type Status struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
	// Module is the kernel module's name.
	Module string `json:"module"`
	// State is "loaded" (not patched in) or "applied" (each function
	// then live, or waiting for its module to load).
	State     string           `json:"state"`
	Functions []FunctionStatus `json:"functions"`
	// Stop times in nanoseconds: the stop_machine call of the last apply and
	// undo, the time spent in the callback, and the median empty stop.
	ApplyStopNS int64 `json:"apply_stop_ns"`
	ApplyWorkNS int64 `json:"apply_work_ns"`
	UndoStopNS  int64 `json:"undo_stop_ns"`
	UndoWorkNS  int64 `json:"undo_work_ns"`
	EmptyStopNS int64 `json:"empty_stop_ns"`
	// Error is the helper's account of its last failure ("" after a
	// success): a refused apply or undo, or a module whose load it
	// refused.
	Error string `json:"error,omitempty"`
	// Leftover says why an update is loaded but not applied, and Note
	// says it in words, with what to do (both "" otherwise).
	Leftover Leftover `json:"leftover,omitempty"`
	Note     string   `json:"note,omitempty"`
}

// Leftover is why an update module is loaded but not applied.
type Leftover string

// The leftovers.
const (
	// LeftApply: an apply stopped between the load and the stop (killed,
	// or its unload failed); the kernel code is as it was.
	LeftApply Leftover = "apply-interrupted"
	// LeftUndo: an undo restored the code and stopped before the unload.
	LeftUndo Leftover = "undo-interrupted"
	// LeftAtWork: an apply or undo of this update is at work right now.
	LeftAtWork Leftover = "at-work"
)

// op is the operation that left the update loaded: apply or undo.
func (left Leftover) op() string {
	if left == LeftUndo {
		return "undo"
	}
	return "apply"
}

// explain sets s's Leftover and Note for a loaded, not applied update;
// holder is who holds the loader's lock, if held.
func (s *Status) explain(holder lockHolder, held bool) {
	if s.State != "loaded" {
		return
	}
	switch {
	case held && holder.id == s.ID:
		s.Leftover = LeftAtWork
		s.Note = fmt.Sprintf("loaded, not applied yet: %s is at work on it", holder)
	case s.UndoStopNS > 0:
		s.Leftover = LeftUndo
		s.Note = fmt.Sprintf("undone, not unloaded: an undo restored the code and was interrupted before unloading the module; `livesplice undo %s` unloads it", s.ID)
	default:
		s.Leftover = LeftApply
		s.Note = fmt.Sprintf("loaded, not applied: an apply was interrupted after loading the module, before patching; the kernel code is unchanged; `livesplice undo %s` unloads it, and applying the pack again starts over", s.ID)
	}
	if s.Error != "" {
		s.Note += " (last error: " + s.Error + ")"
	}
}

// FunctionStatus is one replaced function.
type FunctionStatus struct {
	Name string `json:"name"`
	// Object is where the function lives: vmlinux or a module.
	Object string `json:"object"`
	// Old is the function's address, 0 while its module is not loaded.
	Old        uint64 `json:"old"`
	New        uint64 `json:"new"`
	SiteOffset int    `json:"site_offset"`
	// State is "live" (the jump is written), "waiting" (applied, the
	// module is not loaded: it is patched as it loads) or "off" (the
	// update is not applied).
	State string `json:"state"`
}

// Function states, as the helper reports them.
const (
	FunctionLive    = "live"
	FunctionWaiting = "waiting"
	FunctionOff     = "off"
)

// dir is the sysfs directory of an update module.
func (l *Loader) dir(module string) string {
	return filepath.Join(l.sysModule(), module, "livesplice")
}

// readStatus reads an update module's state from sysfs.
func (l *Loader) readStatus(module string) (*Status, error) {
	d := l.dir(module)
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(d, name))
		return strings.TrimSpace(string(b)), err
	}
	s := &Status{Module: module}
	var err error
	if s.ID, err = read("id"); err != nil {
		return nil, err
	}
	s.Description, _ = read("description")
	s.Error, _ = read("error")
	if s.State, err = read("state"); err != nil {
		return nil, err
	}
	for name, dst := range map[string]*int64{
		"apply_stop_ns": &s.ApplyStopNS, "apply_work_ns": &s.ApplyWorkNS,
		"undo_stop_ns": &s.UndoStopNS, "undo_work_ns": &s.UndoWorkNS, "empty_stop_ns": &s.EmptyStopNS,
	} {
		if v, err := read(name); err == nil {
			*dst, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	funcs, err := read("functions")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(funcs, "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 6 {
			return nil, fmt.Errorf("%s/functions: line %q: want NAME OBJECT OLD NEW SITE STATE", d, line)
		}
		old, err1 := strconv.ParseUint(f[2], 0, 64)
		nw, err2 := strconv.ParseUint(f[3], 0, 64)
		site, err3 := strconv.Atoi(f[4])
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("%s/functions: line %q: %w", d, line, err)
		}
		s.Functions = append(s.Functions, FunctionStatus{Name: f[0], Object: f[1], Old: old, New: nw, SiteOffset: site, State: f[5]})
	}
	return s, nil
}

// List returns every update module loaded in the kernel, by id; an update
// loaded but not applied says why (Status.Leftover, Note).
func (l *Loader) List() ([]*Status, error) {
	return l.list(l.holder())
}

// list is List with who holds the loader's lock, if held; apply and undo,
// which hold it, pass nobody: an update loaded but not applied is then
// one that no other livesplice is at work on.
func (l *Loader) list(holder lockHolder, held bool) ([]*Status, error) {
	entries, err := os.ReadDir(l.sysModule())
	if err != nil {
		return nil, err
	}
	var out []*Status
	for _, e := range entries {
		if _, err := os.Stat(l.dir(e.Name())); err != nil {
			continue
		}
		s, err := l.readStatus(e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue // unloaded meanwhile
		}
		if err != nil {
			return nil, err
		}
		s.explain(holder, held)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Show returns the update with the given id.
func (l *Loader) Show(id string) (*Status, error) {
	all, err := l.List()
	if err != nil {
		return nil, err
	}
	return findStatus(id, all)
}

// findStatus returns the update with the given id among all.
func findStatus(id string, all []*Status) (*Status, error) {
	for _, s := range all {
		if s.ID == id {
			return s, nil
		}
	}
	return nil, refuse(KindState, id, nil, "no such update is loaded (livesplice list shows what is)")
}

// writeQuiet writes cmd to path while keeping this process's other
// threads asleep: no collection, sweeping or scavenging, and a raw
// write, during which the runtime does not see a system call, so sysmon
// neither hands the P off to another thread nor polls every 20 us. Each
// of those is a task switch on some CPU while the helper prepares its
// stop, and one between the helper's snapshot and its stop makes the
// stop look at every task (docs/design.md, "The stack check"). The write
// blocks this thread for as long as the helper works (under a second).
func writeQuiet(path, cmd string) error {
	debug.FreeOSMemory()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	b := []byte(cmd)
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	runtime.KeepAlive(b)
	switch {
	case errno != 0:
		return &fs.PathError{Op: "write", Path: path, Err: errno}
	case int(n) != len(b):
		return &fs.PathError{Op: "write", Path: path, Err: io.ErrShortWrite}
	}
	return nil
}

// control writes a command to the module's control file. On failure it
// returns the helper's one-line account of why, classified.
func (l *Loader) control(id, module, cmd string) error {
	path := filepath.Join(l.dir(module), "control")
	err := writeQuiet(path, cmd)
	if err == nil {
		return nil
	}
	msg, rerr := os.ReadFile(filepath.Join(l.dir(module), "error"))
	line := strings.TrimSpace(string(msg))
	if rerr != nil || line == "" {
		return refuse(KindLoad, id, err, "%s failed and the module gave no reason", cmd)
	}
	kind := KindLoad
	word, rest, _ := strings.Cut(line, ":")
	switch word {
	case "busy":
		kind = KindBusy
	case "mismatch":
		kind = KindMismatch
	case "state":
		kind = KindState
	case "symbol":
		kind = KindSymbol
	}
	return refuse(kind, id, nil, "%s: %s", cmd, strings.TrimSpace(rest))
}
