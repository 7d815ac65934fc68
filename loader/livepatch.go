package loader

import (
	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
)

// checkLivepatch refuses an update when a vmlinux symbol that the kernel's
// module loader is to resolve for it by name (the manifest's livepatch
// symbols: position 0, see pack.LivepatchSymbol) is not in kallsyms
// exactly once: the load would fail, or pick the wrong one.
func checkLivepatch(m *pack.Manifest, syms *kallsyms.Table) error {
	for _, name := range m.Livepatch {
		switch n := len(syms.Lookup(name)); n {
		case 1:
		case 0:
			return refuse(KindSymbol, m.ID, nil,
				"the running kernel has no symbol %s, which the update's module needs resolved by the kernel at load", name)
		default:
			return refuse(KindSymbol, m.ID, nil,
				"the running kernel has %d symbols named %s, which the update's module needs resolved by name at load: cannot tell which one it means", n, name)
		}
	}
	return nil
}
