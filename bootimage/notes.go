package bootimage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// ntGNUBuildID is the type of the GNU build-id note (NT_GNU_BUILD_ID).
const ntGNUBuildID = 3

// BuildID returns the GNU build-id of the kernel in the image, from its
// ELF notes. It is the same bytes as RunningBuildID reads from
// /sys/kernel/notes of a kernel booted from this image.
func (img *Image) BuildID() ([]byte, error) {
	for _, s := range img.notes {
		id, err := findBuildID(img.vmlinux[s.off : s.off+s.filesz])
		if err != nil {
			return nil, fmt.Errorf("boot image %s: notes at %#x: %w", img.path, s.off, err)
		}
		if id != nil {
			return id, nil
		}
	}
	return nil, fmt.Errorf("boot image %s: build-id missing (no NT_GNU_BUILD_ID note in %d note segments)", img.path, len(img.notes))
}

// RunningBuildID returns the GNU build-id of the running kernel from path,
// normally /sys/kernel/notes (the kernel's .notes section: a sequence of
// ELF notes in the machine's byte order, little-endian on x86-64).
func RunningBuildID(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kernel notes: %w", err)
	}
	id, err := findBuildID(data)
	if err != nil {
		return nil, fmt.Errorf("kernel notes %s: %w", path, err)
	}
	if id == nil {
		return nil, fmt.Errorf("kernel notes %s: build-id missing (no NT_GNU_BUILD_ID note)", path)
	}
	return id, nil
}

// findBuildID walks the ELF notes in data and returns the descriptor of
// the first GNU build-id note, nil if there is none.
func findBuildID(data []byte) ([]byte, error) {
	le := binary.LittleEndian
	for p := 0; p < len(data); {
		if len(data)-p < 12 {
			if allZero(data[p:]) {
				break
			}
			return nil, fmt.Errorf("note at offset %d: truncated header", p)
		}
		namesz, descsz, typ := uint64(le.Uint32(data[p:])), uint64(le.Uint32(data[p+4:])), le.Uint32(data[p+8:])
		name := uint64(p) + 12
		desc := name + (namesz+3)&^3
		next := desc + (descsz+3)&^3
		if next > uint64(len(data)) {
			return nil, fmt.Errorf("note at offset %d: name %d and descriptor %d bytes run past the end (%d bytes)", p, namesz, descsz, len(data))
		}
		if typ == ntGNUBuildID && namesz == 4 && string(data[name:name+4]) == "GNU\x00" {
			if descsz == 0 {
				return nil, errors.New("empty build-id note")
			}
			return append([]byte(nil), data[desc:desc+descsz]...), nil
		}
		p = int(next)
	}
	return nil, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
