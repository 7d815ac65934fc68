package bootimage

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
)

// openVmlinuz opens the installed Debian kernel image, failing the test if
// it is missing.
func openVmlinuz(t testing.TB) *Image {
	t.Helper()
	if _, err := os.Stat(vmlinuz); err != nil {
		t.Fatalf("%v: run `make kernel-inputs` to install linux-image-6.1.0-56-amd64", err)
	}
	img, err := Open(vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestReal checks the installed image against what other tools say about
// it and against memory of two qemu boots of it. The subtests share one
// Open, which takes seconds.
func TestReal(t *testing.T) {
	img := openVmlinuz(t)
	t.Run("image", func(t *testing.T) { testRealImage(t, img) })
	// The same image is relocated for one boot, then for the other.
	for _, boot := range boots {
		t.Run(boot, func(t *testing.T) { testRealBoot(t, img, boot) })
	}
}

func testRealImage(t *testing.T, img *Image) {
	id, err := img.BuildID()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(id); got != wantBuildID {
		t.Errorf("BuildID = %s, want %s", got, wantBuildID)
	}
	// /sys/kernel/notes is the .notes section, the image's PT_NOTE
	// segment: the loader's comparison holds on the real notes.
	notes := filepath.Join(t.TempDir(), "notes")
	s := img.notes[0]
	if err := os.WriteFile(notes, img.vmlinux[s.off:s.off+s.filesz], 0o644); err != nil {
		t.Fatal(err)
	}
	if running, err := RunningBuildID(notes); err != nil || !bytes.Equal(running, id) {
		t.Errorf("RunningBuildID of the image's notes = % x, %v; want % x", running, err, id)
	}
	if got := img.LinkAddr(); got != 0xffffffff81000000 {
		t.Errorf("LinkAddr = %#x, want 0xffffffff81000000", got)
	}
	// Sizes of the parts of the payload, as `xz -d` and `readelf -h` give
	// them: the ELF ends at its section headers, where the table begins.
	if len(img.vmlinux) != 65014640 {
		t.Errorf("vmlinux.bin is %d bytes, want 65014640", len(img.vmlinux))
	}
	if got := 4 * (3 + len(img.rel32) + len(img.relInv32) + len(img.rel64)); got != 65906612-65014640 {
		t.Errorf("relocation table is %d bytes, want %d", got, 65906612-65014640)
	}
}

// absRef is a field of a function that holds an absolute address: the
// 32-bit sign-extended or 64-bit value sym+addend.
type absRef struct {
	fn     string
	off    uint64
	width  int
	sym    string
	addend int64
}

var absRefs = []absRef{
	{"x86_get_pmu", 18, 4, "__per_cpu_offset", 0},                   // mov __per_cpu_offset(,%rdi,8),%rdx
	{"x86_get_pmu", 45, 4, "pmu", 0},                                // mov $pmu,%rax
	{"arch_hibernation_header_save", 27, 4, "restore_registers", 0}, // movq $restore_registers,(%rdi)
	// movabs $__pa_symbol(restore_registers) - phys_base: the symbol's
	// offset from __START_KERNEL_map (0xffffffff80000000).
	{"arch_hibernation_header_save", 44, 8, "restore_registers", 0x80000000},
	{"nfs_stat_to_errno", 14, 8, "nfs_errtbl", -8}, // movabs $nfs_errtbl-8,%rsi
}

func testRealBoot(t *testing.T, img *Image, boot string) {
	dir := filepath.Join("testdata", "boots", boot)
	k, err := readKallsyms(filepath.Join(dir, "kallsyms"))
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := readChunks(filepath.Join(dir, "text.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(chunks, func(i, j int) bool { return chunks[i].addr < chunks[j].addr })
	// The link-time bytes, to see that relocation changes them.
	if err := img.Relocate(img.LinkAddr()); err != nil {
		t.Fatal(err)
	}
	delta := k["_text"] - img.LinkAddr()
	link := make([][]byte, len(chunks))
	for i, c := range chunks {
		if link[i], err = img.Read(c.addr-delta, len(c.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Relocate(k["_text"]); err != nil {
		t.Fatal(err)
	}
	byAddr := map[uint64]string{}
	for n, a := range k {
		byAddr[a] = n
	}
	var total, raw, explained int
	for _, c := range chunks {
		got, err := img.Read(c.addr, len(c.data))
		if err != nil {
			t.Fatal(err)
		}
		d := compareCode(got, c.data, c.addr, k["__fentry__"], k["__x86_return_thunk"], returnThunks(k))
		total += len(c.data)
		explained += d.equal + d.rewritten
		for i := range got {
			if got[i] == c.data[i] {
				raw++
			}
		}
		name := byAddr[c.addr]
		if slices.Contains(testFuncs, name) && d.other != 0 {
			t.Errorf("%s at %#x: %d bytes differ other than fentry and return thunks, first at +%d:\nimage   % x\nrunning % x",
				name, c.addr, d.other, d.firstAt, got, c.data)
		}
	}
	// Every field the relocation table names is as in memory, and
	// (but for inverse relocations of per-CPU references that
	// cancel out) differs from its link-time value.
	text := img.loads[0]
	sites := map[string][]uint32{"32-bit": img.rel32, "inverse 32-bit": img.relInv32, "64-bit": img.rel64}
	widths := map[string]int{"32-bit": 4, "inverse 32-bit": 4, "64-bit": 8}
	for kind, offs := range sites {
		n := 0
		for _, off := range offs {
			a := uint64(off) - text.off + text.paddr + img.kmap + img.delta
			// The chunk that may hold a: the last one starting at or below it.
			if i := sort.Search(len(chunks), func(i int) bool { return chunks[i].addr > a }) - 1; i >= 0 {
				c := chunks[i]
				if a+uint64(widths[kind]) > c.addr+uint64(len(c.data)) {
					continue
				}
				n++
				j := a - c.addr
				got, _ := img.Read(a, widths[kind])
				if want := c.data[j : j+uint64(widths[kind])]; !bytes.Equal(got, want) {
					t.Errorf("%s relocation at %#x: image % x, memory % x", kind, a, got, want)
				}
				if kind != "inverse 32-bit" && bytes.Equal(got, link[i][j:j+uint64(widths[kind])]) {
					t.Errorf("%s relocation at %#x: % x unchanged by Relocate", kind, a, got)
				}
			}
		}
		t.Logf("%s relocations in the sampled functions: %d", kind, n)
		if n == 0 {
			t.Errorf("no %s relocations in the sampled functions", kind)
		}
	}

	// Measured: 0.953 / 0.966 equal bytes, 0.996 explained.
	t.Logf("%d functions, %d bytes: %.4f equal, %.4f equal or fentry/return thunk", len(chunks), total, float64(raw)/float64(total), float64(explained)/float64(total))
	if f := float64(raw) / float64(total); f < 0.94 {
		t.Errorf("only %.4f of the sampled bytes are equal", f)
	}
	if f := float64(explained) / float64(total); f < 0.99 {
		t.Errorf("only %.4f of the sampled bytes are equal or known rewrites", f)
	}

	for _, r := range absRefs {
		fn, ok1 := k[r.fn]
		sym, ok2 := k[r.sym]
		if !ok1 || !ok2 {
			t.Fatalf("%s or %s not in testdata kallsyms", r.fn, r.sym)
		}
		b, err := img.Read(fn+r.off, r.width)
		if err != nil {
			t.Fatal(err)
		}
		want := sym + uint64(r.addend)
		var got uint64
		if r.width == 4 {
			got = uint64(int64(int32(binary.LittleEndian.Uint32(b))))
		} else {
			got = binary.LittleEndian.Uint64(b)
		}
		if got != want {
			t.Errorf("%s+%d: %#x, want %s%+d = %#x", r.fn, r.off, got, r.sym, r.addend, want)
		}
	}
}
