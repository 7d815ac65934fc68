package xzdec

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/internal/fuzzguard"
)

// FuzzDecompress mutates the streams XZ Utils made (testdata): whatever
// the input, Decompress returns an error or exactly the bytes its index
// declares, within the limit, and the same bytes again.
func FuzzDecompress(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.xz")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seed streams in testdata (%v)", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint32(1<<20))
	}
	f.Fuzz(func(t *testing.T, src []byte, limit uint32) {
		fuzzguard.Watch(t, "Decompress")
		out, err := Decompress(src, uint64(limit))
		if err != nil {
			return
		}
		if uint64(len(out)) > uint64(limit) {
			t.Fatalf("%d bytes out, limit %d", len(out), limit)
		}
		if want := declaredSize(t, src); uint64(len(out)) != want {
			t.Fatalf("%d bytes out, the index declares %d", len(out), want)
		}
		again, err := Decompress(src, uint64(limit))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("a second Decompress differs: %v", err)
		}
		if len(out) > 0 {
			if _, err := Decompress(src, uint64(len(out)-1)); err == nil {
				t.Fatalf("%d bytes out with a limit of %d", len(out), len(out)-1)
			}
		}
	})
}

// declaredSize is the uncompressed size the index of a valid stream
// declares.
func declaredSize(t *testing.T, src []byte) uint64 {
	t.Helper()
	blocks, _ := splitStream(t, src)
	var n uint64
	for _, b := range blocks {
		n += b.uncompressed
	}
	return n
}

// splitStream returns the index records of a valid stream and its bytes
// before the index.
func splitStream(t testing.TB, src []byte) ([]xzBlock, []byte) {
	t.Helper()
	foot := src[len(src)-12:]
	size := (int(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
	start := len(src) - 12 - size
	blocks, err := xzParseIndex(src[start : len(src)-12])
	if err != nil {
		t.Fatal(err)
	}
	return blocks, src[:start]
}

// restream rebuilds a stream from its bytes before the index (stream
// header and blocks) and index records, with valid checksums: how a test
// makes a stream whose index lies.
func restream(head []byte, blocks []xzBlock) []byte {
	idx := []byte{0}
	idx = binary.AppendUvarint(idx, uint64(len(blocks)))
	for _, b := range blocks {
		idx = binary.AppendUvarint(idx, b.unpadded)
		idx = binary.AppendUvarint(idx, b.uncompressed)
	}
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	out := append(bytes.Clone(head), idx...)
	foot := binary.LittleEndian.AppendUint32(nil, uint32(len(idx)/4-1))
	foot = append(foot, head[6:8]...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(foot))
	out = append(out, foot...)
	return append(out, xzFooterMagic...)
}

// Streams whose index declares what their data does not hold are refused
// without a panic and without allocating what they declare.
func TestDecompressLying(t *testing.T) {
	good := readTestdata(t, "code.x86.xz")
	blocks, head := splitStream(t, good)
	if got, err := Decompress(restream(head, blocks), 1<<20); err != nil || len(got) != 16384 {
		t.Fatalf("restream of the good stream: %d bytes, %v", len(got), err)
	}
	// The block header's LZMA2 properties: the last filter's one byte.
	hsize := (int(good[12]) + 1) * 4
	hugeDict := bytes.Clone(head)
	h := hugeDict[12 : 12+hsize-4]
	props := bytes.LastIndexByte(h, xzFilterLZMA2) + 2
	h[props] = 40 // 4 GiB - 1
	binary.LittleEndian.PutUint32(hugeDict[12+hsize-4:], crc32.ChecksumIEEE(h))

	tests := []struct {
		name   string
		src    []byte
		limit  uint64
		want   string
		memory uint64 // most bytes Decompress may allocate
	}{
		{"unpadded size 0", restream(head, []xzBlock{{0, 16384}}), 1 << 20, "xz block 0: empty", 2 << 20},
		// Its 32 MiB dictionary is allocated, not the 1 GiB.
		{"declares 1 GiB", restream(head, []xzBlock{{blocks[0].unpadded, 1 << 30}}), 2 << 30,
			"lzma2 data: unexpected EOF", 40 << 20},
		{"declares 1 GiB and a 4 GiB dictionary", restream(hugeDict, []xzBlock{{blocks[0].unpadded, 1 << 30}}), 2 << 30,
			"more than the 134217728 this reader allocates", 2 << 20},
		{"declares 4 GiB of dictionary", restream(hugeDict, blocks), 1 << 20, "", 1 << 20},
		{"over the limit", good, 16383, "uncompressed size larger than 16383", 1 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			out, err := Decompress(tc.src, tc.limit)
			runtime.ReadMemStats(&after)
			switch {
			case tc.want == "" && (err != nil || len(out) != 16384):
				t.Errorf("%d bytes, %v; want the 16384 bytes", len(out), err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > tc.memory {
				t.Errorf("allocated %d bytes, want at most %d", n, tc.memory)
			}
		})
	}
}
