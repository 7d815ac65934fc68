package demo

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
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

// ModuleOtherBuild is where the module scenario finds another build of
// binfmt_misc.ko (OtherModuleBuild), under the guest's /lib/modules/RELEASE.
const ModuleOtherBuild = "extra/binfmt_misc-other.ko"

// ModuleFiles are the files the module scenario needs in the guest: the
// target's binfmt_misc.ko where Debian installs it, with a modules.dep
// that lists it (what the loader reads to find the file of a module that
// is not loaded), and another build of it (OtherModuleBuild).
func (s Setup) ModuleFiles() ([]guest.File, error) {
	const rel = "kernel/fs/binfmt_misc.ko"
	dir := "/lib/modules/" + s.Tree.Release
	ko, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return nil, err
	}
	other, err := OtherModuleBuild(ko)
	if err != nil {
		return nil, err
	}
	return []guest.File{
		{Path: dir + "/" + rel, Mode: 0o644, Data: ko},
		{Path: dir + "/modules.dep", Mode: 0o644, Data: []byte(rel + ":\n")},
		{Path: dir + "/" + ModuleOtherBuild, Mode: 0o644, Data: other},
	}, nil
}

// moduleSigMarker ends a module file with an appended signature; the
// signature and a 12-byte struct module_signature (its length, big
// endian, in the last 4) come before it.
const moduleSigMarker = "~Module signature appended~\n"

// OtherModuleBuild returns binfmt_misc.ko (ko) as another build of it
// could be: without its appended signature (the kernel refuses a bad
// signature even where it requires none, and loads an unsigned module,
// tainted) and with one byte of bm_entry_read's patch site changed (the
// push %r15 at +5 made a push %r14). An update that waits for the module
// must refuse to let that load.
func OtherModuleBuild(ko []byte) ([]byte, error) {
	out := append([]byte(nil), ko...)
	if bytes.HasSuffix(out, []byte(moduleSigMarker)) {
		end := len(out) - len(moduleSigMarker)
		if end < 12 {
			return nil, errors.New("binfmt_misc.ko: a signature marker and no signature")
		}
		sigLen := int(binary.BigEndian.Uint32(out[end-4:]))
		if end-12-sigLen < 0 {
			return nil, errors.New("binfmt_misc.ko: the signature is longer than the file")
		}
		out = out[:end-12-sigLen]
	}
	f, err := elf.NewFile(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("binfmt_misc.ko: %w", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("binfmt_misc.ko: %w", err)
	}
	for _, s := range syms {
		if s.Name != ModuleFunction || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		at := f.Sections[s.Section].Offset + s.Value + 5
		if !bytes.Equal(out[at:at+2], []byte{0x41, 0x57}) {
			return nil, fmt.Errorf("binfmt_misc.ko: %s+5 holds % x, not push %%r15", ModuleFunction, out[at:at+2])
		}
		out[at+1] = 0x56
		return out, nil
	}
	return nil, fmt.Errorf("binfmt_misc.ko: no function %s", ModuleFunction)
}
