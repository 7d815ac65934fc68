package modfile

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/livesplice/livesplice/kallsyms"
)

// ErrNotFound is wrapped by Find's error when modules.dep lists no file
// for the module.
var ErrNotFound = errors.New("module file not found")

// File is an open module file.
type File struct {
	// Path is the file's path.
	Path string
	// Name is the module's name: its .modinfo "name", what lsmod shows.
	Name string
	f    *elf.File
	syms []elf.Symbol // without the null symbol: index i is ELF symbol i+1
}

// Open opens the module file at path.
func Open(path string) (*File, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module file %s: %w", path, err)
	}
	m := &File{Path: path, f: f}
	if err := m.load(); err != nil {
		f.Close()
		return nil, fmt.Errorf("module file %s: %w", path, err)
	}
	return m, nil
}

func (m *File) load() error {
	if m.f.Class != elf.ELFCLASS64 || m.f.Machine != elf.EM_X86_64 || m.f.Type != elf.ET_REL {
		return fmt.Errorf("not an x86-64 kernel module (%v %v %v)", m.f.Class, m.f.Machine, m.f.Type)
	}
	syms, err := m.f.Symbols()
	if err != nil {
		return fmt.Errorf("symbols: %w", err)
	}
	m.syms = syms
	info := m.f.Section(".modinfo")
	if info == nil {
		return errors.New("no .modinfo: not a kernel module")
	}
	data, err := info.Data()
	if err != nil {
		return fmt.Errorf(".modinfo: %w", err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("name=")); ok {
			m.Name = string(v)
		}
	}
	if m.Name == "" {
		return errors.New(".modinfo has no name")
	}
	return nil
}

// Close closes the file.
func (m *File) Close() error { return m.f.Close() }

// BuildID returns the module's GNU build-id, nil when it has none.
func (m *File) BuildID() ([]byte, error) {
	s := m.f.Section(".note.gnu.build-id")
	if s == nil {
		return nil, nil
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module file %s: build-id: %w", m.Path, err)
	}
	return NoteBuildID(data)
}

// NoteBuildID returns the build-id in an ELF note section's contents
// (what /sys/module/NAME/notes/.note.gnu.build-id holds too).
func NoteBuildID(note []byte) ([]byte, error) {
	for len(note) >= 12 {
		namesz := binary.LittleEndian.Uint32(note)
		descsz := binary.LittleEndian.Uint32(note[4:])
		typ := binary.LittleEndian.Uint32(note[8:])
		name := 12 + align4(uint64(namesz))
		end := name + align4(uint64(descsz))
		if end > uint64(len(note)) {
			break
		}
		if typ == ntGNUBuildID && namesz == 4 && string(note[12:16]) == "GNU\x00" {
			return note[name : name+uint64(descsz)], nil
		}
		note = note[end:]
	}
	return nil, errors.New("no GNU build-id note")
}

// ntGNUBuildID is the note type of a GNU build-id (NT_GNU_BUILD_ID).
const ntGNUBuildID = 3

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// isCore reports whether the kernel keeps symbol s in the loaded module's
// kallsyms (kernel/module/kallsyms.c is_core_symbol, with
// CONFIG_KALLSYMS_ALL): named, defined in an allocated section that is
// not laid out with the init code and data, or in the per-CPU section.
// The loader drops SHF_ALLOC from .modinfo and __versions.
func (m *File) isCore(s elf.Symbol) bool {
	if s.Name == "" || s.Section == elf.SHN_UNDEF || int(s.Section) >= len(m.f.Sections) {
		return false
	}
	sec := m.f.Sections[s.Section]
	switch {
	case sec.Name == ".data..percpu":
		return true
	case sec.Flags&elf.SHF_ALLOC == 0, sec.Name == ".modinfo", sec.Name == "__versions":
		return false
	}
	return !strings.HasPrefix(sec.Name, ".init")
}

// typeLetter is the nm-style letter kallsyms shows for s.
func (m *File) typeLetter(s elf.Symbol) byte {
	sec := m.f.Sections[s.Section]
	var c byte
	switch {
	case sec.Flags&elf.SHF_EXECINSTR != 0:
		c = 't'
	case sec.Type == elf.SHT_NOBITS:
		c = 'b'
	case sec.Flags&elf.SHF_WRITE != 0:
		c = 'd'
	default:
		c = 'r'
	}
	if b := elf.ST_BIND(s.Info); b == elf.STB_GLOBAL || b == elf.STB_WEAK {
		c -= 'a' - 'A'
	}
	return c
}

// Image is a module laid out and relocated.
type Image struct {
	// Base and End bound the laid-out sections.
	Base, End uint64
	// Symbols are the module's symbols as kallsyms will list them (Module
	// set to the module's name), at their laid-out addresses, in the
	// order of the module's symbol table.
	Symbols []kallsyms.Symbol
	// Unresolved are the undefined symbols resolve did not know; each
	// got an address of its own past End.
	Unresolved []string
	path       string
	data       []byte
}

// Resolver gives the address of a symbol the module links against, and
// whether it knows it.
type Resolver func(name string) (uint64, bool)

// Layout places the module's allocated sections one after the other from
// base (each at its alignment), applies the module's relocations the way
// the kernel's module loader does (x86-64: 64, 32, 32S, PC32, PLT32,
// PC64), resolving undefined symbols with resolve, and returns the image.
func (m *File) Layout(base uint64, resolve Resolver) (*Image, error) {
	addr := make([]uint64, len(m.f.Sections))
	end := base
	for i, s := range m.f.Sections {
		if !m.placed(s) {
			continue
		}
		if a := s.Addralign; a > 1 {
			end = (end + a - 1) &^ (a - 1)
		}
		addr[i] = end
		end += s.Size
	}
	im := &Image{Base: base, End: end, path: m.Path, data: make([]byte, end-base)}
	for i, s := range m.f.Sections {
		if !m.placed(s) || s.Type == elf.SHT_NOBITS {
			continue
		}
		data, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("module file %s: section %s: %w", m.Path, s.Name, err)
		}
		copy(im.data[addr[i]-base:], data)
	}
	values := make([]uint64, len(m.syms))
	fake := (end + 0xfff) &^ 0xfff
	for i, s := range m.syms {
		switch {
		case s.Section == elf.SHN_UNDEF:
			if v, ok := resolve(s.Name); ok {
				values[i] = v
				break
			}
			values[i] = fake
			fake += 16
			im.Unresolved = append(im.Unresolved, s.Name)
		case s.Section == elf.SHN_ABS:
			values[i] = s.Value
		case s.Section == elf.SHN_COMMON:
			return nil, fmt.Errorf("module file %s: common symbol %s (the kernel refuses it)", m.Path, s.Name)
		case int(s.Section) < len(addr):
			values[i] = addr[s.Section] + s.Value
		}
		if m.isCore(s) {
			im.Symbols = append(im.Symbols, kallsyms.Symbol{Addr: values[i], Type: m.typeLetter(s), Name: s.Name, Module: m.Name})
		}
	}
	for _, rs := range m.f.Sections {
		if rs.Type != elf.SHT_RELA || int(rs.Info) >= len(m.f.Sections) || !m.placed(m.f.Sections[rs.Info]) {
			continue
		}
		if err := im.relocate(rs, m.f.Sections[rs.Info], addr[rs.Info], values); err != nil {
			return nil, fmt.Errorf("module file %s: %s: %w", m.Path, rs.Name, err)
		}
	}
	return im, nil
}

// placed reports whether the kernel's loader copies s into the module.
func (m *File) placed(s *elf.Section) bool {
	return s.Flags&elf.SHF_ALLOC != 0 && s.Name != ".modinfo" && s.Name != "__versions" && s.Size > 0
}

// relocate applies the relocations of rs to section target, laid out at
// at.
func (im *Image) relocate(rs, target *elf.Section, at uint64, values []uint64) error {
	data, err := rs.Data()
	if err != nil {
		return err
	}
	const entSize = 24
	for off := 0; off+entSize <= len(data); off += entSize {
		rOff := binary.LittleEndian.Uint64(data[off:])
		info := binary.LittleEndian.Uint64(data[off+8:])
		addend := int64(binary.LittleEndian.Uint64(data[off+16:]))
		sym, typ := info>>32, elf.R_X86_64(info&0xffffffff)
		if typ == elf.R_X86_64_NONE {
			continue
		}
		if sym == 0 || sym > uint64(len(values)) {
			return fmt.Errorf("relocation at %#x: symbol index %d out of range", rOff, sym)
		}
		p := at + rOff
		v := values[sym-1] + uint64(addend)
		var n int
		switch typ {
		case elf.R_X86_64_64:
			n = 8
		case elf.R_X86_64_PC64:
			n, v = 8, v-p
		case elf.R_X86_64_32, elf.R_X86_64_32S:
			n = 4
		case elf.R_X86_64_PC32, elf.R_X86_64_PLT32:
			n, v = 4, v-p
		default:
			return fmt.Errorf("relocation at %#x: type %v (the kernel's loader refuses it too)", rOff, typ)
		}
		if rOff+uint64(n) > target.Size {
			return fmt.Errorf("relocation at %#x runs past %s", rOff, target.Name)
		}
		b := im.data[p-im.Base:]
		if n == 8 {
			binary.LittleEndian.PutUint64(b, v)
		} else {
			binary.LittleEndian.PutUint32(b, uint32(v))
		}
	}
	return nil
}

// Read returns n bytes of the image at addr (runpre.Memory).
func (im *Image) Read(addr uint64, n int) ([]byte, error) {
	if addr < im.Base || n < 0 || addr+uint64(n) > im.End || addr+uint64(n) < addr {
		return nil, fmt.Errorf("module file %s: %#x+%d is outside its image (%#x-%#x)", im.path, addr, n, im.Base, im.End)
	}
	return im.data[addr-im.Base : addr-im.Base+uint64(n)], nil
}

// Find returns the path of module name's file under dir (normally
// /lib/modules/RELEASE), from dir/modules.dep. A module's name is its
// file's name without .ko, with '-' written '_'. Compressed module files
// are refused.
func Find(dir, name string) (string, error) {
	dep := filepath.Join(dir, "modules.dep")
	f, err := os.Open(dep)
	if err != nil {
		return "", fmt.Errorf("module %s: %w", name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		file, _, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		base := filepath.Base(file)
		stem, _, _ := strings.Cut(base, ".ko")
		if strings.ReplaceAll(stem, "-", "_") != name {
			continue
		}
		if !strings.HasSuffix(base, ".ko") {
			return "", fmt.Errorf("module %s: %s is compressed: only plain .ko files are read", name, file)
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		return file, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("module %s: %s: %w", name, dep, err)
	}
	return "", fmt.Errorf("module %s: %s lists no file for it: %w", name, dep, ErrNotFound)
}
