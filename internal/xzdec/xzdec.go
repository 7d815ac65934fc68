package xzdec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"slices"

	"github.com/ulikunitz/xz/lzma"
)

// Magic is the start of every xz stream.
const Magic = "\xFD7zXZ\x00"

var (
	xzMagic       = []byte(Magic)
	xzFooterMagic = []byte{'Y', 'Z'}
)

// MaxDict is the largest LZMA2 dictionary Decompress allocates: the
// dictionary a block declares, or its uncompressed size if that is less.
// XZ Utils' presets use at most 64 MiB, the kernel's xz_wrap.sh 32 MiB.
const MaxDict = 128 << 20

const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

// xzBlock is one block as listed in the index.
type xzBlock struct {
	unpadded, uncompressed uint64
}

// Decompress decompresses the single xz stream in src (nothing may follow
// it) and returns the uncompressed bytes, refusing to produce more than
// limit. It supports the filters the kernel uses: LZMA2, optionally
// preceded by x86 BCJ.
//
// What it allocates follows what the data decodes to, not what the
// stream's index declares: a few bytes that declare gigabytes get an error,
// not the gigabytes.
func Decompress(src []byte, limit uint64) ([]byte, error) {
	if len(src) < 24 || !bytes.Equal(src[:6], xzMagic) {
		return nil, errors.New("not an xz stream (bad magic)")
	}
	flags := src[6:8]
	if got, want := crc32.ChecksumIEEE(flags), binary.LittleEndian.Uint32(src[8:12]); got != want {
		return nil, fmt.Errorf("xz stream header: crc32 %08x, want %08x", got, want)
	}
	if flags[0] != 0 || flags[1]&0xF0 != 0 {
		return nil, fmt.Errorf("xz stream header: unsupported flags % x", flags)
	}
	check := flags[1] & 0x0F

	foot := src[len(src)-12:]
	if !bytes.Equal(foot[10:], xzFooterMagic) {
		return nil, errors.New("xz stream footer: bad magic (truncated, or data after the stream)")
	}
	if got, want := crc32.ChecksumIEEE(foot[4:10]), binary.LittleEndian.Uint32(foot[:4]); got != want {
		return nil, fmt.Errorf("xz stream footer: crc32 %08x, want %08x", got, want)
	}
	if !bytes.Equal(foot[8:10], flags) {
		return nil, fmt.Errorf("xz stream footer: flags % x differ from header's % x", foot[8:10], flags)
	}
	indexSize := (uint64(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
	if indexSize > uint64(len(src)-24) {
		return nil, fmt.Errorf("xz index: size %d larger than the stream", indexSize)
	}
	indexStart := len(src) - 12 - int(indexSize)
	blocks, err := xzParseIndex(src[indexStart : len(src)-12])
	if err != nil {
		return nil, err
	}

	var total uint64
	for _, b := range blocks {
		total += b.uncompressed
		if total < b.uncompressed || total > limit {
			return nil, fmt.Errorf("xz index: uncompressed size larger than %d bytes", limit)
		}
	}
	// The real kernel's payload decompresses to 7.7 times its size: this
	// first guess fits it in one allocation.
	out := make([]byte, 0, min(total, 16*uint64(len(src))+1<<20))
	pos := 12
	for n, b := range blocks {
		padded := (b.unpadded + 3) &^ 3
		if padded > uint64(indexStart-pos) {
			return nil, fmt.Errorf("xz block %d: size %d runs past the index", n, b.unpadded)
		}
		blk := src[pos : pos+int(padded)]
		if out, err = xzDecodeBlock(blk, b, check, out); err != nil {
			return nil, fmt.Errorf("xz block %d: %w", n, err)
		}
		pos += int(padded)
	}
	if pos != indexStart {
		return nil, fmt.Errorf("xz stream: %d bytes between the last block and the index", indexStart-pos)
	}
	return out, nil
}

// xzUvarint reads the xz multibyte integer at the start of b and returns
// it and its length.
func xzUvarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 9; i++ {
		v |= uint64(b[i]&0x7F) << (7 * i)
		if b[i]&0x80 == 0 {
			if i > 0 && b[i] == 0 {
				return 0, 0, errors.New("non-minimal multibyte integer")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("truncated or overlong multibyte integer")
}

// xzParseIndex parses the index (indicator through its crc32).
func xzParseIndex(idx []byte) ([]xzBlock, error) {
	if len(idx) < 8 || idx[0] != 0 {
		return nil, errors.New("xz index: bad indicator")
	}
	body := idx[:len(idx)-4]
	if got, want := crc32.ChecksumIEEE(body), binary.LittleEndian.Uint32(idx[len(idx)-4:]); got != want {
		return nil, fmt.Errorf("xz index: crc32 %08x, want %08x", got, want)
	}
	p := 1
	next := func(what string) (uint64, error) {
		v, n, err := xzUvarint(body[p:])
		if err != nil {
			return 0, fmt.Errorf("xz index: %s at offset %d: %w", what, p, err)
		}
		p += n
		return v, nil
	}
	count, err := next("record count")
	if err != nil {
		return nil, err
	}
	if count == 0 || count > uint64(len(body)/2) {
		return nil, fmt.Errorf("xz index: %d records", count)
	}
	blocks := make([]xzBlock, count)
	for i := range blocks {
		if blocks[i].unpadded, err = next("unpadded size"); err != nil {
			return nil, err
		}
		if blocks[i].uncompressed, err = next("uncompressed size"); err != nil {
			return nil, err
		}
	}
	if len(body)-p > 3 {
		return nil, fmt.Errorf("xz index: %d bytes after the records", len(body)-p)
	}
	for _, c := range body[p:] {
		if c != 0 {
			return nil, errors.New("xz index: padding not zero")
		}
	}
	return blocks, nil
}

// xzCheckSize returns the size of the integrity check of the given type.
func xzCheckSize(check byte) int {
	if check == 0 {
		return 0
	}
	return 4 << ((check - 1) / 3)
}

// xzNewCheck returns the hash for the check type, nil for none.
func xzNewCheck(check byte) (hash.Hash, error) {
	switch check {
	case 0x00:
		return nil, nil
	case 0x01:
		return crc32.NewIEEE(), nil
	case 0x04:
		return crc64.New(crc64.MakeTable(crc64.ECMA)), nil
	case 0x0A:
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("unsupported check type %#x", check)
}

// xzDecodeBlock decodes one block (header through check) and appends its
// data, of the uncompressed size from the index, to dst.
func xzDecodeBlock(blk []byte, b xzBlock, check byte, dst []byte) ([]byte, error) {
	out, err := decodeBlock(blk, b, check, dst[len(dst):])
	return append(dst, out...), err
}

// decodeBlock decodes one block into out[:0], growing it as needed: out
// shares dst's array when it has room.
func decodeBlock(blk []byte, b xzBlock, check byte, out []byte) ([]byte, error) {
	if len(blk) == 0 {
		return nil, errors.New("empty (unpadded size 0)")
	}
	hsize := (int(blk[0]) + 1) * 4
	if blk[0] == 0 || hsize > len(blk) {
		return nil, fmt.Errorf("bad header size byte %#x", blk[0])
	}
	hdr := blk[:hsize-4]
	if got, want := crc32.ChecksumIEEE(hdr), binary.LittleEndian.Uint32(blk[hsize-4:hsize]); got != want {
		return nil, fmt.Errorf("header crc32 %08x, want %08x", got, want)
	}
	flags := hdr[1]
	if flags&0x3C != 0 {
		return nil, fmt.Errorf("reserved header flags %#x", flags)
	}
	p := 2
	field := func(what string) (uint64, error) {
		v, n, err := xzUvarint(hdr[p:])
		if err != nil {
			return 0, fmt.Errorf("header %s: %w", what, err)
		}
		p += n
		return v, nil
	}
	if b.unpadded < uint64(hsize+xzCheckSize(check)) {
		return nil, fmt.Errorf("unpadded size %d smaller than header and check", b.unpadded)
	}
	csize := b.unpadded - uint64(hsize) - uint64(xzCheckSize(check))
	if flags&0x40 != 0 {
		v, err := field("compressed size")
		if err != nil {
			return nil, err
		}
		if v != csize {
			return nil, fmt.Errorf("header says %d compressed bytes, index %d", v, csize)
		}
	}
	if flags&0x80 != 0 {
		v, err := field("uncompressed size")
		if err != nil {
			return nil, err
		}
		if v != b.uncompressed {
			return nil, fmt.Errorf("header says %d uncompressed bytes, index %d", v, b.uncompressed)
		}
	}
	var (
		bcj      bool
		bcjStart uint32
		dictCap  int
	)
	nfilters := int(flags&3) + 1
	for i := 0; i < nfilters; i++ {
		id, err := field("filter id")
		if err != nil {
			return nil, err
		}
		psize, err := field("filter properties size")
		if err != nil {
			return nil, err
		}
		if psize > uint64(len(hdr)-p) {
			return nil, fmt.Errorf("filter %#x: properties run past the header", id)
		}
		props := hdr[p : p+int(psize)]
		p += int(psize)
		last := i == nfilters-1
		switch {
		case id == xzFilterX86 && !last && !bcj:
			bcj = true
			switch len(props) {
			case 0:
			case 4:
				bcjStart = binary.LittleEndian.Uint32(props)
			default:
				return nil, fmt.Errorf("x86 filter: %d property bytes", len(props))
			}
		case id == xzFilterLZMA2 && last:
			if len(props) != 1 || props[0] > 40 {
				return nil, fmt.Errorf("lzma2 filter: bad properties % x", props)
			}
			dictCap = lzma2DictCap(props[0])
		default:
			return nil, fmt.Errorf("unsupported filter chain: filter %#x in position %d of %d (want [x86] lzma2)", id, i+1, nfilters)
		}
	}
	for _, c := range hdr[p:] {
		if c != 0 {
			return nil, errors.New("header padding not zero")
		}
	}

	// The dictionary need not be larger than the block's output.
	dictCap = int(min(uint64(dictCap), max(b.uncompressed, lzma.MinDictCap)))
	if dictCap > MaxDict {
		return nil, fmt.Errorf("lzma2 filter: a dictionary of %d bytes, more than the %d this reader allocates", dictCap, MaxDict)
	}
	data := blk[hsize : uint64(hsize)+csize]
	r, err := lzma.Reader2Config{DictCap: dictCap}.NewReader2(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("lzma2: %w", err)
	}
	if out, err = readFull(r, out[:0], b.uncompressed); err != nil {
		return nil, fmt.Errorf("lzma2 data: %w", err)
	}
	var extra [1]byte
	if n, err := r.Read(extra[:]); n != 0 || err != io.EOF {
		return nil, fmt.Errorf("lzma2 data: longer than the index's %d bytes", len(out))
	}
	if bcj {
		bcjX86Decode(out, bcjStart)
	}

	rest := blk[uint64(hsize)+csize:]
	pad := (4 - csize%4) % 4
	for _, c := range rest[:pad] {
		if c != 0 {
			return nil, errors.New("block padding not zero")
		}
	}
	sum := rest[pad:]
	h, err := xzNewCheck(check)
	if err != nil {
		return nil, err
	}
	if h != nil {
		h.Write(out)
		got := h.Sum(nil)
		if check == 0x01 || check == 0x04 {
			// crc32 and crc64 are stored little-endian.
			for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
				got[i], got[j] = got[j], got[i]
			}
		}
		if !bytes.Equal(got, sum) {
			return nil, fmt.Errorf("check of uncompressed data: got % x, want % x", got, sum)
		}
	}
	return out, nil
}

// readFull appends exactly n bytes from r to out, growing out as the data
// arrives (at most doubling it) rather than to n at once.
func readFull(r io.Reader, out []byte, n uint64) ([]byte, error) {
	start := len(out)
	for got := uint64(0); got < n; got = uint64(len(out) - start) {
		if len(out) == cap(out) {
			out = slices.Grow(out, int(min(n-got, max(uint64(len(out)), 64<<10))))
		}
		k, err := r.Read(out[len(out):min(cap(out), len(out)+int(n-got))])
		out = out[:len(out)+k]
		if err == io.EOF && uint64(len(out)-start) < n {
			return out, io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return out, err
		}
	}
	return out, nil
}

// lzma2DictCap decodes the LZMA2 dictionary size property byte.
func lzma2DictCap(p byte) int {
	if p == 40 {
		return lzma.MaxDictCap
	}
	c := (2 | uint64(p&1)) << (p/2 + 11)
	if c < lzma.MinDictCap {
		c = lzma.MinDictCap
	}
	if c > lzma.MaxDictCap {
		c = lzma.MaxDictCap
	}
	return int(c)
}
