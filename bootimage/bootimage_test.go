package bootimage

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

const (
	synthLink   = 0xffffffff81000000 // link address of _text
	synthPhys   = 0x1000000          // its physical address
	synthPercpu = 0x1001000          // physical address of the per-CPU segment
)

// synthRelocs is a relocation table: link addresses of fields.
type synthRelocs struct{ r64, inv32, r32 []uint64 }

// bytes returns the table as relocs.c writes it.
func (r synthRelocs) bytes() []byte {
	var b []byte
	put := func(v uint64) { b = binary.LittleEndian.AppendUint32(b, uint32(v)) }
	for _, l := range [][]uint64{r.r64, r.inv32, r.r32} {
		put(0)
		for _, v := range l {
			put(v)
		}
	}
	return b
}

// note returns an ELF note.
func note(name string, typ uint32, desc []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = append(b, name...)
	b = append(b, make([]byte, 4-len(name)%4)...)
	b = append(b, desc...)
	return append(b, make([]byte, (4-len(desc)%4)%4)...)
}

// synthNotes are notes like a kernel's: Xen's, the build-id, Linux's.
var synthBuildID = []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func synthNotes(id []byte) []byte {
	b := note("Xen", 6, []byte("linux\x00"))
	b = append(b, note("Xen", 3, []byte{0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff})...)
	if id != nil {
		b = append(b, note("GNU", ntGNUBuildID, id)...)
	}
	return append(b, note("Linux", 0x100, []byte{0, 0, 0, 0})...)
}

// synthELF returns a small kernel-like ELF: a text segment of 4 KiB at
// synthLink (notes at +0x800), a per-CPU segment of 256 bytes linked at 0,
// the text's fields set by fill.
func synthELF(notes []byte, fill func(text, percpu []byte)) []byte {
	const textOff, percpuOff = 0x1000, 0x2000
	b := make([]byte, percpuOff+0x100)
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], synthPhys)
	le.PutUint64(b[32:], 64) // e_phoff
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 3)
	le.PutUint16(b[58:], 64)
	ph := func(i int, typ uint32, off, vaddr, paddr, size, align uint64) {
		p := b[64+56*i:]
		le.PutUint32(p, typ)
		le.PutUint32(p[4:], 5)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], vaddr)
		le.PutUint64(p[24:], paddr)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
		le.PutUint64(p[48:], align)
	}
	ph(0, 1, textOff, synthLink, synthPhys, 0x1000, 0x200000)
	ph(1, 1, percpuOff, 0, synthPercpu, 0x100, 0x200000)
	ph(2, 4, textOff+0x800, synthLink+0x800, synthPhys+0x800, uint64(len(notes)), 4)
	copy(b[textOff+0x800:], notes)
	fill(b[textOff:textOff+0x1000], b[percpuOff:])
	return b
}

// synthFields puts a 32-bit, an inverse 32-bit and a 64-bit relocated field
// in the text and a 64-bit one in the per-CPU segment.
func synthFields(text, percpu []byte) {
	binary.LittleEndian.PutUint32(text[0x10:], uint32((synthLink+0x100)&0xffffffff))
	binary.LittleEndian.PutUint32(text[0x20:], 0x1000)
	binary.LittleEndian.PutUint64(text[0x30:], synthLink+0x200)
	binary.LittleEndian.PutUint64(percpu[0x8:], synthLink+0x300)
	copy(text[0x40:], "plain code")
}

var synthTable = synthRelocs{
	r64:   []uint64{synthLink + 0x30, synthLink + 0x1008}, // the second is in the per-CPU segment
	inv32: []uint64{synthLink + 0x20},
	r32:   []uint64{synthLink + 0x10},
}

// bzImage wraps payload (already compressed, without size) in a minimal
// bzImage whose header describes it.
func bzImage(payload []byte, size uint32) []byte {
	const pm, off = 0x400, 0x100 // setup_sects = 1
	b := make([]byte, pm+off)
	b[hdrSetupSects] = 1
	binary.LittleEndian.PutUint16(b[hdrBootFlag:], 0xAA55)
	copy(b[hdrMagic:], "HdrS")
	binary.LittleEndian.PutUint16(b[hdrVersion:], 0x20f)
	binary.LittleEndian.PutUint32(b[hdrPayloadOffset:], off)
	binary.LittleEndian.PutUint32(b[hdrPayloadLength:], uint32(len(payload)+4))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, size)
}

func xzCompress(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// synthImage returns a bzImage of elf followed by table.
func synthImage(t testing.TB, elf, table []byte) []byte {
	all := append(bytes.Clone(elf), table...)
	return bzImage(xzCompress(t, all), uint32(len(all)))
}

func TestRelocate(t *testing.T) {
	img, err := parse("synth", synthImage(t, synthELF(synthNotes(synthBuildID), synthFields), synthTable.bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if img.LinkAddr() != synthLink {
		t.Fatalf("LinkAddr = %#x", img.LinkAddr())
	}
	type field struct {
		at    uint64 // offset from _text
		width int
	}
	fields := []field{{0x10, 4}, {0x20, 4}, {0x30, 8}, {0x1008, 8}, {0x40, 10}}
	tests := []struct {
		delta uint64
		want  []string // hex of each field
	}{
		{0, []string{"00010081", "00100000", "00020081ffffffff", "00030081ffffffff", "706c61696e20636f6465"}},
		{0x400000, []string{"00014081", "0010c0ff", "00024081ffffffff", "00034081ffffffff", "706c61696e20636f6465"}},
		// Relocating again starts from the current state.
		{0x200000, []string{"00012081", "0010e0ff", "00022081ffffffff", "00032081ffffffff", "706c61696e20636f6465"}},
		{0x3ea00000, []string{"0001a0bf", "001060c1", "0002a0bfffffffff", "0003a0bfffffffff", "706c61696e20636f6465"}},
		{0, []string{"00010081", "00100000", "00020081ffffffff", "00030081ffffffff", "706c61696e20636f6465"}},
	}
	for _, tc := range tests {
		if err := img.Relocate(synthLink + tc.delta); err != nil {
			t.Fatal(err)
		}
		for i, f := range fields {
			b, err := img.Read(synthLink+tc.delta+f.at, f.width)
			if err != nil {
				t.Fatal(err)
			}
			if got := hexs(b); got != tc.want[i] {
				t.Errorf("delta %#x: field at _text+%#x = %s, want %s", tc.delta, f.at, got, tc.want[i])
			}
		}
	}
	id, err := img.BuildID()
	if err != nil || !bytes.Equal(id, synthBuildID) {
		t.Errorf("BuildID = % x, %v; want % x", id, err, synthBuildID)
	}
}

func hexs(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		s.WriteString("0123456789abcdef"[c>>4 : c>>4+1])
		s.WriteString("0123456789abcdef"[c&15 : c&15+1])
	}
	return s.String()
}

func TestReadErrors(t *testing.T) {
	img, err := parse("synth", synthImage(t, synthELF(synthNotes(synthBuildID), synthFields), synthTable.bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Relocate(synthLink + 0x600000); err != nil {
		t.Fatal(err)
	}
	text := uint64(synthLink + 0x600000)
	tests := []struct {
		addr uint64
		n    int
		want string // "" for success
	}{
		{text, 0x1000, ""},
		{text + 0xfff, 1, ""},
		{text + 0x1000, 0x100, ""}, // the per-CPU segment's initial data follows
		{text, 0, ""},
		{text - 1, 1, "synth: 0xffffffff815fffff+1 is outside the image (_text at 0xffffffff81600000)"},
		{text + 0xff0, 0x20, "outside the image"}, // across the segments
		{text + 0x1100, 1, "outside the image"},
		{synthLink, 1, "outside the image"}, // the link address, no longer valid
		{^uint64(0), 2, "outside the image"},
		{text, -1, "reading -1 bytes"},
	}
	for _, tc := range tests {
		b, err := img.Read(tc.addr, tc.n)
		switch {
		case tc.want == "" && (err != nil || len(b) != tc.n):
			t.Errorf("Read(%#x, %d) = %d bytes, %v", tc.addr, tc.n, len(b), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Read(%#x, %d): error %v, want %q", tc.addr, tc.n, err, tc.want)
		}
	}
	// Read returns a copy.
	b, _ := img.Read(text+0x40, 5)
	b[0] = 'X'
	if b2, _ := img.Read(text+0x40, 5); string(b2) != "plain" {
		t.Errorf("Read aliases the image: %q", b2)
	}
}

func TestRelocateErrors(t *testing.T) {
	img, err := parse("synth", synthImage(t, synthELF(synthNotes(synthBuildID), synthFields), synthTable.bytes()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text uint64
		want string
	}{
		{synthLink - 0x200000, "below the link address"},
		{synthLink + 0x1000, "not a KASLR address"},
		{0xffffffffc0000000, "past the kernel image mapping (0xffffffffc0000000)"},
		{0xffffffffffe00000, "past the kernel image mapping"},
	}
	for _, tc := range tests {
		err := img.Relocate(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "synth") {
			t.Errorf("Relocate(%#x): error %v, want %q", tc.text, err, tc.want)
		}
	}
	// A refused Relocate changes nothing.
	if b, _ := img.Read(synthLink+0x10, 4); hexs(b) != "00010081" {
		t.Errorf("field after refused Relocate: %s", hexs(b))
	}
}

func TestOpenErrors(t *testing.T) {
	elf := synthELF(synthNotes(synthBuildID), synthFields)
	good := synthImage(t, elf, synthTable.bytes())
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a bzImage: 0 bytes"},
		{"boot flag", edit(func(b []byte) []byte { b[hdrBootFlag] = 0; return b }), "not a bzImage: boot flag 0xaa00"},
		{"header magic", edit(func(b []byte) []byte { b[hdrMagic] = 'X'; return b }), `not a bzImage: header magic "XdrS"`},
		{"old protocol", edit(func(b []byte) []byte { b[hdrVersion] = 0x07; return b }), "boot protocol 2.07"},
		{"truncated", good[:len(good)-10], "runs past the end of the file"},
		{"not xz", edit(func(b []byte) []byte { copy(b[0x500:], []byte{0x1f, 0x8b, 8, 0, 0, 0}); return b }), "payload is not xz (starts 1f 8b 08 00 00 00"},
		{"xz damaged", edit(func(b []byte) []byte { b[0x500+40] ^= 0x55; return b }), "xz block 0"},
		{"size trailer larger", edit(func(b []byte) []byte { b[len(b)-4]++; return b }), "its trailer says"},
		{"size trailer smaller", edit(func(b []byte) []byte { b[len(b)-4]--; return b }), "uncompressed size larger than"},
		{"not ELF", synthImage(t, bytes.Repeat([]byte{1}, 256), nil), "decompressed payload: bad magic"},
		{"relocation outside", synthImage(t, elf, synthRelocs{r32: []uint64{synthLink + 0x1ffe}}.bytes()),
			"relocation table: 32-bit relocation at 0xffffffff81001ffe: not in any loaded segment"},
		{"relocation across a segment end", synthImage(t, elf, synthRelocs{r64: []uint64{synthLink + 0xffc}}.bytes()),
			"64-bit relocation at 0xffffffff81000ffc: not in any loaded segment"},
		{"no table", synthImage(t, elf, nil), "32-bit list runs into the ELF file"},
		{"table cut", synthImage(t, elf, synthTable.bytes()[4:]), "64-bit list runs into the ELF file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse("vmlinuz-test", tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "boot image vmlinuz-test: ") {
				t.Fatalf("error %v, want one naming the file and containing %q", err, tc.want)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "vmlinuz-none")); err == nil || !strings.Contains(err.Error(), "vmlinuz-none") {
		t.Errorf("Open of a missing file: %v", err)
	}
}

func TestBuildID(t *testing.T) {
	img, err := parse("synth", synthImage(t, synthELF(synthNotes(nil), synthFields), synthTable.bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.BuildID(); err == nil || !strings.Contains(err.Error(), "boot image synth: build-id missing") {
		t.Errorf("BuildID without the note: %v", err)
	}
}

func TestRunningBuildID(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		data []byte
		want string // hex, or error text
	}{
		{"notes", synthNotes(synthBuildID), hexs(synthBuildID)},
		{"trailing zeros", append(synthNotes(synthBuildID), 0, 0, 0, 0), hexs(synthBuildID)},
		{"build-id first", note("GNU", ntGNUBuildID, []byte{1, 2, 3}), "010203"},
		{"other GNU note", note("GNU", 1, make([]byte, 16)), "build-id missing"},
		{"no build-id", synthNotes(nil), "build-id missing"},
		{"empty", nil, "build-id missing"},
		{"truncated", synthNotes(synthBuildID)[:60], "run past the end"},
		{"garbage", []byte{1, 2, 3}, "truncated header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(strings.ReplaceAll(tc.name, " ", "-"), tc.data)
			id, err := RunningBuildID(path)
			switch {
			case err == nil && hexs(id) != tc.want:
				t.Errorf("= %s, want %s", hexs(id), tc.want)
			case err != nil && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path)):
				t.Errorf("error %v, want one naming %s and containing %q", err, path, tc.want)
			}
		})
	}
	if _, err := RunningBuildID(filepath.Join(dir, "missing")); err == nil {
		t.Error("no error for a missing file")
	}
}
