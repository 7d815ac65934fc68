package bootimage

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/livesplice/livesplice/internal/xzdec"
)

// Offsets in the x86 boot protocol's setup header
// (Documentation/x86/boot.rst), from the start of the file.
const (
	hdrSetupSects    = 0x1F1
	hdrBootFlag      = 0x1FE
	hdrMagic         = 0x202
	hdrVersion       = 0x206
	hdrPayloadOffset = 0x248 // from the start of the protected-mode code
	hdrPayloadLength = 0x24C
	hdrEnd           = 0x250
)

// maxVmlinux bounds the decompressed payload: the kernel's code and data
// lie in the kernel image mapping, KERNEL_IMAGE_SIZE (1 GiB with KASLR).
const maxVmlinux = 1 << 30

// Image is a kernel boot image, decompressed, whose code can be read at
// the addresses of a running kernel once it has been relocated.
//
// An Image is not safe for concurrent use while Relocate runs.
type Image struct {
	path string
	// vmlinux is the decompressed ELF file (vmlinux.bin). Relocate patches
	// it in place.
	vmlinux []byte
	loads   []segment // PT_LOAD segments, ordered by physical address
	notes   []segment // PT_NOTE segments
	// kmap is the distance from physical to virtual link addresses in the
	// kernel mapping (__START_KERNEL_map), and linkText is the link
	// address of _text (the first byte of the lowest segment).
	kmap, linkText uint64
	// align is the alignment of the kernel's load address (the lowest
	// segment's p_align, CONFIG_PHYSICAL_ALIGN).
	align uint64
	// Offsets in vmlinux of the fields the relocation table names.
	rel64, relInv32, rel32 []uint32
	// delta is the relocation applied so far: running _text - linkText.
	delta uint64
}

// segment is a loadable part of the ELF file.
type segment struct {
	paddr, off, filesz uint64
}

// Open reads and decompresses the bzImage at path (normally
// /boot/vmlinuz-$(uname -r)). The result is at the link addresses until
// Relocate is called.
func Open(path string) (*Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("boot image: %w", err)
	}
	return parse(path, data)
}

// parse decodes a bzImage read from path.
func parse(path string, data []byte) (*Image, error) {
	payload, err := bzPayload(data)
	if err != nil {
		return nil, fmt.Errorf("boot image %s: %w", path, err)
	}
	if len(payload) < 4+len(xzdec.Magic) || string(payload[:len(xzdec.Magic)]) != xzdec.Magic {
		return nil, fmt.Errorf("boot image %s: payload is not xz (starts % x; only CONFIG_KERNEL_XZ is supported)", path, payload[:min(len(payload), 6)])
	}
	// The payload is the xz stream followed by the uncompressed size as a
	// little-endian u32 (scripts/Makefile.lib, size_append).
	size := binary.LittleEndian.Uint32(payload[len(payload)-4:])
	if size > maxVmlinux {
		return nil, fmt.Errorf("boot image %s: payload decompresses to %d bytes by its trailer, more than the kernel image mapping's %d", path, size, maxVmlinux)
	}
	all, err := xzdec.Decompress(payload[:len(payload)-4], uint64(size))
	if err != nil {
		return nil, fmt.Errorf("boot image %s: payload (%d bytes by its trailer): %w", path, size, err)
	}
	if uint64(len(all)) != uint64(size) {
		return nil, fmt.Errorf("boot image %s: payload decompresses to %d bytes, its trailer says %d", path, len(all), size)
	}
	img, err := newImage(path, all)
	if err != nil {
		return nil, fmt.Errorf("boot image %s: %w", path, err)
	}
	return img, nil
}

// bzPayload returns the compressed payload of a bzImage.
func bzPayload(data []byte) ([]byte, error) {
	if len(data) < hdrEnd {
		return nil, fmt.Errorf("not a bzImage: %d bytes, shorter than the setup header", len(data))
	}
	if flag := binary.LittleEndian.Uint16(data[hdrBootFlag:]); flag != 0xAA55 {
		return nil, fmt.Errorf("not a bzImage: boot flag %#04x, want 0xaa55", flag)
	}
	if m := data[hdrMagic : hdrMagic+4]; string(m) != "HdrS" {
		return nil, fmt.Errorf("not a bzImage: header magic %q, want \"HdrS\"", m)
	}
	if v := binary.LittleEndian.Uint16(data[hdrVersion:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %d.%02d has no payload fields (need 2.08)", v>>8, v&0xFF)
	}
	sects := uint64(data[hdrSetupSects])
	if sects == 0 {
		sects = 4
	}
	pm := (sects + 1) * 512
	off := pm + uint64(binary.LittleEndian.Uint32(data[hdrPayloadOffset:]))
	n := uint64(binary.LittleEndian.Uint32(data[hdrPayloadLength:]))
	if off+n > uint64(len(data)) {
		return nil, fmt.Errorf("payload %d bytes at %#x runs past the end of the file (%d bytes; truncated?)", n, off, len(data))
	}
	return data[off : off+n], nil
}

// newImage parses the decompressed payload: the ELF vmlinux.bin followed by
// the relocation table (vmlinux.relocs).
func newImage(path string, all []byte) (*Image, error) {
	ef, err := elf.NewFile(bytes.NewReader(all))
	if err != nil {
		return nil, fmt.Errorf("decompressed payload: %w", err)
	}
	if ef.Class != elf.ELFCLASS64 || ef.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("decompressed payload: %v %v ELF, want x86-64", ef.Class, ef.Machine)
	}
	img := &Image{path: path}
	end := uint64(0)
	for _, p := range ef.Progs {
		if p.Off+p.Filesz > uint64(len(all)) || p.Off+p.Filesz < p.Off {
			return nil, fmt.Errorf("decompressed payload: segment at %#x+%#x runs past the end", p.Off, p.Filesz)
		}
		end = max(end, p.Off+p.Filesz)
		s := segment{paddr: p.Paddr, off: p.Off, filesz: p.Filesz}
		switch p.Type {
		case elf.PT_LOAD:
			img.loads = append(img.loads, s)
		case elf.PT_NOTE:
			img.notes = append(img.notes, s)
		}
	}
	if len(img.loads) == 0 {
		return nil, errors.New("decompressed payload: no PT_LOAD segments")
	}
	sort.Slice(img.loads, func(i, j int) bool { return img.loads[i].paddr < img.loads[j].paddr })
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Paddr == img.loads[0].paddr {
			img.kmap = p.Vaddr - p.Paddr
			img.linkText = p.Vaddr
			img.align = max(p.Align, 1)
		}
	}
	for _, s := range ef.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, s.Offset+s.FileSize)
		}
	}
	if len(ef.Sections) > 0 {
		// The section header table, last in the file after objcopy -S.
		// debug/elf does not keep e_shoff; these are its ELF64 offsets.
		shoff := ef.ByteOrder.Uint64(all[0x28:])
		shentsize := ef.ByteOrder.Uint16(all[0x3A:])
		end = max(end, shoff+uint64(shentsize)*uint64(len(ef.Sections)))
	}
	if end > uint64(len(all)) {
		return nil, fmt.Errorf("decompressed payload: ELF needs %d bytes, have %d", end, len(all))
	}
	tableStart, err := img.parseRelocs(all, end)
	if err != nil {
		return nil, fmt.Errorf("relocation table: %w", err)
	}
	img.vmlinux = all[:tableStart]
	return img, nil
}

// parseRelocs reads the relocation table at the end of all, the way
// handle_relocations() in arch/x86/boot/compressed/misc.c does: from the
// last word backwards, the 32-bit relocations up to a zero, then the
// inverse 32-bit relocations up to a zero, then the 64-bit relocations up
// to a zero. (arch/x86/tools/relocs.c writes them in the opposite order:
// 0, 64-bit..., 0, inverse..., 0, 32-bit....) Each entry is the link
// address of the field, as 32 bits to be sign-extended. It resolves every
// entry to a file offset now, so that Relocate cannot fail half-way, and
// returns where the table starts. elfEnd is where the ELF file ends.
func (img *Image) parseRelocs(all []byte, elfEnd uint64) (int, error) {
	if len(all)%4 != 0 {
		// The kernel reads it as an int array from the end; the ELF part
		// is a whole number of words too, or the table is not there.
		return 0, fmt.Errorf("payload size %d is not a multiple of 4", len(all))
	}
	pos := len(all)
	lists := []struct {
		name  string
		width uint64
		dst   *[]uint32
	}{
		{"32-bit", 4, &img.rel32},
		{"inverse 32-bit", 4, &img.relInv32},
		{"64-bit", 8, &img.rel64},
	}
	for _, l := range lists {
		for {
			pos -= 4
			if pos < int(elfEnd) {
				return 0, fmt.Errorf("%s list runs into the ELF file (no zero terminator after offset %#x)", l.name, elfEnd)
			}
			v := int32(binary.LittleEndian.Uint32(all[pos:]))
			if v == 0 {
				break
			}
			off, err := img.fileOffset(uint64(int64(v)), l.width)
			if err != nil {
				return 0, fmt.Errorf("%s relocation at %#x: %w", l.name, uint64(int64(v)), err)
			}
			*l.dst = append(*l.dst, off)
		}
	}
	return pos, nil
}

// fileOffset returns the offset in the ELF file of the width bytes at link
// address vaddr in the kernel mapping.
func (img *Image) fileOffset(vaddr, width uint64) (uint32, error) {
	paddr := vaddr - img.kmap
	for _, s := range img.loads {
		if paddr >= s.paddr && paddr-s.paddr <= s.filesz && s.filesz-(paddr-s.paddr) >= width {
			off := s.off + paddr - s.paddr
			if off > 1<<32-1-width {
				return 0, errors.New("offset does not fit in 32 bits")
			}
			return uint32(off), nil
		}
	}
	return 0, errors.New("not in any loaded segment")
}

// LinkAddr returns the link-time address of _text, taken from the ELF's
// lowest PT_LOAD segment (0xffffffff81000000 on x86-64).
func (img *Image) LinkAddr() uint64 { return img.linkText }

// Relocate makes the image's code what it is in a kernel whose _text is at
// textAddr (from /proc/kallsyms): it applies the relocation table for the
// KASLR offset textAddr - LinkAddr() as the decompressor's
// handle_relocations() does for the virtual offset on x86-64 (the
// physical load address changes no bytes of the kernel on x86-64), and
// addresses given to Read are running addresses from then on. It can be
// called again with another address.
func (img *Image) Relocate(textAddr uint64) error {
	align := img.align
	if textAddr < img.linkText {
		return fmt.Errorf("boot image %s: _text %#x below the link address %#x", img.path, textAddr, img.linkText)
	}
	delta := textAddr - img.linkText
	if delta%align != 0 {
		return fmt.Errorf("boot image %s: _text %#x is not a KASLR address (offset %#x from %#x is not %#x-aligned)", img.path, textAddr, delta, img.linkText, align)
	}
	// The kernel image mapping is KERNEL_IMAGE_SIZE (1 GiB with KASLR)
	// from __START_KERNEL_map; the decompressor keeps the image inside it.
	last := img.loads[len(img.loads)-1]
	linkEnd := img.kmap + last.paddr + last.filesz
	if limit := img.kmap + 1<<30; linkEnd > limit || delta > limit-linkEnd {
		return fmt.Errorf("boot image %s: _text %#x puts the image's end past the kernel image mapping (%#x)", img.path, textAddr, limit)
	}
	d := delta - img.delta
	le := binary.LittleEndian
	for _, off := range img.rel32 {
		le.PutUint32(img.vmlinux[off:], le.Uint32(img.vmlinux[off:])+uint32(d))
	}
	for _, off := range img.relInv32 {
		le.PutUint32(img.vmlinux[off:], le.Uint32(img.vmlinux[off:])-uint32(d))
	}
	for _, off := range img.rel64 {
		le.PutUint64(img.vmlinux[off:], le.Uint64(img.vmlinux[off:])+d)
	}
	img.delta = delta
	return nil
}

// Read returns n bytes of the image at running virtual address addr (at
// link addresses before Relocate). Only bytes stored in the image can be
// read: code, read-only and initialised data, not .bss.
func (img *Image) Read(addr uint64, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("boot image %s: reading %d bytes at %#x", img.path, n, addr)
	}
	for _, s := range img.loads {
		start := s.paddr + img.kmap + img.delta
		if addr >= start && addr-start <= s.filesz && s.filesz-(addr-start) >= uint64(n) {
			off := s.off + addr - start
			return bytes.Clone(img.vmlinux[off : off+uint64(n)]), nil
		}
	}
	return nil, fmt.Errorf("boot image %s: %#x+%d is outside the image (_text at %#x)", img.path, addr, n, img.linkText+img.delta)
}
