package module

import (
	"debug/elf"
	"errors"
	"fmt"
	"regexp"
)

// ErrInvalidSpec is wrapped by every error about a Spec that cannot be built.
var ErrInvalidSpec = errors.New("invalid update spec")

// Spec describes one update module.
type Spec struct {
	ID          string // update id, e.g. "demo-cmdline" ([a-z0-9_-])
	Name        string // kernel module name, e.g. "livesplice_demo_cmdline" ([a-z0-9_]); what lsmod shows
	Description string
	Functions   []Func
	Relocs      []Reloc
	Objects     []string // paths of prebuilt ELF relocatable objects with the replacement code
}

// Func is one function of the running kernel to replace.
type Func struct {
	Name       string // the running kernel's function to replace (its address is passed at load, see Generate)
	NewSymbol  string // GLOBAL symbol defined in one of Objects: the replacement's first byte
	OldSize    int    // bytes of the old function as built (validation; the helper checks the stack against the running symbol's size)
	NewSize    int    // bytes of the replacement (for the stack check on undo)
	SiteOffset int    // where the 5-byte jmp goes in the old function: 5 (after the fentry site) or 0
}

// Reloc is a fixup the helper applies to the replacement code after load,
// before anything is patched: the 4 or 8 bytes at NewSymbolBase+Offset get
// the value computed from the target's address.
type Reloc struct {
	Symbol string       // GLOBAL symbol in one of Objects the location is relative to
	Offset uint64       // offset of the location from Symbol
	Type   elf.R_X86_64 // R_X86_64_PC32, R_X86_64_PLT32 (S+A-P, s32), R_X86_64_32S (S+A, s32), R_X86_64_64 (S+A)
	Target string       // kernel symbol name; its address is passed at load
	Addend int64
}

// jmpLen is the length of the "jmp rel32" written at each site.
const jmpLen = 5

// maxNameLen is the longest module name the kernel accepts
// (MODULE_NAME_LEN - 1 on 64-bit).
const maxNameLen = 55

var (
	idRE     = regexp.MustCompile(`^[a-z0-9_-]+$`)
	nameRE   = regexp.MustCompile(`^[a-z0-9_]+$`)
	symbolRE = regexp.MustCompile(`^[A-Za-z_.$][A-Za-z0-9_.$]*$`)
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
	switch t {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32:
		return relocKind{"LS_RELOC_PCREL32", 4}, true
	case elf.R_X86_64_32S:
		return relocKind{"LS_RELOC_ABS32S", 4}, true
	case elf.R_X86_64_64:
		return relocKind{"LS_RELOC_ABS64", 8}, true
	}
	return relocKind{}, false
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// Validate checks what can be checked without reading the objects: names,
// sizes, site offsets, uniqueness of functions and relocation types.
func (s Spec) Validate() error {
	if !idRE.MatchString(s.ID) {
		return invalid("ID %q: want [a-z0-9_-]+", s.ID)
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
		case f.SiteOffset != 0 && f.SiteOffset != jmpLen:
			return invalid("Functions[%d] (%s).SiteOffset %d: want 0 or %d", i, f.Name, f.SiteOffset, jmpLen)
		case f.OldSize < f.SiteOffset+jmpLen:
			return invalid("Functions[%d] (%s).OldSize %d: want at least SiteOffset+%d = %d",
				i, f.Name, f.OldSize, jmpLen, f.SiteOffset+jmpLen)
		case f.NewSize < 1:
			return invalid("Functions[%d] (%s).NewSize %d: want at least 1", i, f.Name, f.NewSize)
		}
		if j, ok := seen[f.Name]; ok {
			return invalid("Functions[%d].Name %q: already replaced by Functions[%d]", i, f.Name, j)
		}
		seen[f.Name] = i
	}
	for i, r := range s.Relocs {
		switch {
		case !symbolRE.MatchString(r.Symbol):
			return invalid("Relocs[%d].Symbol %q: not a symbol name", i, r.Symbol)
		case !symbolRE.MatchString(r.Target):
			return invalid("Relocs[%d].Target %q: not a symbol name", i, r.Target)
		}
		if _, ok := kindOf(r.Type); !ok {
			return invalid("Relocs[%d] (%s+%#x).Type %v: unsupported (want R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32S or R_X86_64_64)",
				i, r.Symbol, r.Offset, r.Type)
		}
	}
	return nil
}

// Symbols returns the ordered, duplicate-free list of kernel symbols whose
// addresses the loader passes in the addrs parameter: the helper's own needs
// first, then each Func.Name, then each Reloc.Target.
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
	for _, r := range s.Relocs {
		add(r.Target)
	}
	return syms, index
}
