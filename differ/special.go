package differ

import "strings"

// specialUse says what it means for a function to have entries in a
// kernel special section.
type specialUse int

const (
	notSpecial specialUse = iota
	// dropOK: the entry is dropped for replacement code; it is only
	// metadata for the built kernel (__mcount_loc: the replacement's
	// fentry call is a NOP and the old function's fentry site keeps
	// serving ftrace, so the module must not register a second one).
	dropOK
	// carried: ExtractWith copies the function's entries, entry by entry,
	// into the update module, where the kernel's module loader processes
	// them before the update's init runs (see special_carry.go).
	carried
	// mustRefuse: the replacement would behave differently without the
	// entry and it cannot be carried; the function is refused.
	mustRefuse
)

// special classifies a section name; for mustRefuse it gives the reason.
func special(name string) (specialUse, string) {
	if _, ok := carriedSections[name]; ok {
		return carried, ""
	}
	switch name {
	case ".altinstr_replacement":
		return carried, ""
	case ".altinstr_aux":
		return mustRefuse, "uses .altinstr_aux (the static_cpu_has() slow path, code shared outside any function): not supported"
	case ".static_call.text":
		return mustRefuse, "uses .static_call.text (static call trampolines): not supported by this cut"
	case ".orc_unwind":
		return carried, ""
	case "__mcount_loc", "__patchable_function_entries",
		".ibt_endbr_seal", ".ibt_endbr_superfluous", ".call_sites", ".cfi_sites":
		return dropOK, ""
	}
	if strings.HasPrefix(name, ".discard.") || name == ".discard" {
		return dropOK, ""
	}
	return notSpecial, ""
}

// carriage is how one carried section's entries are handled.
type carriage struct {
	// required: the replacement misbehaves without the entry, so an entry
	// that cannot be carried refuses the function. Otherwise the entry is
	// dropped and the unpatched instruction stays (a retpoline or return
	// thunk call, a lock prefix, an indirect pv call, a static call
	// through its trampoline): correct, only not optimised.
	required bool
	// what names the entry kind in refusals.
	what string
	// rewrites: the kernel rewrites the instruction the entry points at
	// when it loads the module (module_finalize), before our init could
	// write a fix-up there.
	rewrites bool
}

// carriedSections are the special sections ExtractWith carries. Their
// entry sizes come from the target kernel (module.EntrySizes), keyed by
// section name; each entry's field at offset 0 points at the code it
// describes, which decides the function it belongs to.
var carriedSections = map[string]carriage{
	"__bug_table":        {required: true, what: "BUG/WARN entry"},
	"__ex_table":         {required: true, what: "exception table entry"},
	".altinstructions":   {required: true, what: "alternative", rewrites: true},
	"__jump_table":       {required: true, what: "jump label"},
	".static_call_sites": {what: "static call site", rewrites: true},
	".retpoline_sites":   {what: "retpoline site", rewrites: true},
	".return_sites":      {what: "return thunk site", rewrites: true},
	".smp_locks":         {what: "lock prefix"},
	".parainstructions":  {what: "paravirt site", rewrites: true},
	".orc_unwind_ip":     {required: true, what: "ORC entry"},
}

// legacyRefusal is the reason Extract (without the target's entry sizes)
// gives for functions with entries it would have to carry.
func legacyRefusal(name string) string {
	switch name {
	case "__jump_table":
		return "uses __jump_table (static keys / jump labels): not supported without the target kernel's entry sizes"
	case ".altinstructions":
		return "uses .altinstructions (CPU-feature alternatives): not supported without the target kernel's entry sizes"
	case "__ex_table":
		return "uses __ex_table (user access fixups): not supported without the target kernel's entry sizes"
	case "__bug_table":
		return "uses __bug_table (BUG/WARN sites): not supported without the target kernel's entry sizes"
	}
	return ""
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
	if name == "__dyndbg" {
		return true // per call site, copied with the functions that use them (newdata.go)
	}
	if name == ".modinfo" {
		return true // a module's author, description, parameters' help: read at load, not by running code
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
