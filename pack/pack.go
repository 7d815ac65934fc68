package pack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	"github.com/ulikunitz/xz"
)

// maxFileSize bounds what Read accepts for a single member.
const maxFileSize = 256 << 20

// Pack is a pack read into memory.
type Pack struct {
	Manifest Manifest
	// Files holds every member but the manifest, by name.
	Files map[string][]byte
}

// Write creates the pack file at out from m and the named files; it fills in
// m.Files with their hashes.
func Write(out string, m Manifest, files map[string][]byte) error {
	m.Format = FormatVersion
	m.Files = make(map[string]string, len(files))
	names := make([]string, 0, len(files))
	for name, data := range files {
		if err := checkName(name); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		m.Files[name] = hex.EncodeToString(sum[:])
		names = append(names, name)
	}
	sort.Strings(names)
	if err := m.Validate(); err != nil {
		return err
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(xw)
	add := func(name string, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(ManifestName, append(mj, '\n')); err != nil {
		return err
	}
	for _, name := range names {
		if err := add(name, files[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := xw.Close(); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// ReadFile reads and checks the pack at name.
func ReadFile(name string) (*Pack, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, &FormatError{Pack: name, Err: err}
	}
	defer f.Close()
	p, err := Read(f)
	if err != nil {
		return nil, &FormatError{Pack: name, Err: err}
	}
	return p, nil
}

// Read reads a pack and checks it: the manifest parses and is complete,
// every file it lists is present with the recorded sha256, and there is
// nothing else.
func Read(r io.Reader) (*Pack, error) {
	xr, err := xz.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not an xz stream: %w", err)
	}
	tr := tar.NewReader(xr)
	p := &Pack{Files: make(map[string][]byte)}
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("the archive is damaged or truncated: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("member %q is not a regular file", hdr.Name)
		}
		if err := checkName(hdr.Name); err != nil {
			return nil, err
		}
		if hdr.Size > maxFileSize {
			return nil, fmt.Errorf("member %q is %d bytes, more than the %d allowed", hdr.Name, hdr.Size, maxFileSize)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxFileSize))
		if err != nil {
			return nil, fmt.Errorf("the archive is damaged or truncated in member %q: %w", hdr.Name, err)
		}
		if hdr.Name == ManifestName {
			manifest = data
			continue
		}
		if _, dup := p.Files[hdr.Name]; dup {
			return nil, fmt.Errorf("member %q appears twice", hdr.Name)
		}
		p.Files[hdr.Name] = data
	}
	if manifest == nil {
		return nil, fmt.Errorf("no %s", ManifestName)
	}
	dec := json.NewDecoder(bytes.NewReader(manifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p.Manifest); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if err := p.Manifest.Validate(); err != nil {
		return nil, err
	}
	for name, want := range p.Manifest.Files {
		data, ok := p.Files[name]
		if !ok {
			return nil, fmt.Errorf("%s lists %q but the pack does not hold it", ManifestName, name)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			return nil, fmt.Errorf("%q is damaged: sha256 %s, manifest says %s", name, got, want)
		}
	}
	for name := range p.Files {
		if _, ok := p.Manifest.Files[name]; !ok {
			return nil, fmt.Errorf("member %q is not listed in %s", name, ManifestName)
		}
	}
	return p, nil
}

// Validate checks that a manifest has what the loader needs.
func (m *Manifest) Validate() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("%s: format %d, this livesplice reads format %d", ManifestName, m.Format, FormatVersion)
	}
	if err := CheckID(m.ID); err != nil {
		return fmt.Errorf("%s: %w", ManifestName, err)
	}
	missing := func(what string) error { return fmt.Errorf("%s: %s is missing", ManifestName, what) }
	switch {
	case m.Target.Release == "":
		return missing("target.release")
	case m.Module == "":
		return missing("module")
	case m.ModuleName == "":
		return missing("module_name")
	case len(m.Functions) == 0:
		return missing("functions")
	}
	if _, ok := m.Files[m.Module]; !ok {
		return fmt.Errorf("%s: module %q is not among the files", ManifestName, m.Module)
	}
	for i, f := range m.Functions {
		if !f.complete() || f.NewSize <= 0 || f.SiteOffset < 0 || f.SiteOffset+JumpLen > f.Size {
			return fmt.Errorf("%s: function %d (%q) is incomplete or inconsistent", ManifestName, i, f.Name)
		}
	}
	for i, f := range m.Anchors {
		if !f.complete() {
			return fmt.Errorf("%s: anchor %d (%q) is incomplete or inconsistent", ManifestName, i, f.Name)
		}
	}
	return nil
}

// complete reports whether f has what run-pre matching needs.
func (f *Function) complete() bool {
	return f.Name != "" && f.Object != "" && f.Size > 0 && len(f.PreCode) == f.Size && f.coldComplete()
}

// CheckID checks that id is usable as an update id: 1 to 44 characters from
// [a-z0-9-], starting with a letter or digit (the module name,
// livesplice_ID, must fit the kernel's 55 characters).
func CheckID(id string) error {
	valid := id != "" && len(id) <= 44 && id[0] != '-'
	for _, c := range id {
		valid = valid && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-')
	}
	if !valid {
		return fmt.Errorf("update id %q must be 1-44 characters of a-z, 0-9 and -, not starting with -", id)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || name != path.Base(name) || name == "." || name == ".." {
		return fmt.Errorf("member name %q is not a plain file name", name)
	}
	return nil
}

// FormatError says a pack file cannot be used as it is.
type FormatError struct {
	Pack string
	Err  error
}

func (e *FormatError) Error() string { return fmt.Sprintf("pack %s: %v", e.Pack, e.Err) }
func (e *FormatError) Unwrap() error { return e.Err }
