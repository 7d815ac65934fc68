package module

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// export is one line of Module.symvers.
type export struct {
	object    string // vmlinux or a module path, e.g. fs/ext4/ext4
	namespace string // "" when the symbol is exported into no namespace
}

// readSymvers returns the exports of the headers tree's Module.symvers
// (CRC, symbol, object, kind, namespace), by symbol.
func readSymvers(headers string) (map[string]export, error) {
	path := filepath.Join(headers, "Module.symvers")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	exports := map[string]export{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 4 {
			continue
		}
		e := export{object: f[2]}
		if len(f) >= 5 {
			e.namespace = f[4]
		}
		exports[f[1]] = e
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("module: %s: %w", path, err)
	}
	return exports, nil
}

// Exported returns the symbols vmlinux exports, from the headers tree's
// Module.symvers: what the kernel's module loader resolves (and modpost
// versions) when a module references them.
func Exported(headers string) (map[string]bool, error) {
	exports, err := readSymvers(headers)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for name, e := range exports {
		if e.object == "vmlinux" {
			set[name] = true
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("module: %s/Module.symvers lists no vmlinux exports", headers)
	}
	return set, nil
}

// Exporters returns, for every symbol Module.symvers lists, the object
// that exports it: pack.Vmlinux or a module's name (its file's name with
// '-' written '_', as the kernel names it).
func Exporters(headers string) (map[string]string, error) {
	exports, err := readSymvers(headers)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(exports))
	for name, e := range exports {
		out[name] = strings.ReplaceAll(filepath.Base(e.object), "-", "_")
	}
	return out, nil
}

// Namespaces returns the symbol namespaces the objects' undefined symbols
// are exported into, sorted: the update module must import each one
// (MODULE_IMPORT_NS, Spec.ImportNS) or modpost refuses it.
func Namespaces(headers string, objects []string) ([]string, error) {
	exports, err := readSymvers(headers)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range objects {
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("module: %w", err)
		}
		syms, err := f.Symbols()
		f.Close()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return nil, fmt.Errorf("module: %s: symbols: %w", p, err)
		}
		for _, s := range syms {
			if s.Section != elf.SHN_UNDEF || s.Name == "" {
				continue
			}
			if ns := exports[s.Name].namespace; ns != "" && !seen[ns] {
				seen[ns] = true
				out = append(out, ns)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
