package builder

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// PatchedFiles returns the source files a unified diff (-p1) changes, in
// order: C sources (.c) and headers (.h). It refuses what this builder
// cannot turn into an update yet: new or deleted files, and anything else.
func PatchedFiles(name string, diff []byte) ([]string, error) {
	var files []string
	seen := make(map[string]bool)
	var oldName string
	sc := bufio.NewScanner(bytes.NewReader(diff))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		switch {
		case strings.HasPrefix(text, "--- "):
			oldName = diffPath(text[4:])
		case strings.HasPrefix(text, "+++ "):
			newName := diffPath(text[4:])
			if oldName == "" || oldName == "/dev/null" || newName == "/dev/null" {
				return nil, fmt.Errorf("patch %s line %d: creates or deletes a file (%s): not supported", name, line, strings.TrimSpace(text[4:]))
			}
			file, err := stripOne(newName)
			if err != nil {
				return nil, fmt.Errorf("patch %s line %d: %w", name, line, err)
			}
			switch path.Ext(file) {
			case ".c", ".h":
			default:
				return nil, fmt.Errorf("patch %s changes %s: only C sources (.c) and headers (.h) can be turned into an update", name, file)
			}
			if !seen[file] {
				seen[file] = true
				files = append(files, file)
			}
			oldName = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("patch %s: %w", name, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("patch %s changes no file: is it a unified diff?", name)
	}
	return files, nil
}

// splitHeaders separates the headers among files from the C sources.
func splitHeaders(files []string) (sources, headers []string) {
	for _, f := range files {
		if path.Ext(f) == ".h" {
			headers = append(headers, f)
		} else {
			sources = append(sources, f)
		}
	}
	return sources, headers
}

// diffPath takes the path from a ---/+++ line, dropping a trailing timestamp.
func diffPath(s string) string {
	if i := strings.IndexByte(s, '\t'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// stripOne removes the first path component, as patch -p1 does.
func stripOne(p string) (string, error) {
	_, rest, ok := strings.Cut(p, "/")
	clean := path.Clean(rest)
	if !ok || rest == "" || strings.HasPrefix(clean, "../") || path.IsAbs(clean) {
		return "", fmt.Errorf("path %q does not look like a/FILE (patches must apply with -p1 inside the tree)", p)
	}
	return clean, nil
}
