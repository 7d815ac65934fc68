package demo

import (
	"path/filepath"

	"github.com/livesplice/livesplice/guest"
)

// Module replaces bm_entry_read of binfmt_misc, a module in Debian's
// config (CONFIG_BINFMT_MISC=m) that the busybox guest loads, mounts and
// drives with echo and cat: the fix makes a registered format's own file
// say "disabled" while binfmt_misc as a whole is disabled. The replacement
// reads binfmt_misc's static "enabled", which the update module finds in
// the loaded module each time it loads.
var Module = Update{"binfmt-entry", "testdata/module/binfmt-misc-entry-disabled.patch",
	"binfmt_misc: an entry reads disabled while binfmt_misc is"}

// The module the Module update is for, and its function it replaces.
const (
	ModuleName     = "binfmt_misc"
	ModuleFunction = "bm_entry_read"
)

// ModuleFiles are the files the module scenario needs in the guest: the
// target's binfmt_misc.ko where Debian installs it, with a modules.dep
// that lists it (what the loader reads to find the file of a module that
// is not loaded).
func (s Setup) ModuleFiles() []guest.File {
	const rel = "kernel/fs/binfmt_misc.ko"
	dir := "/lib/modules/" + s.Tree.Release
	return []guest.File{
		{Path: dir + "/" + rel, Mode: 0o644, Source: filepath.Join(dir, rel)},
		{Path: dir + "/modules.dep", Mode: 0o644, Data: []byte(rel + ":\n")},
	}
}
