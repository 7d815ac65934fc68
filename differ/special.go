package differ

import "strings"

// specialUse says what it means for a function to have entries in a
// kernel special section.
type specialUse int

const (
	notSpecial specialUse = iota
	// dropOK: the entry may be dropped for replacement code; the
	// unpatched site stays correct (thunk calls, lock prefixes, indirect
	// pv calls, static-call trampolines) or the entry is only metadata.
	dropOK
	// mustRefuse: the replacement would behave differently without the
	// entry; this cut refuses the function.
	mustRefuse
)

// special classifies a section name; for mustRefuse it gives the reason.
func special(name string) (specialUse, string) {
	switch name {
	case "__jump_table":
		return mustRefuse, "uses __jump_table (static keys / jump labels): not supported by this cut"
	case ".altinstructions", ".altinstr_replacement", ".altinstr_aux":
		return mustRefuse, "uses " + name + " (CPU-feature alternatives): not supported by this cut"
	case "__ex_table":
		return mustRefuse, "uses __ex_table (user access fixups): not supported by this cut"
	case "__bug_table":
		return mustRefuse, "uses __bug_table (BUG/WARN sites): not supported by this cut"
	case ".static_call.text":
		return mustRefuse, "uses .static_call.text (static call trampolines): not supported by this cut"
	case ".return_sites", ".retpoline_sites", "__mcount_loc", ".smp_locks", ".parainstructions",
		".static_call_sites", ".orc_unwind", ".orc_unwind_ip", "__patchable_function_entries",
		".ibt_endbr_seal", ".ibt_endbr_superfluous", ".call_sites", ".cfi_sites":
		return dropOK, ""
	}
	if strings.HasPrefix(name, ".discard.") || name == ".discard" {
		return dropOK, ""
	}
	return notSpecial, ""
}

// windowMetadata reports special sections whose entries may point inside
// the patch site: they describe the code, the kernel never rewrites it
// because of them.
func windowMetadata(name string) bool {
	return name == ".orc_unwind_ip" || name == ".orc_unwind" || name == "__mcount_loc" ||
		name == "__patchable_function_entries" || strings.HasPrefix(name, ".discard")
}

// ignoredSection reports sections that take no part in the comparison:
// special sections (judged through the functions they point into),
// non-loaded ones, and init/exit-time tables.
func ignoredSection(name string) bool {
	if use, _ := special(name); use != notSpecial {
		return true
	}
	for _, p := range []string{".debug", ".note", ".comment", ".rela", ".initcall", ".con_initcall",
		".init.", ".exit.", "__initcall", ".BTF", ".gnu."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// initSection reports code that runs only at boot or module load.
func initSection(name string) bool {
	return name == ".init.text" || strings.HasPrefix(name, ".init.text.") ||
		name == ".head.text"
}

// exitSection reports __exit code, discarded from the built-in kernel.
func exitSection(name string) bool {
	return name == ".exit.text" || strings.HasPrefix(name, ".exit.text.")
}
