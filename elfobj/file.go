package elfobj

import "debug/elf"

// File is an x86-64 ELF relocatable object.
type File struct {
	// Name names the input (a path) in error messages.
	Name string
	// Sections in section-header order; Sections[0] is the null section when
	// the File was read.
	Sections []*Section
	// Symbols in symbol-table order; Symbols[0] is the null symbol when the
	// File was read.
	Symbols []*Symbol
}

// Section is one section of an object.
type Section struct {
	Index     int // index in the section header table of the file read; 0 for new sections
	Name      string
	Type      elf.SectionType
	Flags     elf.SectionFlag
	Addralign uint64
	Entsize   uint64
	Size      uint64 // for SHT_NOBITS the only content; otherwise len(Data)
	Data      []byte // nil for SHT_NOBITS
	// Link is the section sh_link names, for sections other than
	// relocation and symbol tables (whose links the writer computes).
	Link *Section
	// Info is the raw sh_info of sections other than relocation and symbol
	// tables.
	Info uint32
	// Relocs are the RELA relocations that apply to this section, in file
	// order.
	Relocs []Reloc
	// Livepatch are relocations the kernel's livepatch code applies when
	// the module loads, against symbols named .klp.sym.OBJ.NAME,POS with
	// section index SHN_LIVEPATCH; they live in a section named
	// .klp.rela.OBJ.NAME flagged SHF_RELA_LIVEPATCH.
	Livepatch []Reloc
}

// Livepatch ELF constants (include/uapi/linux/elf.h).
const (
	SHNLivepatch        elf.SectionIndex = 0xff20
	SHFRelaLivepatch    elf.SectionFlag  = 0x00100000
	livepatchRelaPrefix                  = ".klp.rela."
	livepatchSymPrefix                   = ".klp.sym."
)

// Symbol is one symbol-table entry.
type Symbol struct {
	Index int // index in the symbol table of the file read
	Name  string
	Bind  elf.SymBind
	Type  elf.SymType
	Other uint8
	// Section is the section the symbol is defined in, nil when Shndx is
	// SHN_UNDEF, SHN_ABS or SHN_COMMON.
	Section *Section
	// Shndx is the raw section index; the writer uses it only when Section
	// is nil.
	Shndx elf.SectionIndex
	Value uint64
	Size  uint64
}

// Reloc is one RELA relocation applied to a section.
type Reloc struct {
	Offset uint64 // within the section the relocation applies to
	Type   elf.R_X86_64
	Sym    *Symbol // nil for symbol index 0
	Addend int64
}

// Defined reports whether s is defined in a section of the object.
func (s *Symbol) Defined() bool { return s != nil && s.Section != nil }

// IsSection reports whether s is an STT_SECTION symbol.
func (s *Symbol) IsSection() bool { return s != nil && s.Type == elf.STT_SECTION }

// Executable reports whether sec holds code (SHF_EXECINSTR).
func (sec *Section) Executable() bool { return sec.Flags&elf.SHF_EXECINSTR != 0 }

// Alloc reports whether sec is part of the loaded image (SHF_ALLOC).
func (sec *Section) Alloc() bool { return sec.Flags&elf.SHF_ALLOC != 0 }

// Bytes returns n bytes of sec at off, or false when they are not all
// inside the section data.
func (sec *Section) Bytes(off, n uint64) ([]byte, bool) {
	size := uint64(len(sec.Data))
	if off > size || n > size-off {
		return nil, false
	}
	return sec.Data[off : off+n], true
}

// RelocsIn returns the relocations of sec whose offset is in [start, end).
func (sec *Section) RelocsIn(start, end uint64) []Reloc {
	var out []Reloc
	for _, r := range sec.Relocs {
		if r.Offset >= start && r.Offset < end {
			out = append(out, r)
		}
	}
	return out
}

// Section returns the first section called name, or nil.
func (f *File) Section(name string) *Section {
	for _, s := range f.Sections {
		if s != nil && s.Name == name {
			return s
		}
	}
	return nil
}

// SectionSymbol returns the STT_SECTION symbol of sec, or nil.
func (f *File) SectionSymbol(sec *Section) *Symbol {
	for _, s := range f.Symbols {
		if s != nil && s.IsSection() && s.Section == sec {
			return s
		}
	}
	return nil
}

// Covering returns the named, non-section symbol of sec whose extent covers
// off: Value <= off < Value+Size, or Value == off for a sized-zero symbol.
// Among several it prefers sized symbols, then STT_FUNC/STT_OBJECT, then the
// lowest index.
func (f *File) Covering(sec *Section, off uint64) *Symbol {
	var best *Symbol
	for _, s := range f.Symbols {
		if !coveringCandidate(s, sec, off) {
			continue
		}
		if best == nil || betterCover(s, best) {
			best = s
		}
	}
	return best
}

func coveringCandidate(s *Symbol, sec *Section, off uint64) bool {
	if s == nil || s.Section != sec || s.Name == "" || s.IsSection() || s.Type == elf.STT_FILE {
		return false
	}
	if s.Size == 0 {
		return s.Value == off
	}
	return s.Value <= off && off-s.Value < s.Size
}

func betterCover(a, b *Symbol) bool {
	if (a.Size > 0) != (b.Size > 0) {
		return a.Size > 0
	}
	typed := func(s *Symbol) bool { return s.Type == elf.STT_FUNC || s.Type == elf.STT_OBJECT }
	if typed(a) != typed(b) {
		return typed(a)
	}
	return false
}

// FieldSize is the number of bytes a relocation of type t writes, or 0 for
// types this package does not know.
func FieldSize(t elf.R_X86_64) int {
	switch t {
	case elf.R_X86_64_64, elf.R_X86_64_PC64, elf.R_X86_64_GOTOFF64, elf.R_X86_64_GOTPC64,
		elf.R_X86_64_GOT64, elf.R_X86_64_GOTPCREL64, elf.R_X86_64_GOTPLT64, elf.R_X86_64_PLTOFF64,
		elf.R_X86_64_SIZE64, elf.R_X86_64_DTPOFF64, elf.R_X86_64_TPOFF64, elf.R_X86_64_DTPMOD64:
		return 8
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_32, elf.R_X86_64_32S,
		elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX,
		elf.R_X86_64_GOT32, elf.R_X86_64_GOTPC32, elf.R_X86_64_SIZE32, elf.R_X86_64_TPOFF32,
		elf.R_X86_64_DTPOFF32, elf.R_X86_64_GOTTPOFF, elf.R_X86_64_TLSGD, elf.R_X86_64_TLSLD:
		return 4
	case elf.R_X86_64_16, elf.R_X86_64_PC16:
		return 2
	case elf.R_X86_64_8, elf.R_X86_64_PC8:
		return 1
	}
	return 0
}

// IsPCRelative reports whether t computes S+A-P.
func IsPCRelative(t elf.R_X86_64) bool {
	switch t {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_PC64, elf.R_X86_64_PC16, elf.R_X86_64_PC8,
		elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX:
		return true
	}
	return false
}

// Clone returns a copy of f whose sections, symbols and relocations are
// its own: renaming a symbol or editing relocations of the copy leaves f
// as it was. Section contents (Data) are shared: treat them as read-only.
func (f *File) Clone() *File {
	secs := make(map[*Section]*Section, len(f.Sections))
	syms := make(map[*Symbol]*Symbol, len(f.Symbols))
	c := &File{Name: f.Name, Sections: make([]*Section, len(f.Sections)), Symbols: make([]*Symbol, len(f.Symbols))}
	for i, s := range f.Sections {
		if s == nil {
			continue
		}
		n := *s
		c.Sections[i], secs[s] = &n, &n
	}
	for i, s := range f.Symbols {
		if s == nil {
			continue
		}
		n := *s
		c.Symbols[i], syms[s] = &n, &n
	}
	for _, s := range c.Symbols {
		if s != nil && s.Section != nil {
			s.Section = secs[s.Section]
		}
	}
	for _, s := range c.Sections {
		if s == nil {
			continue
		}
		if s.Link != nil {
			s.Link = secs[s.Link]
		}
		s.Relocs = cloneRelocs(s.Relocs, syms)
		s.Livepatch = cloneRelocs(s.Livepatch, syms)
	}
	return c
}

func cloneRelocs(rs []Reloc, syms map[*Symbol]*Symbol) []Reloc {
	if rs == nil {
		return nil
	}
	out := make([]Reloc, len(rs))
	for i, r := range rs {
		if r.Sym != nil {
			r.Sym = syms[r.Sym]
		}
		out[i] = r
	}
	return out
}
