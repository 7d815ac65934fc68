package coverage

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ModuleDeps is a kernel's modules.dep: which module files each module
// needs loaded first.
type ModuleDeps struct {
	// Dir is /lib/modules/RELEASE; the paths below are relative to it.
	Dir string
	// deps maps a module's path to the paths it depends on.
	deps map[string][]string
	// byFile maps a module's file name (ext4.ko) to its path.
	byFile map[string]string
}

// ReadModuleDeps reads DIR/modules.dep.
func ReadModuleDeps(dir string) (*ModuleDeps, error) {
	path := filepath.Join(dir, "modules.dep")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module dependencies: %w", err)
	}
	defer f.Close()
	md := &ModuleDeps{Dir: dir, deps: map[string][]string{}, byFile: map[string]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		md.deps[mod] = strings.Fields(deps)
		md.byFile[filepath.Base(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return md, nil
}

// LoadOrder returns the paths of the named module files (ext4.ko) and of
// everything they need, each once, every module after its dependencies.
func (md *ModuleDeps) LoadOrder(files []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(mod string, depth int) error
	visit = func(mod string, depth int) error {
		if seen[mod] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("%s/modules.dep: dependency loop at %s", md.Dir, mod)
		}
		deps, ok := md.deps[mod]
		if !ok {
			return fmt.Errorf("%s/modules.dep has no module %s", md.Dir, mod)
		}
		for _, d := range deps {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		seen[mod] = true
		out = append(out, mod)
		return nil
	}
	for _, f := range files {
		mod, ok := md.byFile[f]
		if !ok {
			return nil, fmt.Errorf("%s/modules.dep has no module file %s", md.Dir, f)
		}
		if err := visit(mod, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DepFile returns a modules.dep for the given modules (paths as
// LoadOrder returns them, each with everything it needs among them): what
// the guest's loader reads to find a module's file.
func (md *ModuleDeps) DepFile(mods []string) []byte {
	var b strings.Builder
	for _, m := range mods {
		b.WriteString(m + ":")
		for _, d := range md.deps[m] {
			b.WriteString(" " + d)
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}
