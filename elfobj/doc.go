// Package elfobj reads and writes x86-64 ELF relocatable objects (ET_REL).
//
// Read parses an object with debug/elf into a File: its sections (with their
// bytes), its symbols, and the RELA relocations of each section, each
// relocation's target resolved to a *Symbol. Every number taken from the file
// is bounds-checked; malformed input gives an error naming the file, never a
// panic.
//
// Write serialises a File (read or built from scratch) as a new ET_REL object:
// the File's sections in order, then one .rela.NAME section per section with
// relocations, then .symtab (local symbols first, sh_info = first global),
// .strtab and .shstrtab. Symbol, relocation and string-table sections present
// in a File are regenerated, never copied.
package elfobj
