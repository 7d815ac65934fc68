// Package differ finds what a source patch changed in one kernel object and
// extracts the replacement code.
//
// Diff correlates the "pre" (pristine) and "post" (patched) builds of one
// object, both compiled with -ffunction-sections -fdata-sections, symbol by
// symbol. Functions are compared by name: their bytes with relocation fields
// masked, and their relocations by what they point to (a named symbol plus
// delta, or the content of a merged string/constant), never by the bytes they
// cover. Changes this cut cannot ship (changed data, __init code, special
// sections it does not carry, unsafe patch sites, ...) become Refusals with a
// reason a kernel engineer understands.
//
// Extract writes an ELF relocatable object holding the changed and added
// functions (and the strings they use), plus the metadata the update module
// needs: for each replaced function its pre code and relocations for run-pre
// matching, and the Fixups (references to the running kernel) the module
// applies at load.
package differ
