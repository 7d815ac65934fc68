package pack

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/internal/fuzzguard"
	"github.com/livesplice/livesplice/internal/xzdec"
)

// The seed inputs: the manifest and update module of a real pack (see
// testdata/fuzz/README.md at the top of the repository).
const (
	seedDir      = "../testdata/fuzz"
	seedManifest = seedDir + "/manifest.json"
	seedModule   = "livesplice_c_drivers_base_core_7c91ec.ko"
)

// seedPack writes the real pack again (its module is stripped of debug
// information, so the manifest's hash must be made again) and returns its
// bytes.
func seedPack(tb testing.TB) []byte {
	tb.Helper()
	mj, err := os.ReadFile(seedManifest)
	if err != nil {
		tb.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(mj, &m); err != nil {
		tb.Fatalf("%s: %v", seedManifest, err)
	}
	ko, err := os.ReadFile(filepath.Join(seedDir, seedModule))
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), "seed.tar.xz")
	if err := Write(out, m, map[string][]byte{seedModule: ko}); err != nil {
		tb.Fatalf("%s: %v", seedManifest, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzRead mutates a real pack, compressed: Read refuses it with a
// FormatError naming the pack, or returns a pack that is written and read
// back the same.
func FuzzRead(f *testing.F) {
	f.Add(seedPack(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "Read")
		const name = "fuzz.tar.xz"
		p, err := readNamed(name, bytes.NewReader(data))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Pack != name {
				t.Fatalf("error %v is not a FormatError for %s", err, name)
			}
			fuzzguard.Names(t, err, name)
			return
		}
		checkPack(t, p)
		q, err := ReadFile(writePack(t, p))
		if err != nil {
			t.Fatalf("the pack read does not read again once written: %v", err)
		}
		if !sameManifest(t, p.Manifest, q.Manifest) || !sameFiles(p.Files, q.Files) {
			t.Fatalf("written and read again, the pack differs")
		}
	})
}

// FuzzArchive mutates the tar archive of a real pack, uncompressed, which
// compressed mutations seldom reach intact: the members are refused or
// make a consistent pack.
func FuzzArchive(f *testing.F) {
	tarball, err := xzdec.Decompress(seedPack(f), maxPackSize)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tarball)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "readArchive")
		members, err := readArchive(data)
		if err != nil {
			return
		}
		size := 0
		for name, b := range members {
			if checkName(name) != nil {
				t.Fatalf("member %q read", name)
			}
			size += len(b)
		}
		if size > len(data) {
			t.Fatalf("%d bytes of members from an archive of %d", size, len(data))
		}
		if p, err := check(members); err == nil {
			checkPack(t, p)
		}
	})
}

// FuzzManifest mutates a real manifest: decodeManifest refuses it, or
// returns one whose code, relocations and sites can be used as the loader
// does, and that encodes and decodes to itself.
func FuzzManifest(f *testing.F) {
	b, err := os.ReadFile(seedManifest)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "decodeManifest")
		m, err := decodeManifest(data)
		if err != nil {
			return
		}
		checkManifest(t, &m)
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("a manifest read does not encode: %v", err)
		}
		m2, err := decodeManifest(again)
		if err != nil {
			t.Fatalf("a manifest read does not read again once encoded: %v\n%s", err, again)
		}
		if !sameManifest(t, m, m2) {
			t.Fatalf("encoded and read again, the manifest differs")
		}
	})
}

// checkPack checks what Read promises of a pack.
func checkPack(t *testing.T, p *Pack) {
	t.Helper()
	checkManifest(t, &p.Manifest)
	if _, ok := p.Files[p.Manifest.Module]; !ok {
		t.Fatalf("the module %q is not in the pack", p.Manifest.Module)
	}
	if len(p.Files) != len(p.Manifest.Files) {
		t.Fatalf("%d files, the manifest lists %d", len(p.Files), len(p.Manifest.Files))
	}
}

// checkManifest checks that a valid manifest's code, relocations and
// sites can be used as the loader and run-pre matching use them.
func checkManifest(t *testing.T, m *Manifest) {
	t.Helper()
	if err := m.Validate(); err != nil {
		t.Fatalf("a manifest read does not validate: %v", err)
	}
	if CheckID(m.ID) != nil || ModuleName(m.ID) == "" {
		t.Fatalf("update id %q", m.ID)
	}
	inside := func(f *Function, what string, code []byte, off, n uint64) {
		if off > uint64(len(code)) || uint64(len(code))-off < n {
			t.Fatalf("function %s: %s at +%d (%d bytes) outside its %d bytes of code", f.Name, what, off, n, len(code))
		}
	}
	var use func(f *Function)
	use = func(f *Function) {
		inside(f, "code", f.PreCode, 0, uint64(f.Size))
		for _, r := range f.PreRelocs {
			inside(f, "relocation", f.PreCode, r.Offset, uint64(FieldSize(r.Type)))
		}
		for _, s := range f.PreSites {
			inside(f, "site", f.PreCode, uint64(s.Offset), uint64(s.Len))
			for _, r := range s.Relocs {
				inside(f, "site relocation", s.Code, r.Offset, uint64(FieldSize(r.Type)))
			}
		}
		for i := range f.Cold {
			use(&f.Cold[i])
		}
	}
	for i := range m.Functions {
		f := &m.Functions[i]
		inside(f, "patch site", f.PreCode, uint64(f.SiteOffset), JumpLen)
		use(f)
	}
	for i := range m.Anchors {
		use(&m.Anchors[i])
	}
}

func writePack(t *testing.T, p *Pack) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "again.tar.xz")
	if err := Write(out, p.Manifest, p.Files); err != nil {
		t.Fatalf("a pack read does not write: %v", err)
	}
	return out
}

// sameManifest compares manifests by their encoding, which does not tell
// a nil slice from an empty one where the manifest does not either.
func sameManifest(t *testing.T, a, b Manifest) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for name, data := range a {
		if d, ok := b[name]; !ok || !bytes.Equal(d, data) {
			return false
		}
	}
	return true
}

// A pack whose xz block declares a 4 GiB dictionary is read with a
// dictionary of its own size: github.com/ulikunitz/xz's reader, which Read
// used before, allocated the 4 GiB.
func TestReadHugeDictionary(t *testing.T) {
	good := seedPack(t)
	b := bytes.Clone(good)
	// The stream header is 12 bytes; the block header follows, its last
	// filter LZMA2 (0x21) with one property byte, then its crc32.
	hsize := (int(b[12]) + 1) * 4
	h := b[12 : 12+hsize-4]
	at := bytes.LastIndexByte(h, 0x21) + 2
	if h[at-1] != 1 {
		t.Fatalf("block header % x: no LZMA2 filter with one property byte", h)
	}
	h[at] = 40
	binary.LittleEndian.PutUint32(b[12+hsize-4:], crc32.ChecksumIEEE(h))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, err := Read(bytes.NewReader(b))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest.ID != "c-drivers-base-core-7c91ec" {
		t.Errorf("read %q", p.Manifest.ID)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("reading a %d-byte pack allocated %d bytes", len(b), n)
	}
}

// A tar member that declares more bytes than the archive holds is refused
// before anything of its size is allocated.
func TestReadArchiveLyingSize(t *testing.T) {
	tarball, err := xzdec.Decompress(seedPack(t), maxPackSize)
	if err != nil {
		t.Fatal(err)
	}
	// The first header is the manifest's PAX or ustar header; its size
	// field is 12 octal digits at offset 124.
	b := bytes.Clone(tarball)
	copy(b[124:136], "07777777777\x00")
	var sum int64
	copy(b[148:156], "        ")
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:156], []byte(octal(sum, 7)+"\x00"))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = readArchive(b)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("read an archive whose first member says it is 1 GiB")
	}
	if !strings.Contains(err.Error(), "says it is 1073741823 bytes") {
		t.Errorf("error %v, want the member's declared size", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("refusing it allocated %d bytes (%v)", n, err)
	}
}

func octal(v int64, width int) string {
	s := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		s[i] = byte('0' + v&7)
		v >>= 3
	}
	return string(s)
}
