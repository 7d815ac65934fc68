package module

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// livepatchSymbols turns, in the built module ko, every relocation against
// an undefined pack.LivepatchSymbol into a livepatch relocation: the
// symbol gets section index SHN_LIVEPATCH and its relocations move to
// .klp.rela.vmlinux.SECTION, which the kernel's module loader resolves
// from kallsyms at load (the module says MODULE_INFO(livepatch, "Y"),
// Spec.Livepatch). The differ wrote those symbols weak so that modpost
// left them alone. A module without such symbols is left as it is. It
// returns the vmlinux symbols resolved that way.
func livepatchSymbols(ko string) ([]string, error) {
	f, err := elfobj.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	var names []string
	for _, s := range f.Symbols {
		if s == nil || s.Section != nil || s.Shndx != elf.SHN_UNDEF {
			continue
		}
		if name, ok := pack.LivepatchTarget(s.Name); ok {
			s.Shndx, s.Bind = elfobj.SHNLivepatch, elf.STB_GLOBAL
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	for _, sec := range f.Sections {
		if sec == nil {
			continue
		}
		var keep []elfobj.Reloc
		for _, r := range sec.Relocs {
			if r.Sym != nil && r.Sym.Shndx == elfobj.SHNLivepatch {
				sec.Livepatch = append(sec.Livepatch, r)
				continue
			}
			keep = append(keep, r)
		}
		sec.Relocs = keep
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	if err := os.WriteFile(ko, buf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	return names, nil
}
