package pack

// FormatVersion is the manifest format this code writes and reads.
const FormatVersion = 3

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
	// NextBoot names the changes of the patch the update does not carry
	// because they only run at boot, module load or unload ("object:
	// function (section)"): they take effect with the next boot.
	NextBoot []string `json:"next_boot,omitempty"`
	// Livepatch are the vmlinux symbols the kernel's module loader
	// resolves for the update module from kallsyms (pack.LivepatchSymbol):
	// each must be in kallsyms exactly once.
	Livepatch []string `json:"livepatch,omitempty"`
	// Symbols are the kernel symbols the loader resolves for the module,
	// in the order the module expects them (its "addrs" parameter): a
	// vmlinux symbol's running address, which the module checks against
	// kallsyms' name for it before using it, or, for a symbol of a
	// module, which of that module's symbols of its name it is (see
	// Symbol).
	Symbols []Symbol `json:"symbols"`
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

// Symbol is a kernel symbol an update needs: its name and the object
// that defines it (Vmlinux or a module name). A module's symbols are
// resolved by the update module each time that module is there (loaded
// before the update, or loading later), from the module's own symbol
// table: the loader passes which of the module's symbols of that name it
// is, 0 for the first in the table's order.
type Symbol struct {
	Name   string `json:"name"`
	Object string `json:"object"`
}

func (s Symbol) String() string {
	if s.Object == Vmlinux || s.Object == "" {
		return s.Name
	}
	return s.Name + " [" + s.Object + "]"
}
