package kcore

import (
	"debug/elf"
	"fmt"
	"os"
)

// Mem is an open /proc/kcore (or a file in its format).
type Mem struct {
	path  string
	f     *os.File
	loads []elf.ProgHeader
}

// Open opens the kernel memory image at path, normally /proc/kcore.
func Open(path string) (*Mem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel memory: %w (lockdown=confidentiality forbids /proc/kcore)", err)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kernel memory %s: %w", path, err)
	}
	m := &Mem{path: path, f: f}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			m.loads = append(m.loads, p.ProgHeader)
		}
	}
	if len(m.loads) == 0 {
		f.Close()
		return nil, fmt.Errorf("kernel memory %s: no PT_LOAD segments", path)
	}
	return m, nil
}

// Close closes the image.
func (m *Mem) Close() error { return m.f.Close() }

// Read returns n bytes of kernel memory at virtual address addr.
func (m *Mem) Read(addr uint64, n int) ([]byte, error) {
	for _, p := range m.loads {
		if addr >= p.Vaddr && addr+uint64(n) <= p.Vaddr+p.Memsz && addr+uint64(n) >= addr {
			buf := make([]byte, n)
			if _, err := m.f.ReadAt(buf, int64(p.Off+(addr-p.Vaddr))); err != nil {
				return nil, fmt.Errorf("kernel memory %s: reading %d bytes at %#x: %w", m.path, n, addr, err)
			}
			return buf, nil
		}
	}
	return nil, fmt.Errorf("kernel memory %s: %#x+%d is not in any segment", m.path, addr, n)
}
