package guest

import (
	"compress/gzip"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// BusyboxPath is the static busybox binary (Debian package busybox-static)
// that BuildInitramfs copies to /bin/busybox in the guest.
const BusyboxPath = "/bin/busybox"

// ScenarioPath is where /init looks for the scenario script.
const ScenarioPath = "/scenario"

//go:embed init.sh
var initScript string

// InitScript returns the /init that BuildInitramfs installs: a busybox sh
// script that mounts proc, sysfs, devtmpfs, devpts, tmpfs on /tmp and /run,
// debugfs and tracefs (when the kernel has them), installs the busybox
// applets as symlinks, sets PATH, prints MarkerStart, runs "sh /scenario"
// with the kernel's extra arguments, prints "@@guest-exit N" and powers off.
func InitScript() string { return initScript }

// File is one file to put in the initramfs.
type File struct {
	Path string      // absolute path inside the guest, e.g. "/bin/livesplice"
	Mode fs.FileMode // e.g. 0o755; fs.ModeDir|0o755 makes a directory; 0 means 0o644 (or the mode of Source)
	Data []byte      // contents; or
	// Source is a host file to copy (used when Data is nil).
	Source string
	// Link, when non-empty, makes the entry a symbolic link to Link;
	// Mode, Data and Source are then ignored.
	Link string
}

// Scenario returns the File that makes script the guest's scenario
// (/scenario, run by /init with "sh /scenario").
func Scenario(script string) File {
	return File{Path: ScenarioPath, Mode: 0o755, Data: []byte(script)}
}

// BuildInitramfs writes a gzip-compressed newc cpio archive to path holding
// busybox (copied from BusyboxPath; its applets are installed at boot), the
// standard directories, /dev/console, our /init (see InitScript) and files.
// Missing parent directories are added with mode 0755. A file whose path
// equals a built-in entry replaces it; two files with the same path are an
// error.
func BuildInitramfs(path string, files []File) error {
	busybox, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	entries, err := initramfsEntries(busybox, files)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", path, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	if err := writeArchive(f, entries); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write initramfs %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write initramfs %s: %w", path, err)
	}
	return nil
}

// writeArchive writes entries as a gzip-compressed newc archive.
func writeArchive(w io.Writer, entries []cpioEntry) error {
	zw := gzip.NewWriter(w)
	cw := newNewcWriter(zw)
	for _, e := range entries {
		if err := cw.WriteEntry(e); err != nil {
			return err
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// initramfsEntries builds the sorted list of archive entries: built-ins,
// the caller's files, and every parent directory.
func initramfsEntries(busybox []byte, files []File) ([]cpioEntry, error) {
	byName := map[string]cpioEntry{}
	baseDirs := []string{
		"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root",
		"proc", "sys", "dev", "tmp", "run", "mnt", "lib", "lib/modules",
	}
	for _, d := range baseDirs {
		byName[d] = cpioEntry{Name: d, Mode: modeDir | 0o755}
	}
	byName["tmp"] = cpioEntry{Name: "tmp", Mode: modeDir | 0o1777}
	byName["root"] = cpioEntry{Name: "root", Mode: modeDir | 0o700}
	byName["dev/console"] = cpioEntry{Name: "dev/console", Mode: modeCharDev | 0o600, RdevMaj: 5, RdevMin: 1}
	byName["bin/busybox"] = cpioEntry{Name: "bin/busybox", Mode: modeRegular | 0o755, Data: busybox}
	byName["bin/sh"] = cpioEntry{Name: "bin/sh", Mode: modeSymlink | 0o777, Data: []byte("busybox")}
	byName["init"] = cpioEntry{Name: "init", Mode: modeRegular | 0o755, Data: []byte(initScript)}

	seen := map[string]bool{}
	for _, f := range files {
		e, err := fileEntry(f)
		if err != nil {
			return nil, err
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("file %s given twice", f.Path)
		}
		seen[e.Name] = true
		byName[e.Name] = e
	}
	// Add missing parents.
	for name := range byName {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = cpioEntry{Name: d, Mode: modeDir | 0o755}
			}
		}
	}
	entries := make([]cpioEntry, 0, len(byName))
	for _, e := range byName {
		if d := path.Dir(e.Name); d != "." {
			if p := byName[d]; p.Mode&modeTypeMask != modeDir {
				return nil, fmt.Errorf("/%s: parent /%s is not a directory", e.Name, d)
			}
		}
		entries = append(entries, e)
	}
	// Sorted by name: a parent always precedes its children.
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

// fileEntry converts a File to an archive entry, reading Source if needed.
func fileEntry(f File) (cpioEntry, error) {
	if !strings.HasPrefix(f.Path, "/") {
		return cpioEntry{}, fmt.Errorf("file %q: path must be absolute", f.Path)
	}
	name := strings.TrimPrefix(path.Clean(f.Path), "/")
	if name == "" {
		return cpioEntry{}, fmt.Errorf("file %q: path names the root", f.Path)
	}
	if f.Link != "" {
		return cpioEntry{Name: name, Mode: modeSymlink | 0o777, Data: []byte(f.Link)}, nil
	}
	mode := f.Mode
	data := f.Data
	if mode.IsDir() {
		if len(data) != 0 || f.Source != "" {
			return cpioEntry{}, fmt.Errorf("file %s: a directory has no contents", f.Path)
		}
	} else if data == nil && f.Source != "" {
		b, err := os.ReadFile(f.Source)
		if err != nil {
			return cpioEntry{}, fmt.Errorf("file %s: %w", f.Path, err)
		}
		data = b
		if mode == 0 {
			fi, err := os.Stat(f.Source)
			if err != nil {
				return cpioEntry{}, fmt.Errorf("file %s: %w", f.Path, err)
			}
			mode = fi.Mode().Perm()
		}
	} else if data == nil && f.Source == "" && mode.Type() == 0 {
		// An empty regular file is allowed.
		data = []byte{}
	}
	if mode == 0 {
		mode = 0o644
	}
	u, err := unixMode(mode)
	if err != nil {
		return cpioEntry{}, fmt.Errorf("file %s: %w", f.Path, err)
	}
	if u&modeTypeMask == modeCharDev {
		return cpioEntry{}, errors.New("file " + f.Path + ": device nodes are not supported")
	}
	return cpioEntry{Name: name, Mode: u, Data: data}, nil
}
