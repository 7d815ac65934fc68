package loader

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre"
)

// Loader talks to the running kernel. The zero value uses the real
// /proc and /sys paths.
type Loader struct {
	// Kallsyms is the symbol table to read; default /proc/kallsyms.
	Kallsyms string
	// SysModule is where modules appear; default /sys/module.
	SysModule string
	// Kcore is the kernel memory image; default /proc/kcore.
	Kcore string
	// BootImage and KernelNotes are the boot image and the running
	// kernel's notes the loader falls back to when Kcore cannot be read;
	// default /boot/vmlinuz-RELEASE and /sys/kernel/notes.
	BootImage, KernelNotes string
	// Modules is where module files are, with their modules.dep:
	// default /lib/modules/RELEASE. An update for a module that is not
	// loaded is matched against the file that will load.
	Modules string
	// Debug, when set, receives the whole run-pre comparison.
	Debug io.Writer
	// Notify, when set, receives what apply and undo do besides their
	// job: waiting for another one, unloading a leftover.
	Notify io.Writer
	// LockFile is the lock apply and undo hold (DefaultLockFile);
	// LockWait how long they wait for it (DefaultLockWait).
	LockFile string
	LockWait time.Duration
	// Fault, a test hook, is a fault point (Faults) to strike at.
	Fault string
	// Policy says how the helper waits for tasks inside the code.
	Policy
}

// Policy is how the helper waits when a task is inside the code, handed to
// it as module parameters.
type Policy struct {
	// Retries is how many more times to try after the first: negative
	// takes the helper's default (5). RetryMS is the pause before each
	// retry: 0 or less takes the helper's (100).
	Retries, RetryMS int
	// WalkDelayMS, a test hook, pauses between the walk of every task and
	// the stop, so that a test can send a task into the code meanwhile.
	WalkDelayMS int
}

// params returns the module parameters that say p, in a fixed order.
func (p Policy) params() [][2]string {
	var ps [][2]string
	if p.Retries >= 0 {
		ps = append(ps, [2]string{"retries", strconv.Itoa(p.Retries)})
	}
	if p.RetryMS > 0 {
		ps = append(ps, [2]string{"retry_ms", strconv.Itoa(p.RetryMS)})
	}
	if p.WalkDelayMS > 0 {
		ps = append(ps, [2]string{"walk_delay_ms", strconv.Itoa(p.WalkDelayMS)})
	}
	return ps
}

func (l *Loader) kallsymsPath() string {
	if l.Kallsyms != "" {
		return l.Kallsyms
	}
	return "/proc/kallsyms"
}

func (l *Loader) sysModule() string {
	if l.SysModule != "" {
		return l.SysModule
	}
	return "/sys/module"
}

// Plan is what the loader decided before touching the kernel.
type Plan struct {
	// Addrs are the values of the manifest's symbols, in its order: a
	// vmlinux symbol's running address; for a symbol of a module the
	// update replaces functions of, which of that module's symbols of its
	// name it is (kallsyms.Table.Position); 0 for another module's
	// export, which the helper looks up by name.
	Addrs []uint64
	// Expect are the bytes expected at each function's patch site.
	Expect []SiteBytes
}

// SiteBytes are the bytes the helper expects at a patch site. In a
// module's code, the bytes of relocation fields (Any) depend on where the
// module is loaded, which changes with every load: any value will do
// there.
type SiteBytes struct {
	Bytes []byte
	Any   []bool // nil, or one per byte
}

// String writes the bytes as the helper's expect parameter reads them:
// two hex digits per byte, "xx" where any will do.
func (e SiteBytes) String() string {
	var b strings.Builder
	for i, c := range e.Bytes {
		if i < len(e.Any) && e.Any[i] {
			b.WriteString("xx")
		} else {
			fmt.Fprintf(&b, "%02x", c)
		}
	}
	return b.String()
}

// Params returns the module parameters that hand the plan to the helper.
func (p *Plan) Params(policy Policy) string {
	addrs := make([]string, len(p.Addrs))
	for i, a := range p.Addrs {
		addrs[i] = fmt.Sprintf("0x%x", a)
	}
	var expect strings.Builder
	for _, e := range p.Expect {
		expect.WriteString(e.String())
	}
	params := fmt.Sprintf("addrs=%s expect=%s", strings.Join(addrs, ","), expect.String())
	for _, kv := range policy.params() {
		params += " " + kv[0] + "=" + kv[1]
	}
	return params
}

// MakePlan gives every symbol of the manifest its value for the helper
// (Plan.Addrs) from the functions found (matches: one per manifest
// function; anchors: one per manifest anchor) in their objects' spaces
// (spaces has vmlinux's and one per module of a function or anchor): a
// matched function's (replaced or anchor) address from its match, a
// symbol the matched code refers to from the running code (all matches
// must agree), any other from the symbols of its object, where its name
// must be unique. A module's symbol is then told apart from others of
// its name by its position in the module's symbol table, which is how
// the helper finds it in the module each time it loads. The bytes
// expected at each patch site are the running bytes that matched, less,
// in a module, the relocation fields, which change from load to load.
func MakePlan(m *pack.Manifest, spaces map[string]*Space, matches, anchors []*runpre.Match) (*Plan, error) {
	if len(matches) != len(m.Functions) || len(anchors) != len(m.Anchors) {
		return nil, refuse(KindMismatch, m.ID, nil, "%d of %d functions and %d of %d anchors were matched", len(matches), len(m.Functions), len(anchors), len(m.Anchors))
	}
	type located struct {
		addr uint64
		from string
	}
	found := map[pack.Symbol]located{}
	locate := func(key pack.Symbol, addr uint64, from string) error {
		if prev, ok := found[key]; ok && prev.addr != addr {
			return refuse(KindSymbol, m.ID, nil, "%s is at %#x according to the running code of %s, at %#x according to %s: two symbols of that name, and the update needs both",
				key, prev.addr, prev.from, addr, from)
		}
		found[key] = located{addr, from}
		return nil
	}
	for i, fs := range [][]pack.Function{m.Functions, m.Anchors} {
		mts := [][]*runpre.Match{matches, anchors}[i]
		for j := range fs {
			f, mt, sp := &fs[j], mts[j], spaces[fs[j].Object]
			if mt == nil || sp == nil {
				return nil, refuse(KindMismatch, m.ID, nil, "function %s was not matched", f.Name)
			}
			// The function, then its cold parts (runpre.Find matched them).
			for _, x := range append([]*runpre.Match{mt}, mt.Parts...) {
				if err := locate(pack.Symbol{Name: x.Name, Object: f.Object}, x.Addr, mt.Name); err != nil {
					return nil, err
				}
				for _, key := range slices.Sorted(maps.Keys(x.Derived)) {
					d := x.Derived[key]
					obj := sp.objectAt(d.Symbol, d.Addr)
					if obj == "" {
						continue
					}
					if err := locate(pack.Symbol{Name: d.Symbol, Object: obj}, d.Addr, x.Name); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	p := &Plan{}
	var missing []string
	for _, sym := range m.Symbols {
		v, err := symbolValue(sym, spaces, func(s pack.Symbol) (uint64, bool) {
			l, ok := found[s]
			return l.addr, ok
		})
		if err != nil {
			missing = append(missing, err.Error())
		}
		p.Addrs = append(p.Addrs, v)
	}
	if len(missing) > 0 {
		return nil, refuse(KindSymbol, m.ID, nil, "%s", strings.Join(missing, "; "))
	}
	for i, f := range m.Functions {
		mt := matches[i]
		if at, ok := mt.RunOffset(f.SiteOffset); !ok || at != f.SiteOffset || len(mt.Code) < at+pack.JumpLen {
			return nil, refuse(KindMismatch, m.ID, nil, "function %s: the patch site +%#x is not at the same place in the running code", f.Name, f.SiteOffset)
		}
		e := SiteBytes{Bytes: append([]byte(nil), mt.Code[f.SiteOffset:f.SiteOffset+pack.JumpLen]...)}
		if f.InModule() {
			e.Any = relocFields(f.PreRelocs, f.SiteOffset, pack.JumpLen)
			for k, masked := range e.Any {
				if masked {
					e.Bytes[k] = 0
				}
			}
		}
		p.Expect = append(p.Expect, e)
	}
	return p, nil
}

// symbolValue is sym's value for the helper, from where it was found in
// matched code (found) or else from its object's symbols.
func symbolValue(sym pack.Symbol, spaces map[string]*Space, found func(pack.Symbol) (uint64, bool)) (uint64, error) {
	sp := spaces[sym.Object]
	switch {
	case sym.Object == pack.Vmlinux:
		if addr, ok := found(sym); ok {
			return addr, nil
		}
		s, err := spaces[pack.Vmlinux].Syms.Unique(sym.Name)
		var le *kallsyms.LookupError
		if errors.As(err, &le) && le.Count > 1 {
			err = fmt.Errorf("%w, and no replaced function's code refers to it", err)
		}
		return s.Addr, err
	case sp == nil:
		// Another module's export: unique, looked up by name.
		return 0, nil
	}
	own := sp.own(sym.Name)
	var s kallsyms.Symbol
	if addr, ok := found(sym); ok {
		i := slices.IndexFunc(own, func(s kallsyms.Symbol) bool { return s.Addr == addr })
		if i < 0 {
			return 0, fmt.Errorf("%s: the running code refers to %#x, which is no symbol of that name", sym, addr)
		}
		s = own[i]
	} else if len(own) == 1 {
		s = own[0]
	} else {
		err := error(&kallsyms.LookupError{Name: sym.Name, Count: len(own), Module: sym.Object})
		if len(own) > 1 {
			err = fmt.Errorf("%w, and no replaced function's code refers to it", err)
		}
		return 0, err
	}
	pos, err := sp.Syms.Position(s)
	return uint64(pos), err
}

// relocFields marks which of the n bytes at off the relocations' fields
// cover.
func relocFields(relocs []pack.Reloc, off, n int) []bool {
	fields := make([]bool, n)
	for _, r := range relocs {
		for k := int(r.Offset); k < int(r.Offset)+pack.FieldSize(r.Type); k++ {
			if k >= off && k < off+n {
				fields[k-off] = true
			}
		}
	}
	return fields
}

// CheckKernel refuses a pack made for another kernel than the one with
// this release (uname -r), version (uname -v) and /proc/version.
func CheckKernel(m *pack.Manifest, release, version, procVersion string) error {
	switch {
	case release != m.Target.Release:
		return refuse(KindKernel, m.ID, nil, "the pack is for kernel %s, this kernel is %s", m.Target.Release, release)
	case m.Target.Version != "" && version != m.Target.Version:
		return refuse(KindKernel, m.ID, nil, "the pack is for %s %s, this kernel is %s %s (same release name, another build)", m.Target.Release, m.Target.Version, release, version)
	case m.Target.Compiler != "" && !strings.Contains(procVersion, m.Target.Compiler):
		return refuse(KindKernel, m.ID, nil, "the pack was compiled with %s, but /proc/version says: %s", m.Target.Compiler, strings.TrimSpace(procVersion))
	}
	return nil
}

// Apply loads the pack's module and has it patch the kernel. On any
// refusal the module is unloaded again and the kernel is unchanged. One
// apply or undo runs at a time (the lock, LockFile): a module of this
// update found loaded but not applied is what an interrupted apply or
// undo left, and is unloaded before starting over.
func (l *Loader) Apply(p *pack.Pack) (*Status, error) {
	m := &p.Manifest
	if err := l.checkFault(); err != nil {
		return nil, err
	}
	unlock, err := l.lock("apply", m.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	loaded, err := l.list(lockHolder{}, false)
	if err != nil {
		return nil, err
	}
	mine := make(map[pack.Symbol]bool)
	for _, f := range m.Functions {
		mine[pack.Symbol{Name: f.Name, Object: f.Object}] = true
	}
	for _, s := range loaded {
		if s.ID == m.ID {
			if s.State == "applied" {
				return nil, refuse(KindState, m.ID, nil, "already applied (livesplice list shows it); `livesplice undo %s` takes it out", m.ID)
			}
			if err := l.unloadLeftover(s); err != nil {
				return nil, err
			}
			continue
		}
		for _, f := range s.Functions {
			if fn := (pack.Symbol{Name: f.Name, Object: f.Object}); mine[fn] && s.State == "applied" {
				return nil, refuse(KindState, m.ID, nil, "function %s is already replaced by update %s; undo that first", fn, s.ID)
			}
		}
	}
	c, err := l.Check(m)
	if err != nil {
		return nil, err
	}
	l.fault(FaultApplyBeforeLoad)
	image, plan := l.faulty(m, p.Files[m.Module], c.Plan)
	if err := loadModule(m.ModuleName, image, plan.Params(l.Policy)); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, refuse(KindState, m.ID, err, "module %s is already loaded, by something else than livesplice apply", m.ModuleName)
		}
		return nil, refuse(KindLoad, m.ID, err, "loading module %s", m.ModuleName)
	}
	fail := func(err error) (*Status, error) {
		if uerr := unloadModule(m.ModuleName); uerr != nil {
			err = errors.Join(err, fmt.Errorf("and unloading %s failed: %w", m.ModuleName, uerr))
		}
		return nil, err
	}
	if err := l.control(m.ID, m.ModuleName, "calibrate"); err != nil {
		return fail(err)
	}
	l.fault(FaultApplyAfterLoad)
	if err := l.control(m.ID, m.ModuleName, "apply"); err != nil {
		return fail(err)
	}
	l.fault(FaultApplyAfterStop)
	return l.readStatus(m.ModuleName)
}

// unloadLeftover unloads the module of an update that is loaded, not
// applied, and that no other apply or undo is at work on.
func (l *Loader) unloadLeftover(s *Status) error {
	if l.Notify != nil {
		fmt.Fprintf(l.Notify, "livesplice: update %s was left loaded, not applied, by an interrupted %s: unloading it and starting over\n", s.ID, s.Leftover.op())
	}
	if err := unloadModule(s.Module); err != nil {
		return refuse(KindLoad, s.ID, err, "%s; unloading module %s failed", s.Note, s.Module)
	}
	return nil
}

// Undo takes update id back out and unloads its module; an update loaded
// but not applied (Status.Leftover) is only unloaded. The returned status
// is the last one read before the unload, with the undo stop time.
func (l *Loader) Undo(id string) (*Status, error) {
	if err := l.checkFault(); err != nil {
		return nil, err
	}
	unlock, err := l.lock("undo", id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := l.list(lockHolder{}, false)
	if err != nil {
		return nil, err
	}
	s, err := findStatus(id, all)
	if err != nil {
		return nil, err
	}
	if s.State == "applied" {
		if err := l.setRetries(s.Module); err != nil {
			return nil, err
		}
		l.fault(FaultUndoBeforeStop)
		if err := l.control(id, s.Module, "undo"); err != nil {
			return nil, err
		}
		l.fault(FaultUndoAfterStop)
		if s, err = l.readStatus(s.Module); err != nil {
			return nil, err
		}
	}
	if err := unloadModule(s.Module); err != nil {
		if s.Leftover != "" {
			return nil, refuse(KindLoad, id, err, "%s; unloading module %s failed", s.Note, s.Module)
		}
		return nil, refuse(KindLoad, id, err, "undone, but unloading module %s failed", s.Module)
	}
	return s, nil
}

// setRetries hands the policy to a loaded module (apply passes it at load
// time instead).
func (l *Loader) setRetries(module string) error {
	for _, kv := range l.Policy.params() {
		path := filepath.Join(l.sysModule(), module, "parameters", kv[0])
		if err := os.WriteFile(path, []byte(kv[1]), 0); err != nil {
			return fmt.Errorf("setting %s: %w", kv[0], err)
		}
	}
	return nil
}

// loadModule loads a module image with parameters, through a memfd so that
// nothing is written to disk. A refusal quotes what the kernel logged
// while it tried.
func loadModule(name string, image []byte, params string) error {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := f.Write(image); err != nil {
		return err
	}
	log := openKernelLog()
	defer log.close()
	if err := unix.FinitModule(fd, params, 0); err != nil {
		if msgs := log.since(name); msgs != "" {
			return fmt.Errorf("%w; kernel said: %s", err, msgs)
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EKEYREJECTED) {
			return fmt.Errorf("%w (the kernel refuses unsigned modules: lockdown or module.sig_enforce)", err)
		}
		return err
	}
	return nil
}

func unloadModule(name string) error {
	return unix.DeleteModule(name, unix.O_NONBLOCK)
}

// kernelLog reads the kernel log (/dev/kmsg) from where it was opened,
// with raw non-blocking reads: through os.File the Go runtime would wait
// for more records instead of returning at the end.
type kernelLog struct{ fd int }

// openKernelLog opens the kernel log at its end (fd -1 if it cannot).
func openKernelLog() kernelLog {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return kernelLog{-1}
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return kernelLog{-1}
	}
	return kernelLog{fd}
}

func (k kernelLog) close() {
	if k.fd >= 0 {
		unix.Close(k.fd)
	}
}

// since returns the last lines logged since the log was opened: those
// that mention name, or, when none does (the kernel's module loader
// refusing an image does not name it), all of them.
func (k kernelLog) since(name string) string {
	if k.fd < 0 {
		return ""
	}
	var all, named []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // records were overwritten while reading
		}
		if err != nil || n <= 0 {
			break
		}
		record, _, _ := strings.Cut(string(buf[:n]), "\n")
		if _, msg, ok := strings.Cut(record, ";"); ok {
			all = append(all, msg)
			if strings.Contains(msg, name) {
				named = append(named, msg)
			}
		}
	}
	if len(named) > 0 {
		all = named
	}
	if len(all) > 3 {
		all = all[len(all)-3:]
	}
	return strings.Join(all, " | ")
}
