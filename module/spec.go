package module

import (
	"debug/elf"
	"errors"
	"fmt"
	"regexp"

	"github.com/livesplice/livesplice/pack"
)

// ErrInvalidSpec is wrapped by every error about a Spec that cannot be built.
var ErrInvalidSpec = errors.New("invalid update spec")

// Spec describes one update module.
type Spec struct {
	ID          string // update id, e.g. "demo-cmdline" ([a-z0-9_-])
	Name        string // kernel module name, e.g. "livesplice_demo_cmdline" ([a-z0-9_]); what lsmod shows
	Description string
	// Functions are the functions to replace; the module uses Name,
	// Object (vmlinux or the module they live in), NewSymbol (a GLOBAL
	// symbol defined in one of Objects: the replacement's first byte),
	// Size (validation; the helper checks the stack against the running
	// symbol's size), NewSize and SiteOffset. The functions of one of
	// Objects all live in the same kernel object.
	Functions []pack.Function
	// Fixups are the references to the running kernel the helper applies
	// to the replacement code before anything is patched: those to
	// vmlinux at load; those to a module (Fixup.Object) each time the
	// module whose functions the fix-up's code replaces is patched (when
	// the update is applied with that module loaded, or when it loads):
	// to a symbol of that module itself, or to another module's export.
	Fixups  []pack.Fixup
	Objects []string // paths of prebuilt ELF relocatable objects with the replacement code
	// Livepatch are the vmlinux symbols the objects reference through
	// pack.LivepatchSymbol: the module is marked as a livepatch module so
	// that the kernel's module loader resolves them.
	Livepatch []string
	// ImportNS are the symbol namespaces the objects use exports of
	// (Namespaces): the module imports them.
	ImportNS []string
}

// maxNameLen is the longest module name the kernel accepts
// (MODULE_NAME_LEN - 1 on 64-bit).
const maxNameLen = 55

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9_]+$`)
	symbolRE = regexp.MustCompile(`^[A-Za-z_.$][A-Za-z0-9_.$]*$`)
	nsRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// objectRE matches pack.Vmlinux and module names (KBUILD_MODNAME:
	// '-' is written '_').
	objectRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

// reservedPrefix starts every global symbol of the helper and the metadata;
// the replacement objects must not define such symbols.
const reservedPrefix = "__livesplice_"

// relocKind is how the helper computes and stores a relocation.
type relocKind struct {
	cname string // enum ls_reloc_kind constant
	width uint64 // bytes written
}

func kindOf(t elf.R_X86_64) (relocKind, bool) {
	if !pack.FixupType(t) {
		return relocKind{}, false
	}
	k := relocKind{cname: "LS_RELOC_ABS64", width: uint64(pack.FieldSize(t))}
	switch {
	case pack.PCRelative(t):
		k.cname = "LS_RELOC_PCREL32"
	case t == elf.R_X86_64_32S:
		k.cname = "LS_RELOC_ABS32S"
	}
	return k, true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// Validate checks what can be checked without reading the objects: names,
// sizes, site offsets, uniqueness of functions and relocation types.
func (s Spec) Validate() error {
	if err := pack.CheckID(s.ID); err != nil {
		return invalid("ID: %v", err)
	}
	if !nameRE.MatchString(s.Name) || len(s.Name) > maxNameLen {
		return invalid("Name %q: want [a-z0-9_]+, at most %d characters", s.Name, maxNameLen)
	}
	for i, c := range s.Description {
		if c == 0 {
			return invalid("Description: NUL byte at %d", i)
		}
	}
	if len(s.Functions) == 0 {
		return invalid("Functions: none")
	}
	if len(s.Objects) == 0 {
		return invalid("Objects: none")
	}
	seen := make(map[pack.Symbol]int)
	for i, f := range s.Functions {
		switch {
		case !symbolRE.MatchString(f.Name):
			return invalid("Functions[%d].Name %q: not a symbol name", i, f.Name)
		case !objectRE.MatchString(f.Object):
			return invalid("Functions[%d] (%s).Object %q: not vmlinux or a module name", i, f.Name, f.Object)
		case !symbolRE.MatchString(f.NewSymbol):
			return invalid("Functions[%d].NewSymbol %q: not a symbol name", i, f.NewSymbol)
		case f.SiteOffset != 0 && f.SiteOffset != pack.JumpLen:
			return invalid("Functions[%d] (%s).SiteOffset %d: want 0 or %d", i, f.Name, f.SiteOffset, pack.JumpLen)
		case f.Size < f.SiteOffset+pack.JumpLen:
			return invalid("Functions[%d] (%s).Size %d: want at least SiteOffset+%d = %d",
				i, f.Name, f.Size, pack.JumpLen, f.SiteOffset+pack.JumpLen)
		case f.NewSize < 1:
			return invalid("Functions[%d] (%s).NewSize %d: want at least 1", i, f.Name, f.NewSize)
		}
		for _, c := range f.Cold {
			if !symbolRE.MatchString(c.Name) || c.Size < 1 {
				return invalid("Functions[%d] (%s): cold part %q of %d bytes: want a symbol name and a size", i, f.Name, c.Name, c.Size)
			}
		}
		key := pack.Symbol{Name: f.Name, Object: f.Object}
		if j, ok := seen[key]; ok {
			return invalid("Functions[%d].Name %q: already replaced by Functions[%d]", i, f.Name, j)
		}
		seen[key] = i
	}
	for i, ns := range s.ImportNS {
		if !nsRE.MatchString(ns) {
			return invalid("ImportNS[%d] %q: not a namespace name", i, ns)
		}
	}
	for i, r := range s.Fixups {
		switch {
		case !symbolRE.MatchString(r.Symbol):
			return invalid("Fixups[%d].Symbol %q: not a symbol name", i, r.Symbol)
		case !symbolRE.MatchString(r.Target):
			return invalid("Fixups[%d].Target %q: not a symbol name", i, r.Target)
		case !objectRE.MatchString(r.Object):
			return invalid("Fixups[%d] (%s).Object %q: not vmlinux or a module name", i, r.Target, r.Object)
		}
		if _, ok := kindOf(r.Type); !ok {
			return invalid("Fixups[%d] (%s+%#x).Type %v: unsupported (want R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32S or R_X86_64_64)",
				i, r.Symbol, r.Offset, r.Type)
		}
	}
	return nil
}

// Symbols returns the ordered, duplicate-free list of kernel symbols the
// loader resolves for the addrs parameter: the helper's own needs first,
// then each function replaced, then their old cold parts (for the stack
// check), then each Fixup.Target, each with its object.
func (s Spec) Symbols() []pack.Symbol {
	syms, _ := s.symbolIndex()
	return syms
}

// helperSymbols are the unexported vmlinux symbols the helper needs, in
// the order of the LS_SYM_* constants of c/livesplice.h.
func helperSymbols() []pack.Symbol {
	var syms []pack.Symbol
	for _, n := range []string{"text_poke", "text_mutex", "stop_machine_cpuslocked", "module_mutex", "find_module", "idle_task", "total_forks", "nr_context_switches"} {
		syms = append(syms, pack.Symbol{Name: n, Object: pack.Vmlinux})
	}
	return syms
}

func (s Spec) symbolIndex() ([]pack.Symbol, map[pack.Symbol]int) {
	var syms []pack.Symbol
	index := make(map[pack.Symbol]int)
	add := func(sym pack.Symbol) {
		if _, ok := index[sym]; !ok {
			index[sym] = len(syms)
			syms = append(syms, sym)
		}
	}
	for _, sym := range helperSymbols() {
		add(sym)
	}
	for _, f := range s.Functions {
		add(pack.Symbol{Name: f.Name, Object: f.Object})
	}
	for _, f := range s.Functions {
		for _, c := range f.Cold {
			add(pack.Symbol{Name: c.Name, Object: f.Object})
		}
	}
	for _, r := range s.Fixups {
		add(pack.Symbol{Name: r.Target, Object: r.Object})
	}
	return syms, index
}

// objects returns the kernel objects the spec refers to, vmlinux first
// (the helper's own symbols live there), then modules in the order they
// first appear among the functions and the fix-up targets, with each
// one's index.
func (s Spec) objects() ([]string, map[string]int) {
	objs := []string{pack.Vmlinux}
	index := map[string]int{pack.Vmlinux: 0}
	add := func(o string) {
		if _, ok := index[o]; !ok {
			index[o] = len(objs)
			objs = append(objs, o)
		}
	}
	for _, f := range s.Functions {
		add(f.Object)
	}
	for _, r := range s.Fixups {
		add(r.Object)
	}
	return objs, index
}
