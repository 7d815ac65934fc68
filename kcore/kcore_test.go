package kcore

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeCore writes a minimal ELF64 core file with one PT_LOAD segment
// mapping vaddr to data, the shape of /proc/kcore.
func writeCore(t *testing.T, vaddr uint64, data []byte) string {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	ident := [16]byte{0x7f, 'E', 'L', 'F', 2, 1, 1}
	b.Write(ident[:])
	binary.Write(&b, le, uint16(4))  // ET_CORE
	binary.Write(&b, le, uint16(62)) // EM_X86_64
	binary.Write(&b, le, uint32(1))
	binary.Write(&b, le, uint64(0))  // entry
	binary.Write(&b, le, uint64(64)) // phoff
	binary.Write(&b, le, uint64(0))  // shoff
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, uint16(64)) // ehsize
	binary.Write(&b, le, uint16(56)) // phentsize
	binary.Write(&b, le, uint16(1))  // phnum
	binary.Write(&b, le, uint16(64)) // shentsize
	binary.Write(&b, le, uint16(0))
	binary.Write(&b, le, uint16(0))
	off := uint64(64 + 56)
	binary.Write(&b, le, uint32(1)) // PT_LOAD
	binary.Write(&b, le, uint32(7))
	binary.Write(&b, le, off)
	binary.Write(&b, le, vaddr)
	binary.Write(&b, le, uint64(0))
	binary.Write(&b, le, uint64(len(data)))
	binary.Write(&b, le, uint64(len(data)))
	binary.Write(&b, le, uint64(4096))
	b.Write(data)
	path := filepath.Join(t.TempDir(), "kcore")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRead(t *testing.T) {
	text := []byte{0x0f, 0x1f, 0x44, 0x00, 0x00, 0x53, 0x48, 0x8b, 0x35, 0x10}
	m, err := Open(writeCore(t, 0xffffffff81000000, text))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tests := []struct {
		addr uint64
		n    int
		want []byte
		err  string
	}{
		{addr: 0xffffffff81000000, n: 5, want: text[:5]},
		{addr: 0xffffffff81000005, n: 5, want: text[5:]},
		{addr: 0xffffffff81000006, n: 5, err: "not in any segment"},
		{addr: 0xffffffff80000000, n: 1, err: "not in any segment"},
	}
	for _, tt := range tests {
		got, err := m.Read(tt.addr, tt.n)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Read(%#x, %d) = %v, want error %q", tt.addr, tt.n, err, tt.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("Read(%#x, %d) = % x, %v; want % x", tt.addr, tt.n, got, err, tt.want)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
}
