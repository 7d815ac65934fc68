package pack

// FormatVersion is the manifest format this code writes and reads.
const FormatVersion = 1

// ManifestName is the name of the manifest inside a pack.
const ManifestName = "manifest.json"

// Manifest describes one update. It is the contract between the builder,
// which writes it, and the loader, which acts on it on the target.
type Manifest struct {
	Format      int      `json:"format"`
	ID          string   `json:"id"`
	Description string   `json:"description,omitempty"`
	CVEs        []string `json:"cves,omitempty"`
	Target      Target   `json:"target"`
	// Module is the file name, inside the pack, of the update module.
	Module string `json:"module"`
	// ModuleName is the kernel's name for the module (what lsmod shows).
	ModuleName string `json:"module_name"`
	// Functions are the kernel functions the update replaces.
	Functions []Function `json:"functions"`
	// Anchors are kernel functions the update does not replace, carried
	// for run-pre matching: their code locates statics only the
	// replacement refers to. Only the pre fields are set.
	Anchors []Function `json:"anchors,omitempty"`
	// Symbols are the kernel symbols whose addresses the loader passes to
	// the module, in the order the module expects them (its "addrs"
	// parameter). The module checks each one against kallsyms' name for
	// the address before using it.
	Symbols []string `json:"symbols"`
	// Files maps every other file of the pack to its sha256 (hex).
	Files map[string]string `json:"files"`
}

// Target identifies the kernel an update was built for.
type Target struct {
	// Release is what `uname -r` prints on the target.
	Release string `json:"release"`
	// Version is what `uname -v` prints on the target (UTS_VERSION of its
	// headers): it tells apart rebuilds that keep the release name.
	Version string `json:"version,omitempty"`
	// Compiler is CONFIG_CC_VERSION_TEXT of the target's config.
	Compiler string `json:"compiler"`
	// Source names the source the pre objects were built from, for
	// people (for example "linux-source-6.1 6.1.192-2").
	Source string `json:"source,omitempty"`
}

// Function is one replaced function.
type Function struct {
	// Name is the function's name in the running kernel.
	Name string `json:"name"`
	// Object is the kernel object (relative to the source tree) it lives in.
	Object string `json:"object"`
	// Size is the size of the pre (running) function in bytes.
	Size int `json:"size"`
	// NewSize is the size of the replacement.
	NewSize int `json:"new_size"`
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
}

// Site kinds.
const (
	SiteAlternative = "alternative"
	SiteJumpLabel   = "jump_label"
)

// Site is one runtime-rewritten place in a function's pre code.
type Site struct {
	Kind   string `json:"kind"`
	Offset int    `json:"offset"`
	Len    int    `json:"len"`
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

// Reloc is one relocation in a function's code.
type Reloc struct {
	Offset uint64 `json:"offset"`
	// Type is the ELF x86-64 relocation type name, e.g. "R_X86_64_PLT32".
	Type   string `json:"type"`
	Symbol string `json:"symbol"`
	Addend int64  `json:"addend"`
}
