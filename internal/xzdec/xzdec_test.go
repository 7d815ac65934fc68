package xzdec

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The inputs in testdata/xz were made by XZ Utils (see make.sh).
func TestXZDecompress(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"code.x86.xz", "code.bin"},           // the kernel's options
		{"mixed.x86.xz", "mixed.bin"},         // BCJ corner cases
		{"mixed.x86-start.xz", "mixed.bin"},   // BCJ start offset
		{"code.crc64.xz", "code.bin"},         // LZMA2 alone
		{"code.sha256-blocks.xz", "code.bin"}, // four blocks
		{"code.none.xz", "code.bin"},          // no check
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			src := readTestdata(t, tc.file)
			want := readTestdata(t, tc.want)
			got, err := Decompress(src, uint64(len(want)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				t.Fatalf("%d bytes, want %d; first difference at %d", len(got), len(want), i)
			}
		})
	}
}

func TestXZErrors(t *testing.T) {
	good := readTestdata(t, "code.x86.xz")
	// Block header: size byte at 12, flags at 13, filters from 14; its
	// crc32 ends the header.
	hsize := (int(good[12]) + 1) * 4
	withHeader := func(edit func(h []byte)) []byte {
		b := bytes.Clone(good)
		h := b[12 : 12+hsize-4]
		edit(h)
		binary.LittleEndian.PutUint32(b[12+hsize-4:], crc32.ChecksumIEEE(h))
		return b
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		src  []byte
		want string
	}{
		{"bad magic", flip(0), "bad magic"},
		{"stream header crc", flip(7), "stream header: crc32"},
		{"truncated", good[:len(good)-100], "footer: bad magic"},
		{"trailing data", append(bytes.Clone(good), 1, 2, 3, 4), "footer: bad magic"},
		{"footer crc", flip(len(good) - 5), "footer: crc32"},
		{"index crc", flip(len(good) - 13), "index: crc32"},
		{"block header crc", flip(14), "header crc32"},
		{"compressed data", flip(100), "xz block 0"},
		{"check", flip(len(good) - 12 - 12 - 1), "check of uncompressed data"},
		{"unsupported filter", readTestdata(t, "code.delta.xz"), "unsupported filter chain: filter 0x3"},
		{"x86 filter last", withHeader(func(h []byte) { h[1] = 0; h[2] = xzFilterX86; h[3] = 0 }), "unsupported filter chain"},
		{"reserved flags", withHeader(func(h []byte) { h[1] |= 0x10 }), "reserved header flags"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decompress(tc.src, 1<<20)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestXZUvarint(t *testing.T) {
	tests := []struct {
		in   []byte
		v    uint64
		n    int
		fail bool
	}{
		{[]byte{0x00}, 0, 1, false},
		{[]byte{0x7f, 0xff}, 0x7f, 1, false},
		{[]byte{0x80, 0x01}, 0x80, 2, false},
		{[]byte{0xff, 0xff, 0x03}, 0xffff, 3, false},
		{[]byte{0x80, 0x00}, 0, 0, true}, // not minimal
		{[]byte{0x80}, 0, 0, true},       // truncated
		{bytes.Repeat([]byte{0x80}, 10), 0, 0, true},
	}
	for _, tc := range tests {
		v, n, err := xzUvarint(tc.in)
		if (err != nil) != tc.fail || v != tc.v || n != tc.n {
			t.Errorf("xzUvarint(% x) = %d, %d, %v", tc.in, v, n, err)
		}
	}
}

func readTestdata(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
