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
	// NewSymbol (a GLOBAL symbol defined in one of Objects: the
	// replacement's first byte), Size (validation; the helper checks the
	// stack against the running symbol's size), NewSize and SiteOffset.
	Functions []pack.Function
	// Fixups are the references to the running kernel the helper applies
	// to the replacement code after load, before anything is patched.
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
	seen := make(map[string]int)
	for i, f := range s.Functions {
		switch {
		case !symbolRE.MatchString(f.Name):
			return invalid("Functions[%d].Name %q: not a symbol name", i, f.Name)
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
		if j, ok := seen[f.Name]; ok {
			return invalid("Functions[%d].Name %q: already replaced by Functions[%d]", i, f.Name, j)
		}
		seen[f.Name] = i
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
		}
		if _, ok := kindOf(r.Type); !ok {
			return invalid("Fixups[%d] (%s+%#x).Type %v: unsupported (want R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32S or R_X86_64_64)",
				i, r.Symbol, r.Offset, r.Type)
		}
	}
	return nil
}

// Symbols returns the ordered, duplicate-free list of kernel symbols whose
// addresses the loader passes in the addrs parameter: the helper's own needs
// first, then each Func.Name, then each Fixup.Target.
func (s Spec) Symbols() []string {
	syms, _ := s.symbolIndex()
	return syms
}

// helperSymbols are the unexported kernel symbols the helper needs, in the
// order of the LS_SYM_* constants of c/livesplice.h.
func helperSymbols() []string {
	return []string{"text_poke", "text_poke_kgdb", "text_mutex", "stop_machine_cpuslocked"}
}

func (s Spec) symbolIndex() ([]string, map[string]int) {
	var syms []string
	index := make(map[string]int)
	add := func(name string) {
		if _, ok := index[name]; !ok {
			index[name] = len(syms)
			syms = append(syms, name)
		}
	}
	for _, n := range helperSymbols() {
		add(n)
	}
	for _, f := range s.Functions {
		add(f.Name)
	}
	for _, r := range s.Fixups {
		add(r.Target)
	}
	return syms, index
}
