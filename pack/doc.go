// Package pack reads and writes update packs: one .tar.xz file holding
// manifest.json and the files it lists (the update module), each checked
// against the sha256 the manifest records. A pack can be copied to another
// host and applied there. Signatures come later; until then the hashes
// catch damage, not tampering.
package pack
