package bootimage

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/internal/fuzzguard"
)

// realSetup returns the setup sectors of the installed Debian image: its
// real boot sector and setup header, without the payload.
func realSetup(tb testing.TB) (setup, whole []byte) {
	tb.Helper()
	whole, err := os.ReadFile(vmlinuz)
	if err != nil {
		tb.Fatalf("%v: run `make kernel-inputs` to install linux-image-6.1.0-56-amd64", err)
	}
	sects := int(whole[hdrSetupSects])
	if sects == 0 {
		sects = 4
	}
	return bytes.Clone(whole[:(sects+1)*512]), whole
}

// realHeaderImage is a small bzImage: the real image's setup sectors with
// the payload fields pointing at a small kernel (synthELF and its
// relocation table) that XZ Utils compressed with the kernel's filters.
func realHeaderImage(tb testing.TB, setup []byte) []byte {
	tb.Helper()
	elf := append(synthELF(synthNotes(synthBuildID), synthFields), synthTable.bytes()...)
	cmd := exec.Command("xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c")
	cmd.Stdin = bytes.NewReader(elf)
	payload, err := cmd.Output()
	if err != nil {
		tb.Fatalf("xz: %v (run `make kernel-inputs` to install xz-utils)", err)
	}
	payload = binary.LittleEndian.AppendUint32(payload, uint32(len(elf)))
	b := append(bytes.Clone(setup), payload...)
	binary.LittleEndian.PutUint32(b[hdrPayloadOffset:], 0)
	binary.LittleEndian.PutUint32(b[hdrPayloadLength:], uint32(len(payload)))
	return b
}

// FuzzParse mutates bzImages with the real setup header of Debian's image:
// one holding a small kernel compressed as the kernel's is, and the real
// image cut after 64 KiB. parse refuses an image with an error naming it,
// or returns one whose every segment reads back as stored, whose
// relocations lie inside it, and that relocates to another KASLR offset
// and back to the same bytes.
func FuzzParse(f *testing.F) {
	setup, whole := realSetup(f)
	small := realHeaderImage(f, setup)
	if _, err := parse("seed", small); err != nil {
		f.Fatalf("the seed image does not parse: %v", err)
	}
	f.Add(small)
	f.Add(whole[:64<<10])
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "parse")
		const name = "fuzz-vmlinuz"
		img, err := parse(name, data)
		if err != nil {
			fuzzguard.Names(t, err, "boot image "+name)
			return
		}
		checkImage(t, img)
	})
}

// FuzzImage mutates the decompressed payload of FuzzParse's small image,
// which compressed mutations seldom reach intact (the xz checks refuse
// them): the ELF's program headers and sections and the relocation table.
func FuzzImage(f *testing.F) {
	f.Add(append(synthELF(synthNotes(synthBuildID), synthFields), synthTable.bytes()...))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "newImage")
		img, err := newImage("fuzz-vmlinux", data)
		if err != nil {
			return
		}
		checkImage(t, img)
	})
}

// checkImage checks what parse promises of an image.
func checkImage(t *testing.T, img *Image) {
	t.Helper()
	n := uint64(len(img.vmlinux))
	for _, s := range append(append([]segment(nil), img.loads...), img.notes...) {
		if s.off > n || n-s.off < s.filesz {
			t.Fatalf("segment %+v outside the %d bytes of ELF", s, n)
		}
	}
	for _, s := range img.loads {
		// Another segment at the same address may be read instead:
		// compare the length only.
		want := int(min(s.filesz, 1<<20))
		if b, err := img.Read(s.paddr+img.kmap, want); err != nil || len(b) != want {
			t.Fatalf("segment %+v: %d bytes read, %v", s, len(b), err)
		}
	}
	lists := [][]uint32{img.rel32, img.relInv32, img.rel64}
	used := map[uint32]bool{}
	overlap := false
	for i, l := range lists {
		width := uint32(4)
		if i == 2 {
			width = 8
		}
		for _, off := range l {
			if uint64(off)+uint64(width) > n {
				t.Fatalf("relocation at %#x outside the %d bytes of ELF", off, n)
			}
			for k := off; k < off+width; k++ {
				overlap = overlap || used[k]
				used[k] = true
			}
		}
	}
	if _, err := img.BuildID(); err != nil {
		fuzzguard.Names(t, err, img.path)
	}
	before := bytes.Clone(img.vmlinux)
	if err := img.Relocate(img.LinkAddr() + img.align); err != nil {
		fuzzguard.Names(t, err, img.path)
		if !bytes.Equal(img.vmlinux, before) {
			t.Fatal("a refused Relocate changed the image")
		}
		return
	}
	if err := img.Relocate(img.LinkAddr()); err != nil {
		t.Fatalf("relocating back: %v", err)
	}
	// Overlapping fields need not come back: carries cross them.
	if !overlap && !bytes.Equal(img.vmlinux, before) {
		t.Fatal("relocated and back, the image differs")
	}
}

// FuzzBuildID mutates the host's /sys/kernel/notes (real notes of the
// running kernel) and the notes of a kernel-like image: findBuildID
// returns an error, nothing, or a non-empty descriptor found in the notes.
func FuzzBuildID(f *testing.F) {
	host, err := os.ReadFile("/sys/kernel/notes")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(host)
	f.Add(synthNotes(synthBuildID))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzguard.Watch(t, "findBuildID")
		id, err := findBuildID(data)
		switch {
		case err != nil && id != nil:
			t.Fatalf("an error (%v) and a build-id", err)
		case id != nil && (len(id) == 0 || !bytes.Contains(data, id)):
			t.Fatalf("build-id % x is not in the notes", id)
		case err != nil && !strings.Contains(err.Error(), "note"):
			t.Fatalf("error %v does not say which note", err)
		}
	})
}
