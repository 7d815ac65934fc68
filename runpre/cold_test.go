package runpre

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/runpre/internal/fixture"
)

const (
	coldFixture = "drop_caches_sysctl_handler-qemu64"
	coldParent  = "drop_caches_sysctl_handler"
	coldPart    = "drop_caches_sysctl_handler.cold"
)

// TestColdParts matches drop_caches_sysctl_handler of Debian's 6.1.0-56
// with its cold part (the pr_info path): the function's jump gives the
// part's running address, the part's jump back must go to the matched
// function, and the static both refer to (stfu.0) must agree.
func TestColdParts(t *testing.T) {
	f := loadFixture(t, coldFixture)
	if len(f.Function.Cold) != 1 || f.Function.Cold[0].Name != coldPart {
		t.Fatalf("fixture cold parts %+v, want %s", f.Function.Cold, coldPart)
	}
	part, err := f.syms.Unique(coldPart)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Find(&f.Function, f.syms, f, Options{Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != 1 || m.Parts[0].Name != coldPart || m.Parts[0].Addr != part.Addr || m.Parts[0].Len != f.Function.Cold[0].Size {
		t.Fatalf("parts %+v, want %s at %#x, %d bytes matched", m.Parts, coldPart, part.Addr, f.Function.Cold[0].Size)
	}
	p := m.Parts[0]
	if d := m.Derived[coldPart]; d.Addr != part.Addr {
		t.Errorf("the function's jump derives %s = %#x, kallsyms says %#x", coldPart, d.Addr, part.Addr)
	}
	if d := p.Derived[coldParent]; d.Addr != m.Addr {
		t.Errorf("the part's jump back derives %s = %#x, the function runs at %#x", coldParent, d.Addr, m.Addr)
	}
	stfu, err := f.syms.Unique("stfu.0")
	if err != nil {
		t.Fatal(err)
	}
	if m.Derived["stfu.0"].Addr != stfu.Addr || p.Derived["stfu.0"].Addr != stfu.Addr {
		t.Errorf("stfu.0 derived %#x (function) and %#x (part), kallsyms %#x", m.Derived["stfu.0"].Addr, p.Derived["stfu.0"].Addr, stfu.Addr)
	}
	if !strings.Contains(strings.Join(rules(p.Steps), "\n"), "same branch to "+coldParent) {
		t.Errorf("the part's steps %v do not take its jump back", rules(p.Steps))
	}
}

// TestColdPartRefused: a cold part whose code differs, one kallsyms does
// not have, and one that jumps back into another function of the same
// name are refused, with the part's name.
func TestColdPartRefused(t *testing.T) {
	t.Run("code", func(t *testing.T) {
		f := loadFixture(t, coldFixture)
		code := f.Function.Cold[0].PreCode
		code[0x0b] ^= 0x08 // mov 0x970(%rax),%edx: another field of the task
		_, err := Find(&f.Function, f.syms, f, Options{})
		var mm *Mismatch
		if !errors.As(err, &mm) || mm.Func != coldPart || mm.PreOff != 0x09 {
			t.Fatalf("Find = %v, want a mismatch in %s at +0x9", err, coldPart)
		}
	})
	t.Run("not-in-kallsyms", func(t *testing.T) {
		f := loadFixture(t, coldFixture)
		f.syms = withKallsyms(t, f, func(line string) string {
			if strings.HasSuffix(line, " "+coldPart) {
				return ""
			}
			return line
		})
		_, err := Find(&f.Function, f.syms, f, Options{})
		var le *kallsyms.LookupError
		if !errors.As(err, &le) || le.Name != coldPart {
			t.Fatalf("Find = %v, want a lookup error for %s: the helper checks its address with kallsyms", err, coldPart)
		}
	})
	t.Run("jumps-into-another-copy", func(t *testing.T) {
		// Give kallsyms a second drop_caches_sysctl_handler (at
		// vfs_dentry_acceptable) and make the running cold part jump
		// back into it: each name is one of kallsyms', but the part is
		// not the matched function's.
		f := loadFixture(t, coldFixture)
		other, err := f.syms.Unique("vfs_dentry_acceptable")
		if err != nil {
			t.Fatal(err)
		}
		f.syms = withKallsyms(t, f, func(line string) string {
			if strings.HasSuffix(line, " vfs_dentry_acceptable") {
				return line + "\n" + fmt.Sprintf("%016x t %s", other.Addr, coldParent)
			}
			return line
		})
		part, _ := f.syms.Unique(coldPart)
		run := f.window(t, part.Addr)
		const jmp = 0x2e // e9 rel32: back into the function at +0x36
		if run[jmp] != 0xe9 {
			t.Fatalf("running cold part has %#x at +%#x, want a jmp", run[jmp], jmp)
		}
		binary.LittleEndian.PutUint32(run[jmp+1:], uint32(int32(int64(other.Addr+0x36)-int64(part.Addr+jmp+5))))
		f.Memory = append(f.Memory, windowAt(other.Addr, len(f.Function.PreCode)+slack))
		_, err = Find(&f.Function, f.syms, f, Options{})
		var mm *Mismatch
		if !errors.As(err, &mm) || mm.Func != coldPart || mm.PreOff != jmp || !strings.Contains(mm.Reason, coldParent+" is at") {
			t.Fatalf("Find = %v, want a mismatch of %s at +%#x: it jumps into the other %s", err, coldPart, jmp, coldParent)
		}
	})
}

// withKallsyms rewrites the fixture's kallsyms lines with edit and parses
// them.
func withKallsyms(t *testing.T, f testFixture, edit func(string) string) *kallsyms.Table {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(f.Kallsyms), "\n") {
		if l = edit(l); l != "" {
			lines = append(lines, l)
		}
	}
	f.Kallsyms = strings.Join(lines, "\n") + "\n"
	syms, err := kallsyms.Parse(strings.NewReader(f.Kallsyms))
	if err != nil {
		t.Fatal(err)
	}
	return syms
}

// window returns the fixture's running code at addr, to edit.
func (f testFixture) window(t *testing.T, addr uint64) []byte {
	t.Helper()
	for _, w := range f.Memory {
		if w.Addr == addr {
			return w.Code
		}
	}
	t.Fatalf("no running code at %#x in the fixture", addr)
	return nil
}

// windowAt is n bytes of int3 at addr.
func windowAt(addr uint64, n int) fixture.Window {
	return fixture.Window{Addr: addr, Code: bytes.Repeat([]byte{0xcc}, n)}
}
