package pack

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"strings"
)

// The update model: what the differ extracts, the manifest carries, the
// module generator builds and run-pre matching checks. One set of types
// serves all of them.

// JumpLen is the length of the "jmp rel32" written at each patch site.
const JumpLen = 5

// Vmlinux is Function.Object for functions of the kernel image.
const Vmlinux = "vmlinux"

// Function is one function of the running kernel the update replaces, or,
// as an anchor, one it only matches.
type Function struct {
	// Name is the function's name in the running kernel.
	Name string `json:"name"`
	// Object is the kernel object it lives in: Vmlinux or a module name
	// (as lsmod shows it).
	Object string `json:"object"`
	// Source is the compiled object it comes from, relative to the source
	// tree, e.g. fs/proc/cmdline.o.
	Source string `json:"source"`
	// Size is the size of the pre (running) function in bytes.
	Size int `json:"size"`
	// NewSize is the size of the replacement; 0 for an anchor.
	NewSize int `json:"new_size,omitempty"`
	// NewSymbol is the global symbol of the update module at the
	// replacement's first byte (build side only).
	NewSymbol string `json:"-"`
	// SiteOffset is where the jmp is written: 5, just after the fentry
	// site, so that ftrace keeps working; 0 for functions without one.
	SiteOffset int `json:"site_offset"`
	// PreCode is the function's code as compiled from the pristine source,
	// with relocation fields zero.
	PreCode []byte `json:"pre_code"`
	// PreRelocs are the relocations of PreCode.
	PreRelocs []Reloc `json:"pre_relocs,omitempty"`
	// PreSites are the places in PreCode that the kernel rewrites at run
	// time and that PreRelocs do not describe: alternatives and jump
	// labels. Run-pre matching accepts either form there.
	PreSites []Site `json:"pre_sites,omitempty"`
	// Cold are the parts gcc split out of the pre function (NAME.cold):
	// code only the function jumps to, with a kallsyms symbol of its own.
	// Run-pre matching matches each with the function (its running
	// address comes from the function's references to it), and the
	// helper's stack check covers it: a task inside an old cold part is
	// inside the function. Cold parts get no jump. Name, Object, Source,
	// Size and the pre fields are set. The replacement's own cold parts
	// follow it in the update module, inside NewSize.
	Cold []Function `json:"cold,omitempty"`
}

// coldComplete reports whether f's cold parts have what run-pre matching
// needs.
func (f *Function) coldComplete() bool {
	for _, c := range f.Cold {
		if c.Name == "" || c.Object != f.Object || c.Size <= 0 || len(c.PreCode) != c.Size || len(c.Cold) > 0 || !c.preInside() {
			return false
		}
	}
	return true
}

// preInside reports whether f's pre relocations and sites lie inside its
// pre code, and each site's relocations inside the site's code.
func (f *Function) preInside() bool {
	for _, s := range f.PreSites {
		if _, known := siteKindNames[s.Kind]; !known || s.Offset < 0 || s.Len <= 0 || s.Offset > len(f.PreCode)-s.Len ||
			!relocsInside(s.Relocs, len(s.Code)) {
			return false
		}
	}
	return relocsInside(f.PreRelocs, len(f.PreCode))
}

// relocsInside reports whether every relocation's field lies inside n
// bytes of code.
func relocsInside(rs []Reloc, n int) bool {
	for _, r := range rs {
		if r.Offset >= uint64(n) || uint64(n)-r.Offset < uint64(FieldSize(r.Type)) {
			return false
		}
	}
	return true
}

// InModule reports whether f lives in a module rather than in vmlinux.
func (f *Function) InModule() bool { return f.Object != Vmlinux }

// SiteKind is a kind of place in pre code that the kernel rewrites at run
// time and that the code's relocations alone do not describe. Thunk calls,
// static calls, paravirt calls, lock prefixes and the fentry call are
// recognised by their relocations and bytes instead.
type SiteKind int

// The site kinds.
const (
	// SiteAlternative: the original instruction(s) or, when the CPU has
	// the feature, the replacement padded with NOPs.
	SiteAlternative SiteKind = iota + 1
	// SiteJumpLabel: a NOP or a jump of the same length to Target.
	SiteJumpLabel
)

var siteKindNames = map[SiteKind]string{SiteAlternative: "alternative", SiteJumpLabel: "jump_label"}

func (k SiteKind) String() string {
	if n, ok := siteKindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("site kind %d", int(k))
}

// MarshalText writes the kind's name.
func (k SiteKind) MarshalText() ([]byte, error) {
	n, ok := siteKindNames[k]
	if !ok {
		return nil, fmt.Errorf("unknown site kind %d", int(k))
	}
	return []byte(n), nil
}

// UnmarshalText reads a kind's name.
func (k *SiteKind) UnmarshalText(b []byte) error {
	for kind, n := range siteKindNames {
		if n == string(b) {
			*k = kind
			return nil
		}
	}
	return fmt.Errorf("unknown site kind %q", b)
}

// Site is one runtime-rewritten place in a function's pre code.
type Site struct {
	Kind   SiteKind `json:"kind"`
	Offset int      `json:"offset"`
	Len    int      `json:"len"`
	// Alternative: the replacement's code (relocation fields zero), its
	// relocations (offsets within Code) and the CPU feature the kernel
	// tests (cpuid word, bit 15 meaning "not").
	Code    []byte  `json:"code,omitempty"`
	Relocs  []Reloc `json:"relocs,omitempty"`
	Feature uint16  `json:"feature,omitempty"`
	// Jump label: the jump's target, an offset within the function or,
	// when TargetSymbol is set (a .cold part), from that symbol.
	Target       int    `json:"target,omitempty"`
	TargetSymbol string `json:"target_symbol,omitempty"`
}

// Reloc is one relocation in a function's pre code. Symbol is the kernel
// symbol the relocation points to (a section-symbol reference is named by
// the symbol covering it, the delta folded into Addend); for targets no
// symbol names (merged strings, anonymous data) it is the section name and
// Addend the raw addend: the loader can read such a value but not resolve
// it.
type Reloc struct {
	Offset uint64
	Type   elf.R_X86_64
	Symbol string
	Addend int64
}

// relocJSON is Reloc as the manifest writes it: the type by name.
type relocJSON struct {
	Offset uint64 `json:"offset"`
	Type   string `json:"type"`
	Symbol string `json:"symbol"`
	Addend int64  `json:"addend"`
}

// MarshalJSON writes the relocation with its type's ELF name.
func (r Reloc) MarshalJSON() ([]byte, error) {
	return json.Marshal(relocJSON{r.Offset, r.Type.String(), r.Symbol, r.Addend})
}

// UnmarshalJSON reads a relocation whose type is an ELF x86-64 name.
func (r *Reloc) UnmarshalJSON(b []byte) error {
	var j relocJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	t, ok := relocTypes[j.Type]
	if !ok {
		return fmt.Errorf("relocation against %s: unknown type %q", j.Symbol, j.Type)
	}
	*r = Reloc{Offset: j.Offset, Type: t, Symbol: j.Symbol, Addend: j.Addend}
	return nil
}

// relocTypes maps the names of the relocation types the model carries.
var relocTypes = func() map[string]elf.R_X86_64 {
	m := map[string]elf.R_X86_64{}
	for t := elf.R_X86_64_NONE; t <= elf.R_X86_64_REX_GOTPCRELX; t++ {
		if n := t.String(); strings.HasPrefix(n, "R_X86_64_") {
			m[n] = t
		}
	}
	return m
}()

// FieldSize is the number of bytes a relocation of type t writes; 0 for
// the types the model does not handle.
func FieldSize(t elf.R_X86_64) int {
	switch t {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_32S, elf.R_X86_64_32:
		return 4
	case elf.R_X86_64_64, elf.R_X86_64_PC64:
		return 8
	}
	return 0
}

// PCRelative reports whether t is relative to the place it is written.
func PCRelative(t elf.R_X86_64) bool {
	return t == elf.R_X86_64_PC32 || t == elf.R_X86_64_PLT32 || t == elf.R_X86_64_PC64
}

// Fixup is a reference from the update module's code to the running
// kernel that the helper applies at load: it writes Target+Addend
// (PC-relative per Type) at Symbol+Offset.
type Fixup struct {
	Symbol string // GLOBAL symbol of the update module
	Offset uint64
	Type   elf.R_X86_64 // PC32, PLT32, 32S or 64
	Target string       // kernel symbol, its address passed at load
	Addend int64
	// Object is where Target lives: Vmlinux, or a module, in which the
	// helper resolves it each time that module is there.
	Object string
}

// FixupType reports whether the helper applies relocations of type t.
func FixupType(t elf.R_X86_64) bool {
	return t == elf.R_X86_64_PC32 || t == elf.R_X86_64_PLT32 || t == elf.R_X86_64_32S || t == elf.R_X86_64_64
}

// ModuleName is the kernel module name of update id.
func ModuleName(id string) string {
	return "livesplice_" + strings.ReplaceAll(id, "-", "_")
}

// Livepatch symbols. A reference the update module's own loader must
// resolve although vmlinux does not export its target (a jump label's key,
// a per-CPU variable) is written against the undefined symbol
// LivepatchSymbol(name): the module is marked as a livepatch module and
// the kernel's module loader resolves such symbols from kallsyms itself,
// at load, before jump labels are set up (kernel/livepatch/core.c,
// klp_apply_section_relocs). Position 0 means the name must be unique.
const livepatchPrefix = ".klp.sym.vmlinux."

// LivepatchSymbol is the symbol name under which the kernel resolves the
// vmlinux symbol name, which must be unique in kallsyms.
func LivepatchSymbol(name string) string { return livepatchPrefix + name + ",0" }

// LivepatchTarget returns the vmlinux symbol a LivepatchSymbol names.
func LivepatchTarget(sym string) (string, bool) {
	rest, ok := strings.CutPrefix(sym, livepatchPrefix)
	if !ok {
		return "", false
	}
	name, pos, ok := strings.Cut(rest, ",")
	return name, ok && name != "" && pos == "0"
}
