package elfobj

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

const (
	ehdrSize = 64
	shdrSize = 64
	symSize  = 24
)

// outSection is one section header of the written file.
type outSection struct {
	src                *Section // nil for generated sections
	name               string
	typ                elf.SectionType
	flags              elf.SectionFlag
	link, info         uint32
	align, entsize     uint64
	data               []byte
	size               uint64
	offset, nameOffset uint64
}

// writer holds the state of one Write call.
type writer struct {
	f        *File
	out      []outSection
	index    map[*Section]int // source section -> written index
	symIndex map[*Symbol]int  // source symbol -> written index
	syms     []*Symbol
}

// Write serialises f as an ELF64 x86-64 ET_REL object to w.
func (f *File) Write(w io.Writer) error {
	wr := &writer{f: f, index: map[*Section]int{}, symIndex: map[*Symbol]int{}}
	img, err := wr.build()
	if err != nil {
		return fmt.Errorf("elfobj: writing %s: %w", f.Name, err)
	}
	if _, err := w.Write(img); err != nil {
		return fmt.Errorf("elfobj: writing %s: %w", f.Name, err)
	}
	return nil
}

func (wr *writer) build() ([]byte, error) {
	wr.out = []outSection{{}}
	for _, s := range wr.f.Sections {
		if s == nil || s.Type == elf.SHT_NULL || linksInternal(s.Type) {
			continue
		}
		if s.Type == elf.SHT_GROUP || s.Type == elf.SHT_SYMTAB_SHNDX || s.Type == elf.SHT_REL {
			return nil, fmt.Errorf("section %q: type %v not supported by the writer", s.Name, s.Type)
		}
		wr.index[s] = len(wr.out)
		wr.out = append(wr.out, wr.userSection(s))
	}
	symtabIdx := len(wr.out) + wr.relaCount()
	if err := wr.orderSymbols(); err != nil {
		return nil, err
	}
	if err := wr.addRelas(symtabIdx); err != nil {
		return nil, err
	}
	if err := wr.fixLinks(); err != nil {
		return nil, err
	}
	if err := wr.addSymtab(); err != nil {
		return nil, err
	}
	wr.addShstrtab()
	if len(wr.out) >= int(elf.SHN_LORESERVE) {
		return nil, fmt.Errorf("%d sections: extended section numbering is not supported", len(wr.out))
	}
	return wr.layout(), nil
}

func (wr *writer) userSection(s *Section) outSection {
	o := outSection{src: s, name: s.Name, typ: s.Type, flags: s.Flags, info: s.Info,
		align: s.Addralign, entsize: s.Entsize, data: s.Data, size: uint64(len(s.Data))}
	if s.Type == elf.SHT_NOBITS {
		o.data, o.size = nil, s.Size
	}
	return o
}

func (wr *writer) relaCount() int {
	n := 0
	for _, o := range wr.out {
		if o.src != nil && len(o.src.Relocs) > 0 {
			n++
		}
		if o.src != nil && len(o.src.Livepatch) > 0 {
			n++
		}
	}
	return n
}

// orderSymbols puts the null symbol first, then locals, then the rest.
func (wr *writer) orderSymbols() error {
	wr.syms = []*Symbol{{}}
	var globals []*Symbol
	for i, s := range wr.f.Symbols {
		if s == nil || (i == 0 && s.Name == "" && s.Section == nil && s.Type == elf.STT_NOTYPE && s.Shndx == 0) {
			continue
		}
		if s.Section != nil {
			if _, ok := wr.index[s.Section]; !ok {
				return fmt.Errorf("symbol %q: its section %q is not written", s.Name, s.Section.Name)
			}
		}
		if s.Bind == elf.STB_LOCAL {
			wr.syms = append(wr.syms, s)
		} else {
			globals = append(globals, s)
		}
	}
	wr.syms = append(wr.syms, globals...)
	for i, s := range wr.syms {
		if i > 0 {
			wr.symIndex[s] = i
		}
	}
	return nil
}

func (wr *writer) addRelas(symtabIdx int) error {
	n := len(wr.out)
	for i := 1; i < n; i++ {
		s := wr.out[i].src
		if s == nil || len(s.Relocs) == 0 {
			continue
		}
		data, err := wr.relaData(s, s.Relocs)
		if err != nil {
			return err
		}
		wr.out = append(wr.out, outSection{name: ".rela" + s.Name, typ: elf.SHT_RELA, flags: elf.SHF_INFO_LINK,
			link: uint32(symtabIdx), info: uint32(i), align: 8, entsize: relaEntSize, data: data, size: uint64(len(data))})
	}
	for i := 1; i < n; i++ {
		s := wr.out[i].src
		if s == nil || len(s.Livepatch) == 0 {
			continue
		}
		obj, err := livepatchObject(s)
		if err != nil {
			return err
		}
		data, err := wr.relaData(s, s.Livepatch)
		if err != nil {
			return err
		}
		wr.out = append(wr.out, outSection{name: livepatchRelaPrefix + obj + "." + s.Name, typ: elf.SHT_RELA,
			flags: elf.SHF_ALLOC | elf.SHF_INFO_LINK | SHFRelaLivepatch,
			link:  uint32(symtabIdx), info: uint32(i), align: 8, entsize: relaEntSize, data: data, size: uint64(len(data))})
	}
	return nil
}

// livepatchObject returns the object (vmlinux or a module) the livepatch
// relocations of s resolve against: one per section.
func livepatchObject(s *Section) (string, error) {
	obj := ""
	for _, r := range s.Livepatch {
		name := ""
		if r.Sym != nil {
			name = r.Sym.Name
		}
		rest, ok := strings.CutPrefix(name, livepatchSymPrefix)
		o, _, dot := strings.Cut(rest, ".")
		switch {
		case !ok || !dot || o == "":
			return "", fmt.Errorf("section %q: livepatch relocation at %#x against %q, not a %sOBJ.NAME,POS symbol", s.Name, r.Offset, name, livepatchSymPrefix)
		case obj != "" && o != obj:
			return "", fmt.Errorf("section %q: livepatch relocations against both %s and %s", s.Name, obj, o)
		}
		obj = o
	}
	return obj, nil
}

func (wr *writer) relaData(s *Section, relocs []Reloc) ([]byte, error) {
	buf := make([]byte, 0, len(relocs)*relaEntSize)
	le := binary.LittleEndian
	for _, r := range relocs {
		n := uint64(FieldSize(r.Type))
		if s.Type != elf.SHT_NOBITS && (r.Offset > s.Size || n > s.Size-r.Offset) {
			return nil, fmt.Errorf("section %q: relocation %v at %#x outside its %d bytes", s.Name, r.Type, r.Offset, s.Size)
		}
		idx := 0
		if r.Sym != nil {
			i, ok := wr.symIndex[r.Sym]
			if !ok {
				return nil, fmt.Errorf("section %q: relocation at %#x names symbol %q that is not in the symbol table", s.Name, r.Offset, r.Sym.Name)
			}
			idx = i
		}
		buf = le.AppendUint64(buf, r.Offset)
		buf = le.AppendUint64(buf, uint64(idx)<<32|uint64(uint32(r.Type)))
		buf = le.AppendUint64(buf, uint64(r.Addend))
	}
	return buf, nil
}

func (wr *writer) fixLinks() error {
	for i := range wr.out {
		s := wr.out[i].src
		if s == nil || s.Link == nil {
			continue
		}
		idx, ok := wr.index[s.Link]
		if !ok {
			return fmt.Errorf("section %q: sh_link names section %q that is not written", s.Name, s.Link.Name)
		}
		wr.out[i].link = uint32(idx)
	}
	return nil
}

func (wr *writer) addSymtab() error {
	strtab := newStrtab()
	symtabIdx := len(wr.out)
	buf := make([]byte, symSize, len(wr.syms)*symSize)
	firstGlobal := len(wr.syms)
	le := binary.LittleEndian
	for i, s := range wr.syms[1:] {
		if s.Bind != elf.STB_LOCAL && firstGlobal == len(wr.syms) {
			firstGlobal = i + 1
		}
		shndx := s.Shndx
		if s.Section != nil {
			shndx = elf.SectionIndex(wr.index[s.Section])
		}
		name := s.Name
		if s.Type == elf.STT_SECTION {
			name = "" // section symbols take their name from the section
		}
		buf = le.AppendUint32(buf, strtab.add(name))
		buf = append(buf, byte(s.Bind)<<4|byte(s.Type)&0xf, s.Other)
		buf = le.AppendUint16(buf, uint16(shndx))
		buf = le.AppendUint64(buf, s.Value)
		buf = le.AppendUint64(buf, s.Size)
	}
	wr.out = append(wr.out,
		outSection{name: ".symtab", typ: elf.SHT_SYMTAB, link: uint32(symtabIdx + 1), info: uint32(firstGlobal),
			align: 8, entsize: symSize, data: buf, size: uint64(len(buf))},
		outSection{name: ".strtab", typ: elf.SHT_STRTAB, align: 1, data: strtab.bytes(), size: uint64(len(strtab.bytes()))})
	return nil
}

func (wr *writer) addShstrtab() {
	st := newStrtab()
	for i := 1; i < len(wr.out); i++ {
		wr.out[i].nameOffset = uint64(st.add(wr.out[i].name))
	}
	off := st.add(".shstrtab")
	data := st.bytes()
	wr.out = append(wr.out, outSection{name: ".shstrtab", typ: elf.SHT_STRTAB, align: 1, data: data,
		size: uint64(len(data)), nameOffset: uint64(off)})
}

func (wr *writer) layout() []byte {
	var body bytes.Buffer
	body.Write(make([]byte, ehdrSize))
	for i := 1; i < len(wr.out); i++ {
		o := &wr.out[i]
		pad(&body, o.align)
		o.offset = uint64(body.Len())
		body.Write(o.data)
	}
	pad(&body, 8)
	shoff := uint64(body.Len())
	le := binary.LittleEndian
	for _, o := range wr.out {
		var h [shdrSize]byte
		le.PutUint32(h[0:], uint32(o.nameOffset))
		le.PutUint32(h[4:], uint32(o.typ))
		le.PutUint64(h[8:], uint64(o.flags))
		le.PutUint64(h[24:], o.offset)
		le.PutUint64(h[32:], o.size)
		le.PutUint32(h[40:], o.link)
		le.PutUint32(h[44:], o.info)
		le.PutUint64(h[48:], o.align)
		le.PutUint64(h[56:], o.entsize)
		body.Write(h[:])
	}
	img := body.Bytes()
	writeHeader(img, shoff, len(wr.out), len(wr.out)-1)
	return img
}

func writeHeader(img []byte, shoff uint64, shnum, shstrndx int) {
	copy(img, []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), byte(elf.ELFOSABI_NONE)})
	le := binary.LittleEndian
	le.PutUint16(img[16:], uint16(elf.ET_REL))
	le.PutUint16(img[18:], uint16(elf.EM_X86_64))
	le.PutUint32(img[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(img[40:], shoff)
	le.PutUint16(img[52:], ehdrSize)
	le.PutUint16(img[58:], shdrSize)
	le.PutUint16(img[60:], uint16(shnum))
	le.PutUint16(img[62:], uint16(shstrndx))
}

func pad(b *bytes.Buffer, align uint64) {
	if align < 2 {
		return
	}
	for uint64(b.Len())%align != 0 {
		b.WriteByte(0)
	}
}

// strtab builds an ELF string table, sharing identical strings.
type strtab struct {
	buf  []byte
	seen map[string]uint32
}

func newStrtab() *strtab { return &strtab{buf: []byte{0}, seen: map[string]uint32{"": 0}} }

func (t *strtab) add(s string) uint32 {
	if off, ok := t.seen[s]; ok {
		return off
	}
	off := uint32(len(t.buf))
	t.buf = append(append(t.buf, s...), 0)
	t.seen[s] = off
	return off
}

func (t *strtab) bytes() []byte { return t.buf }
