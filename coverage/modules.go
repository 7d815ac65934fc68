package coverage

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ModuleDeps is what a kernel's module files say about loading them:
// modules.dep (which modules each needs first), modules.softdep (which
// it wants first, by name or alias: libcrc32c's init fails without a
// crc32c) and the plain aliases of modules.alias.
type ModuleDeps struct {
	// Dir is /lib/modules/RELEASE; the paths below are relative to it.
	Dir string
	// deps maps a module's path to the paths it depends on.
	deps map[string][]string
	// byFile maps a module's file name (ext4.ko) to its path, byName its
	// name (crc32c_generic).
	byFile, byName map[string]string
	// softPre maps a module name to the names or aliases it wants loaded
	// first; aliases maps an alias to module names.
	softPre, aliases map[string][]string
}

// ReadModuleDeps reads DIR/modules.dep and, if there, modules.softdep and
// modules.alias.
func ReadModuleDeps(dir string) (*ModuleDeps, error) {
	md := &ModuleDeps{Dir: dir, deps: map[string][]string{}, byFile: map[string]string{}, byName: map[string]string{},
		softPre: map[string][]string{}, aliases: map[string][]string{}}
	err := eachLine(filepath.Join(dir, "modules.dep"), false, func(line string) {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		md.deps[mod] = strings.Fields(deps)
		md.byFile[filepath.Base(mod)] = mod
		md.byName[moduleName(mod)] = mod
	})
	if err != nil {
		return nil, fmt.Errorf("module dependencies: %w", err)
	}
	// softdep NAME pre: A B post: C
	err = eachLine(filepath.Join(dir, "modules.softdep"), true, func(line string) {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return
		}
		pre := false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					md.softPre[f[1]] = append(md.softPre[f[1]], w)
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	// alias NAME MODULE, without wildcards.
	err = eachLine(filepath.Join(dir, "modules.alias"), true, func(line string) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?[") {
			md.aliases[f[1]] = append(md.aliases[f[1]], f[2])
		}
	})
	return md, err
}

// eachLine calls fn on every line of path; a missing file is an error
// unless optional.
func eachLine(path string, optional bool, fn func(string)) error {
	f, err := os.Open(path)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// moduleName is a module's name from its path: the file name without
// .ko, '-' written '_'.
func moduleName(path string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(path), ".ko"), "-", "_")
}

// Load is one module file to load, in order.
type Load struct {
	Path string
	// Optional: a soft dependency (or one of its own dependencies): one
	// of several candidates, which may fail to load (crc32c_intel on a
	// CPU without SSE4.2) without failing the modules that want it.
	Optional bool
}

// LoadOrder returns the module files to load for the named module files
// (ext4.ko): each once, every module after its dependencies and its soft
// dependencies' candidates.
func (md *ModuleDeps) LoadOrder(files []string) ([]Load, error) {
	var out []Load
	at := map[string]int{}
	visiting := map[string]bool{}
	var visit func(mod string, optional bool, depth int) error
	visit = func(mod string, optional bool, depth int) error {
		if i, ok := at[mod]; ok {
			out[i].Optional = out[i].Optional && optional
			return nil
		}
		if visiting[mod] {
			return nil // a loop through soft dependencies
		}
		if depth > 64 {
			return fmt.Errorf("%s/modules.dep: dependency loop at %s", md.Dir, mod)
		}
		deps, ok := md.deps[mod]
		if !ok {
			return fmt.Errorf("%s/modules.dep has no module %s", md.Dir, mod)
		}
		visiting[mod] = true
		defer delete(visiting, mod)
		for _, soft := range md.softPre[moduleName(mod)] {
			for _, cand := range md.candidates(soft) {
				if err := visit(cand, true, depth+1); err != nil {
					return err
				}
			}
		}
		for _, d := range deps {
			if err := visit(d, optional, depth+1); err != nil {
				return err
			}
		}
		at[mod] = len(out)
		out = append(out, Load{Path: mod, Optional: optional})
		return nil
	}
	for _, f := range files {
		mod, ok := md.byFile[f]
		if !ok {
			return nil, fmt.Errorf("%s/modules.dep has no module file %s", md.Dir, f)
		}
		if err := visit(mod, false, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// candidates returns the module paths a soft dependency names: the
// module of that name, else those of that alias (none if it is built in).
func (md *ModuleDeps) candidates(name string) []string {
	if p, ok := md.byName[strings.ReplaceAll(name, "-", "_")]; ok {
		return []string{p}
	}
	var out []string
	for _, m := range md.aliases[name] {
		if p, ok := md.byName[m]; ok {
			out = append(out, p)
		}
	}
	return out
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
