package elfobj

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

const relaEntSize = 24

// Open reads the relocatable object at path.
func Open(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("elfobj: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a relocatable object held in data; name is used in errors.
// The File's section contents are slices of data, not copies: data must
// not change while the File is in use (Section.Data is read-only, and
// appending to it copies).
func Parse(name string, data []byte) (*File, error) {
	return read(name, bytes.NewReader(data), data)
}

// Read reads a relocatable object from r; name is used in errors.
func Read(name string, r io.ReaderAt) (*File, error) {
	return read(name, r, nil)
}

// read reads an object from r; raw, when not nil, is r's whole content,
// which section contents then share.
func read(name string, r io.ReaderAt, raw []byte) (f *File, err error) {
	// debug/elf is fuzzed but has panicked on hostile input before; an
	// object we cannot parse must be an error, not a crash of the builder.
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("elfobj: %s: malformed ELF: %v", name, p)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("elfobj: %s: not a readable ELF file: %w", name, err)
	}
	defer ef.Close()
	if err := checkHeader(ef); err != nil {
		return nil, fmt.Errorf("elfobj: %s: %w", name, err)
	}
	f = &File{Name: name}
	if err := f.readSections(ef, raw); err != nil {
		return nil, fmt.Errorf("elfobj: %s: %w", name, err)
	}
	if err := f.readSymbols(ef); err != nil {
		return nil, fmt.Errorf("elfobj: %s: %w", name, err)
	}
	if err := f.readRelocs(ef); err != nil {
		return nil, fmt.Errorf("elfobj: %s: %w", name, err)
	}
	return f, nil
}

func checkHeader(ef *elf.File) error {
	switch {
	case ef.Class != elf.ELFCLASS64:
		return fmt.Errorf("class %v, want ELFCLASS64", ef.Class)
	case ef.Data != elf.ELFDATA2LSB:
		return fmt.Errorf("byte order %v, want little-endian", ef.Data)
	case ef.Machine != elf.EM_X86_64:
		return fmt.Errorf("machine %v, want EM_X86_64", ef.Machine)
	case ef.Type != elf.ET_REL:
		return fmt.Errorf("type %v, want ET_REL (a relocatable .o)", ef.Type)
	}
	return nil
}

func (f *File) readSections(ef *elf.File, raw []byte) error {
	f.Sections = make([]*Section, len(ef.Sections))
	all := make([]Section, len(ef.Sections)) // one allocation for all
	for i, es := range ef.Sections {
		s := &all[i]
		*s = Section{
			Index: i, Name: es.Name, Type: es.Type, Flags: es.Flags,
			Addralign: es.Addralign, Entsize: es.Entsize, Size: es.Size, Info: es.Info,
		}
		if es.Type == elf.SHT_REL {
			return fmt.Errorf("section %d %q: SHT_REL relocations are not supported on x86-64", i, es.Name)
		}
		if es.Type == elf.SHT_GROUP || es.Type == elf.SHT_SYMTAB_SHNDX {
			return fmt.Errorf("section %d %q: %v sections are not supported", i, es.Name, es.Type)
		}
		if es.Type != elf.SHT_NOBITS && es.Type != elf.SHT_NULL {
			data, err := sectionData(es, raw)
			if err != nil {
				return fmt.Errorf("section %d %q: reading %d bytes: %w", i, es.Name, es.Size, err)
			}
			s.Data = data
			s.Size = uint64(len(data))
		}
		f.Sections[i] = s
	}
	for i, es := range ef.Sections {
		if linksInternal(es.Type) || es.Link == 0 {
			continue
		}
		if int(es.Link) >= len(f.Sections) {
			return fmt.Errorf("section %d %q: sh_link %d out of range (%d sections)", i, es.Name, es.Link, len(f.Sections))
		}
		f.Sections[i].Link = f.Sections[es.Link]
	}
	return nil
}

// sectionData returns the contents of es: a slice of raw (capacity
// limited to the section, so that appending copies) when raw holds the
// whole file and es is stored uncompressed, else read through debug/elf.
func sectionData(es *elf.Section, raw []byte) ([]byte, error) {
	if raw == nil || es.Flags&elf.SHF_COMPRESSED != 0 {
		return es.Data()
	}
	size := uint64(len(raw))
	if es.Offset > size || es.FileSize > size-es.Offset {
		return nil, fmt.Errorf("offset %#x + %d bytes is outside the file (%d bytes)", es.Offset, es.FileSize, size)
	}
	end := es.Offset + es.FileSize
	return raw[es.Offset:end:end], nil
}

// linksInternal reports section types whose sh_link/sh_info the writer
// regenerates.
func linksInternal(t elf.SectionType) bool {
	return t == elf.SHT_RELA || t == elf.SHT_SYMTAB || t == elf.SHT_DYNSYM || t == elf.SHT_STRTAB
}

func (f *File) readSymbols(ef *elf.File) error {
	syms, err := ef.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		f.Symbols = []*Symbol{{}}
		return nil
	}
	if err != nil {
		return fmt.Errorf("symbol table: %w", err)
	}
	all := make([]Symbol, len(syms)+1) // one allocation for all
	f.Symbols = make([]*Symbol, len(syms)+1)
	f.Symbols[0] = &all[0]
	for i, es := range syms {
		if err := f.symbol(&all[i+1], i+1, es); err != nil {
			return err
		}
		f.Symbols[i+1] = &all[i+1]
	}
	return nil
}

func (f *File) symbol(s *Symbol, idx int, es elf.Symbol) error {
	*s = Symbol{
		Index: idx, Name: es.Name, Bind: elf.ST_BIND(es.Info), Type: elf.ST_TYPE(es.Info),
		Other: es.Other, Shndx: es.Section, Value: es.Value, Size: es.Size,
	}
	switch {
	case es.Section == elf.SHN_UNDEF || es.Section == elf.SHN_ABS || es.Section == elf.SHN_COMMON || es.Section == SHNLivepatch:
	case es.Section == elf.SHN_XINDEX:
		return fmt.Errorf("symbol %d %q: extended section indices (SHN_XINDEX) are not supported", idx, es.Name)
	case es.Section >= elf.SHN_LORESERVE:
		return fmt.Errorf("symbol %d %q: reserved section index %#x not supported", idx, es.Name, uint16(es.Section))
	case int(es.Section) >= len(f.Sections):
		return fmt.Errorf("symbol %d %q: section index %d out of range (%d sections)", idx, es.Name, es.Section, len(f.Sections))
	default:
		s.Section = f.Sections[es.Section]
		if s.Type == elf.STT_SECTION && s.Name == "" {
			s.Name = s.Section.Name
		}
	}
	return nil
}

func (f *File) readRelocs(ef *elf.File) error {
	n := 0
	for i, es := range ef.Sections {
		if es.Type == elf.SHT_RELA {
			n += len(f.Sections[i].Data) / relaEntSize
		}
	}
	all := make([]Reloc, 0, n) // one allocation for all sections' relocations
	for i, es := range ef.Sections {
		if es.Type != elf.SHT_RELA {
			continue
		}
		var err error
		if all, err = f.readRela(i, es, all); err != nil {
			return fmt.Errorf("relocation section %d %q: %w", i, es.Name, err)
		}
	}
	return nil
}

// readRela reads relocation section idx into the section it applies to,
// its relocations appended to all (whose capacity holds them), and
// returns all.
func (f *File) readRela(idx int, es *elf.Section, all []Reloc) ([]Reloc, error) {
	if es.Info == 0 || int(es.Info) >= len(f.Sections) || int(es.Info) == idx {
		return all, fmt.Errorf("sh_info %d does not name a section (%d sections)", es.Info, len(f.Sections))
	}
	target := f.Sections[es.Info]
	data := f.Sections[idx].Data
	if len(data)%relaEntSize != 0 {
		return all, fmt.Errorf("size %d is not a multiple of %d", len(data), relaEntSize)
	}
	start := len(all)
	for off := 0; off < len(data); off += relaEntSize {
		r, err := f.rela(data[off:off+relaEntSize], target)
		if err != nil {
			return all, fmt.Errorf("entry %d: %w", off/relaEntSize, err)
		}
		all = append(all, r)
	}
	relocs := all[start:len(all):len(all)] // appending to them copies
	dst := &target.Relocs
	if strings.HasPrefix(es.Name, livepatchRelaPrefix) {
		dst = &target.Livepatch
	}
	switch {
	case len(relocs) == 0:
	case *dst == nil:
		*dst = relocs
	default:
		*dst = append(*dst, relocs...)
	}
	return all, nil
}

func (f *File) rela(b []byte, target *Section) (Reloc, error) {
	le := binary.LittleEndian
	off, info, addend := le.Uint64(b), le.Uint64(b[8:]), int64(le.Uint64(b[16:]))
	r := Reloc{Offset: off, Type: elf.R_X86_64(uint32(info)), Addend: addend}
	symIdx := info >> 32
	if symIdx >= uint64(len(f.Symbols)) {
		return r, fmt.Errorf("symbol index %d out of range (%d symbols)", symIdx, len(f.Symbols))
	}
	if symIdx != 0 {
		r.Sym = f.Symbols[symIdx]
	}
	n := uint64(FieldSize(r.Type))
	if r.Type != elf.R_X86_64_NONE && n == 0 {
		return r, fmt.Errorf("unsupported relocation type %v at %#x in %s", r.Type, off, target.Name)
	}
	if target.Type != elf.SHT_NOBITS && (off > target.Size || n > target.Size-off) {
		return r, fmt.Errorf("%v at %#x is outside %s (%d bytes)", r.Type, off, target.Name, target.Size)
	}
	return r, nil
}
