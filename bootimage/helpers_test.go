package bootimage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// vmlinuz is the Debian kernel the real-data tests run against.
const vmlinuz = "/boot/vmlinuz-6.1.0-56-amd64"

// wantBuildID is the build-id of that kernel as `readelf -n` prints it for
// the ELF decompressed from the image by `xz -d`.
const wantBuildID = "eb4fbcd037e7253717950bf2b93bd5566f47c56f"

// boots are the qemu boots of that kernel whose memory is in testdata.
var boots = []string{"qemu64", "epyc"}

// testFuncs are the functions compared byte for byte: absolute 32-bit
// references (mov $sym), 64-bit ones (movabs), inverse 32-bit ones
// (RIP-relative references to per-CPU symbols), and plain ones.
var testFuncs = []string{
	"x86_get_pmu",                  // two mov $sym,%rax
	"amd_pmu_addr_offset",          // four 32-bit
	"startup_64_setup_env",         // eight 32-bit
	"pvh_start_xen",                // nine 32-bit, no fentry
	"wakeup_long64",                // seven 32-bit
	"nfs_stat_to_errno",            // a 64-bit movabs and two 32-bit
	"arch_hibernation_header_save", // a 64-bit movabs of a __pa_symbol
	"x86_pmu_cancel_txn",           // eight inverse 32-bit
	"get_segment_base",             // inverse 32-bit
	"sme_clear_pgd",                // no relocations
	"ftrace_caller",                // no relocations, no fentry
}

// kallsymsFile is a parsed /proc/kallsyms (or some of its lines).
type kallsymsFile map[string]uint64

func readKallsyms(path string) (kallsymsFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	k := kallsymsFile{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue // module symbols have a fourth field
		}
		a, err := strconv.ParseUint(fs[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if _, dup := k[fs[2]]; !dup {
			k[fs[2]] = a
		}
	}
	return k, sc.Err()
}

// chunk is a piece of kernel memory at a running address.
type chunk struct {
	addr uint64
	data []byte
}

// readChunks reads a gzipped sequence of (u64 address, u32 length, bytes).
func readChunks(path string) ([]chunk, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []chunk
	for len(data) > 0 {
		if len(data) < 12 {
			return nil, fmt.Errorf("%s: truncated", path)
		}
		addr, n := binary.LittleEndian.Uint64(data), binary.LittleEndian.Uint32(data[8:])
		data = data[12:]
		if uint64(n) > uint64(len(data)) {
			return nil, fmt.Errorf("%s: truncated", path)
		}
		out = append(out, chunk{addr, data[:n]})
		data = data[n:]
	}
	return out, nil
}

func writeChunks(path string, cs []chunk) error {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	for _, c := range cs {
		var h [12]byte
		binary.LittleEndian.PutUint64(h[:], c.addr)
		binary.LittleEndian.PutUint32(h[8:], uint32(len(c.data)))
		zw.Write(h[:])
		zw.Write(c.data)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// codeDiff counts how image bytes (img) compare with running bytes (run)
// of the code at addr.
type codeDiff struct {
	equal     int // bytes equal
	rewritten int // bytes differing where the kernel rewrites its code
	other     int // bytes differing otherwise
	firstAt   int // offset of the first "other" difference, -1 if none
}

// compareCode compares image and running code at addr, explaining the
// run-time rewrites it knows: the `call __fentry__` at a function's start
// that ftrace turns into a 5-byte NOP (fentry is its address), and the `jmp __x86_return_thunk`
// that becomes `ret; int3 x4` or a jump to the return thunk chosen at
// boot (runThunks: srso_return_thunk on the EPYC boot).
func compareCode(img, run []byte, addr uint64, fentry, thunk uint64, runThunks map[uint64]bool) codeDiff {
	d := codeDiff{firstAt: -1}
	rel := func(j int) uint64 { return jmpTarget(img, j, addr) }
	for j := 0; j < len(img); {
		if j+5 <= len(img) && !bytes.Equal(img[j:j+5], run[j:j+5]) {
			fentryNOP := img[j] == 0xe8 && rel(j) == fentry &&
				bytes.Equal(run[j:j+5], []byte{0x0f, 0x1f, 0x44, 0x00, 0x00})
			thunkRet := img[j] == 0xe9 && rel(j) == thunk &&
				(bytes.Equal(run[j:j+5], []byte{0xc3, 0xcc, 0xcc, 0xcc, 0xcc}) ||
					run[j] == 0xe9 && runThunks[jmpTarget(run, j, addr)])
			if fentryNOP || thunkRet {
				d.rewritten += 5
				j += 5
				continue
			}
		}
		if img[j] == run[j] {
			d.equal++
		} else {
			if d.firstAt < 0 {
				d.firstAt = j
			}
			d.other++
		}
		j++
	}
	return d
}

// sortedText returns the text symbols of k by address.
func sortedText(k kallsymsFile) []string {
	names := make([]string, 0, len(k))
	for n := range k {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if k[names[i]] != k[names[j]] {
			return k[names[i]] < k[names[j]]
		}
		return names[i] < names[j]
	})
	return names
}

// jmpTarget returns the target of the 5-byte call or jump at code[j:],
// code being at addr.
func jmpTarget(code []byte, j int, addr uint64) uint64 {
	return addr + uint64(j) + 5 + uint64(int64(int32(binary.LittleEndian.Uint32(code[j+1:]))))
}

// returnThunks returns the addresses of the return thunks in k.
func returnThunks(k kallsymsFile) map[uint64]bool {
	m := map[uint64]bool{}
	for _, n := range []string{"__x86_return_thunk", "srso_return_thunk", "retbleed_return_thunk", "its_return_thunk"} {
		if a, ok := k[n]; ok {
			m[a] = true
		}
	}
	return m
}
