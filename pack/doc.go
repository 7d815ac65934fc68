// Package pack reads and writes update packs: one .tar.xz file holding
// manifest.json and the files it lists (the update module), each checked
// against the sha256 the manifest records.
//
// It also holds the one model of an update (update.go) that the build
// side and the target side share: Function (where it lives, its pre code,
// relocations and runtime-rewritten sites), Reloc with its ELF type, Site
// with its typed kind, Fixup, the trampoline length JumpLen and the id
// rules (CheckID, ModuleName). The differ produces these types, the
// manifest carries them, the module generator and run-pre matching
// consume them; nothing converts between look-alikes. A pack can be copied to another
// host and applied there. Signatures come later; until then the hashes
// catch damage, not tampering.
package pack
