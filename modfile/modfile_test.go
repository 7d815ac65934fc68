package modfile

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
)

// The module the tests read: Debian's binfmt_misc.ko of the kernel the
// tests target (package linux-image-6.1.0-56-amd64).
const (
	testModules = "/lib/modules/6.1.0-56-amd64"
	testModule  = "binfmt_misc"
)

func openTest(t *testing.T) *File {
	t.Helper()
	path, err := Find(testModules, testModule)
	if err != nil {
		t.Fatalf("%v (run `make kernel-inputs`: it installs linux-image-6.1.0-56-amd64)", err)
	}
	if want := filepath.Join(testModules, "kernel/fs/binfmt_misc.ko"); path != want {
		t.Errorf("Find = %s, want %s", path, want)
	}
	m, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// fakeKernel resolves every name to an address of its own in a vmlinux
// range, within PC32 range of base.
func fakeKernel(name string) (uint64, bool) {
	h := fnv.New32a()
	h.Write([]byte(name))
	return 0xffffffff81000000 + uint64(h.Sum32()%0x1000000)*16, true
}

const testBase = 0xffffffffc1000000

func symbol(t *testing.T, im *Image, name string) kallsyms.Symbol {
	t.Helper()
	for _, s := range im.Symbols {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no symbol %s in the image", name)
	return kallsyms.Symbol{}
}

func TestLayout(t *testing.T) {
	m := openTest(t)
	if m.Name != testModule {
		t.Errorf("Name = %q, want %s", m.Name, testModule)
	}
	im, err := m.Layout(testBase, fakeKernel)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Unresolved) != 0 {
		t.Errorf("Unresolved = %v with a resolver that knows every name", im.Unresolved)
	}
	status, enabled := symbol(t, im, "bm_status_read"), symbol(t, im, "enabled")
	if status.Type != 't' || enabled.Type != 'd' || status.Module != testModule {
		t.Errorf("bm_status_read %+v, enabled %+v: want t and d in %s", status, enabled, testModule)
	}
	if this := symbol(t, im, "__this_module"); this.Type != 'D' {
		t.Errorf("__this_module type %c, want D", this.Type)
	}
	code, err := im.Read(status.Addr, 0x65)
	if err != nil {
		t.Fatal(err)
	}
	// +5: mov enabled(%rip),%eax (8b 05 rel32), a PC32 to .data+0x84.
	if code[5] != 0x8b || code[6] != 0x05 {
		t.Fatalf("bm_status_read+5 = % x, want mov rip-relative", code[5:11])
	}
	if got := status.Addr + 11 + uint64(int64(int32(binary.LittleEndian.Uint32(code[7:])))); got != enabled.Addr {
		t.Errorf("bm_status_read+5 reads %#x, want enabled at %#x", got, enabled.Addr)
	}
	// +0x60: jmp simple_read_from_buffer, a PLT32 to an undefined symbol.
	want, _ := fakeKernel("simple_read_from_buffer")
	if code[0x60] != 0xe9 {
		t.Fatalf("bm_status_read+0x60 = % x, want a jmp", code[0x60:0x65])
	}
	if got := status.Addr + 0x65 + uint64(int64(int32(binary.LittleEndian.Uint32(code[0x61:])))); got != want {
		t.Errorf("the tail jump goes to %#x, want simple_read_from_buffer at %#x", got, want)
	}
	if _, err := im.Read(im.End-4, 8); err == nil {
		t.Error("Read past the image's end succeeded")
	}
}

// TestSymbols checks the symbols against the kernel's rule: init code is
// not kept, exit code (CONFIG_MODULE_UNLOAD) is, undefined symbols and
// section symbols are not, and the order is the symbol table's.
func TestSymbols(t *testing.T) {
	m := openTest(t)
	im, err := m.Layout(testBase, func(string) (uint64, bool) { return 0, false })
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range im.Symbols {
		names = append(names, s.Name)
		if s.Addr < im.Base || s.Addr > im.End {
			t.Errorf("%s at %#x is outside the image", s.Name, s.Addr)
		}
	}
	for _, n := range []string{"init_misc_binfmt", "init_module", "__fentry__", "simple_read_from_buffer", ""} {
		if slices.Contains(names, n) {
			t.Errorf("symbols include %q", n)
		}
	}
	for _, n := range []string{"exit_misc_binfmt", "bm_status_read.cold", "entries", "entries_lock"} {
		if !slices.Contains(names, n) {
			t.Errorf("symbols lack %q", n)
		}
	}
	var elfOrder []string
	for _, s := range m.syms {
		if slices.Contains(names, s.Name) {
			elfOrder = append(elfOrder, s.Name)
		}
	}
	if !slices.Equal(names, elfOrder) {
		t.Errorf("symbols are not in the symbol table's order:\n%v\n%v", names, elfOrder)
	}
	if !slices.Contains(im.Unresolved, "simple_read_from_buffer") {
		t.Errorf("Unresolved = %v, want simple_read_from_buffer among them", im.Unresolved)
	}
}

func TestBuildID(t *testing.T) {
	m := openTest(t)
	id, err := m.BuildID()
	if err != nil || len(id) != 20 {
		t.Fatalf("BuildID = %x, %v; want 20 bytes", id, err)
	}
	note := make([]byte, 12, 36)
	binary.LittleEndian.PutUint32(note, 4)
	binary.LittleEndian.PutUint32(note[4:], 20)
	binary.LittleEndian.PutUint32(note[8:], 3)
	note = append(append(note, "GNU\x00"...), id...)
	if got, err := NoteBuildID(note); err != nil || string(got) != string(id) {
		t.Errorf("NoteBuildID = %x, %v", got, err)
	}
	if _, err := NoteBuildID(note[:20]); err == nil {
		t.Error("NoteBuildID of a cut note succeeded")
	}
}

func TestFindRefuses(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz\nkernel/drivers/block/null_blk/null_blk.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(dir, "ext4"); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Errorf("Find(ext4) = %v, want a refusal of the compressed file", err)
	}
	if got, err := Find(dir, "null_blk"); err != nil || got != filepath.Join(dir, "kernel/drivers/block/null_blk/null_blk.ko") {
		t.Errorf("Find(null_blk) = %s, %v", got, err)
	}
	if _, err := Find(dir, "loop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(loop) = %v, want ErrNotFound", err)
	}
	if _, err := Find(t.TempDir(), "loop"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Find without modules.dep = %v, want ErrNotExist", err)
	}
}
