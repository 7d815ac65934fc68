package corpus

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Entry is one row of a corpus manifest.tsv.
type Entry struct {
	Patch, Path, Status string
	Added, Removed      int
	Kind                string
	// Functions are the functions present in both versions whose bodies the
	// hunks touch; NewFunctions and RemovedFunctions exist only in the new
	// or the old file. Macro-defined ones read MACRO(arg).
	Functions, NewFunctions, RemovedFunctions []string
	TopLevel                                  string
	DataChange                                string
	// Location is "vmlinux", "module:NAME.ko", "not-built" or "header".
	Location string
	// Missing are the changed functions the Debian build has no symbol
	// for: static functions inlined into all their callers (or discarded
	// __init code).
	Missing []string
	// NoCodeChange, when set, says why the edits compile to the same code
	// in this config (not from the manifest: see NoCodeChange).
	NoCodeChange string
}

// Module reports whether the patched file is built into a module.
func (e *Entry) Module() bool { return strings.HasPrefix(e.Location, "module:") }

// Modules are the module files the patched file is built into ("ext4.ko"),
// none for vmlinux and other locations. A file can be part of several.
func (e *Entry) Modules() []string {
	loc, ok := strings.CutPrefix(e.Location, "module:")
	if !ok || loc == "" {
		return nil
	}
	return strings.Split(loc, "+")
}

// Built reports whether the patch changes a .c file that the target's
// build compiles, into vmlinux or into modules.
func (e *Entry) Built() bool {
	return e.Kind == "c" && (e.Location == "vmlinux" || e.Module())
}

// Object is the Kbuild object of the patched file: the .c path with .o.
func (e *Entry) Object() string { return strings.TrimSuffix(e.Path, ".c") + ".o" }

// Touched is every function the patch edits, in either version.
func (e *Entry) Touched() []string {
	var all []string
	all = append(all, e.Functions...)
	all = append(all, e.NewFunctions...)
	return append(all, e.RemovedFunctions...)
}

func list(field string) []string {
	if field == "-" || field == "" {
		return nil
	}
	return strings.Split(field, ",")
}

// ReadManifest reads a corpus manifest.tsv, keyed by patch file name.
func ReadManifest(path string) (map[string]*Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cols map[string]int
	out := map[string]*Entry{}
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Split(sc.Text(), "\t")
		if cols == nil {
			cols = map[string]int{}
			for i, c := range fields {
				cols[c] = i
			}
			for _, c := range []string{"patch", "path", "status", "added", "removed", "kind", "functions", "new_functions", "removed_functions", "toplevel_changes", "data_change", "location", "changed_funcs_in_symtab"} {
				if _, ok := cols[c]; !ok {
					return nil, fmt.Errorf("%s: no column %q", path, c)
				}
			}
			continue
		}
		get := func(c string) string {
			if i := cols[c]; i < len(fields) {
				return fields[i]
			}
			return ""
		}
		e := &Entry{
			Patch: get("patch"), Path: get("path"), Status: get("status"), Kind: get("kind"),
			Functions: list(get("functions")), NewFunctions: list(get("new_functions")),
			RemovedFunctions: list(get("removed_functions")), TopLevel: get("toplevel_changes"),
			DataChange: get("data_change"), Location: get("location"),
		}
		var err1, err2 error
		e.Added, err1 = strconv.Atoi(get("added"))
		e.Removed, err2 = strconv.Atoi(get("removed"))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s:%d: bad added/removed counts", path, line)
		}
		if _, m, ok := strings.Cut(get("changed_funcs_in_symtab"), "missing:"); ok {
			e.Missing = list(strings.TrimSpace(m))
		}
		out[e.Patch] = e
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
