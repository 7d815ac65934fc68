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

	"github.com/livesplice/livesplice/internal/xzdec"
	"github.com/livesplice/livesplice/sign"
)

// maxPackSize bounds what Read accepts: the compressed pack, and the
// files it holds together (a real update module is about 0.5 MB with its
// debug information). What Read allocates is bounded by it, whatever sizes
// the pack declares.
const maxPackSize = 256 << 20

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
	return readNamed(name, f)
}

// readNamed is Read with errors that name the pack.
func readNamed(name string, r io.Reader) (*Pack, error) {
	p, err := Read(r)
	if err != nil {
		return nil, &FormatError{Pack: name, Err: err}
	}
	return p, nil
}

// Read reads a pack and checks it: the manifest parses and is complete,
// every file it lists is present with the recorded sha256, and there is
// nothing else.
func Read(r io.Reader) (*Pack, error) {
	src, err := io.ReadAll(io.LimitReader(r, maxPackSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > maxPackSize {
		return nil, fmt.Errorf("larger than the %d bytes allowed", maxPackSize)
	}
	// A signed pack is read without its signature, which is the caller's
	// to check (livesplice verify): it signs every byte before it.
	if s, err := sign.Split(src); err == nil {
		src = s.Payload
	} else if !errors.Is(err, sign.ErrUnsigned) {
		return nil, err
	}
	if !bytes.HasPrefix(src, []byte(xzdec.Magic)) {
		return nil, errors.New("not an xz stream")
	}
	data, err := xzdec.Decompress(src, maxPackSize)
	if err != nil {
		return nil, fmt.Errorf("the archive is damaged or truncated: %w", err)
	}
	members, err := readArchive(data)
	if err != nil {
		return nil, err
	}
	return check(members)
}

// readArchive returns the members of the tar archive data, by name. Only
// regular files with plain names are allowed, each once.
func readArchive(data []byte) (map[string][]byte, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	members := make(map[string][]byte)
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
		// A sparse member's holes would be read as zeros the archive
		// does not hold.
		if _, sparse := hdr.PAXRecords["GNU.sparse.map"]; sparse || hdr.PAXRecords["GNU.sparse.major"] != "" {
			return nil, fmt.Errorf("member %q is a sparse file", hdr.Name)
		}
		// Members are stored whole: none is larger than the archive, and
		// together they are not either.
		if hdr.Size < 0 || hdr.Size > int64(len(data)) {
			return nil, fmt.Errorf("member %q says it is %d bytes, in an archive of %d", hdr.Name, hdr.Size, len(data))
		}
		if _, dup := members[hdr.Name]; dup {
			return nil, fmt.Errorf("member %q appears twice", hdr.Name)
		}
		buf := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, buf); err != nil {
			return nil, fmt.Errorf("the archive is damaged or truncated in member %q: %w", hdr.Name, err)
		}
		members[hdr.Name] = buf
	}
	return members, nil
}

// check makes a pack of an archive's members: the manifest parses, is
// complete, and lists exactly the other members, with their sha256.
func check(members map[string][]byte) (*Pack, error) {
	manifest, ok := members[ManifestName]
	if !ok {
		return nil, fmt.Errorf("no %s", ManifestName)
	}
	delete(members, ManifestName)
	p := &Pack{Files: members}
	var err error
	if p.Manifest, err = decodeManifest(manifest); err != nil {
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

// decodeManifest parses and validates a manifest.
func decodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%s: data after the manifest", ManifestName)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
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

// complete reports whether f has what run-pre matching needs, every
// relocation and site inside the code it is of.
func (f *Function) complete() bool {
	return f.Name != "" && f.Object != "" && f.Size > 0 && len(f.PreCode) == f.Size && f.preInside() && f.coldComplete()
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
