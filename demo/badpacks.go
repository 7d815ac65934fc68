package demo

import (
	"os"
	"path/filepath"

	"github.com/livesplice/livesplice/pack"
)

// BadPacks writes, next to the demo pack at src, packs that a target must
// refuse, and returns them by guest name:
//   - stale.tar.xz: built (as far as the target can tell) from other source:
//     the pre code at the patch site differs from the running kernel's;
//   - wrong-kernel.tar.xz: made for another kernel release;
//   - damaged.tar.xz: the demo pack with one byte of the file flipped.
func BadPacks(src string) (map[string]string, error) {
	p, err := pack.ReadFile(src)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(src)
	out := make(map[string]string)

	stale := p.Manifest
	stale.Functions = append([]pack.Function(nil), stale.Functions...)
	f := &stale.Functions[0]
	f.PreCode = append([]byte(nil), f.PreCode...)
	f.PreCode[f.SiteOffset] ^= 0x02 // push %rbx -> push %rcx, say
	if err := writeVariant(dir, "stale.tar.xz", stale, p.Files, out); err != nil {
		return nil, err
	}

	wrong := p.Manifest
	wrong.Target.Release = "6.1.0-53-amd64"
	if err := writeVariant(dir, "wrong-kernel.tar.xz", wrong, p.Files, out); err != nil {
		return nil, err
	}

	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	data[len(data)/2] ^= 0xff
	damaged := filepath.Join(dir, "damaged.tar.xz")
	if err := os.WriteFile(damaged, data, 0o644); err != nil {
		return nil, err
	}
	out["damaged.tar.xz"] = damaged
	return out, nil
}

func writeVariant(dir, name string, m pack.Manifest, files map[string][]byte, out map[string]string) error {
	path := filepath.Join(dir, name)
	if err := pack.Write(path, m, files); err != nil {
		return err
	}
	out[name] = path
	return nil
}
