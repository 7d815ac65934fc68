//go:build dumps

// Built only with -tags dumps: it regenerates testdata/boots from qemu
// dumps (see the flag below) instead of testing anything by default.

package bootimage

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -dumps names a directory holding a subdirectory per boot in boots, each
// with the guest's /proc/kallsyms as kallsyms and its _stext.._etext as
// text-<address of _stext> (as runpre/internal/kerneldump leaves them). With it,
// TestDumps measures the whole text against the image and rewrites
// testdata/boots from the dumps.
var dumpsDir = flag.String("dumps", "", "directory of qemu memory dumps to measure against and make testdata/boots from")

// sampleFuncs is how many functions, spread evenly over the text, the
// testdata keeps besides testFuncs.
const sampleFuncs = 256

// fixedSyms are the kallsyms lines the tests need besides the functions.
var fixedSyms = []string{"_text", "_stext", "_etext", "__fentry__", "__x86_return_thunk",
	"srso_return_thunk", "retbleed_return_thunk", "its_return_thunk",
	"pmu", "__per_cpu_offset", "restore_registers", "nfs_errtbl"}

func TestDumps(t *testing.T) {
	if *dumpsDir == "" {
		t.Skip("measures and regenerates testdata/boots only with -dumps DIR")
	}
	img := openVmlinuz(t)
	for _, boot := range boots {
		dir := filepath.Join(*dumpsDir, boot)
		k, err := readKallsyms(filepath.Join(dir, "kallsyms"))
		if err != nil {
			t.Fatal(err)
		}
		text, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("text-%x", k["_stext"])))
		if err != nil {
			t.Fatal(err)
		}
		if err := img.Relocate(k["_text"]); err != nil {
			t.Fatal(err)
		}
		got, err := img.Read(k["_stext"], len(text))
		if err != nil {
			t.Fatal(err)
		}
		d := compareCode(got, text, k["_stext"], k["__fentry__"], k["__x86_return_thunk"], returnThunks(k))
		raw := 0
		for i := range text {
			if got[i] == text[i] {
				raw++
			}
		}
		t.Logf("%s: _stext.._etext %d bytes: %d equal (%.4f); %d more in fentry NOPs and return thunks (%.4f explained); %d other",
			boot, len(text), raw, float64(raw)/float64(len(text)), d.rewritten, float64(d.equal+d.rewritten)/float64(len(text)), d.other)

		// The functions of the text, in address order, each up to the next symbol.
		names := sortedText(k)
		type fn struct {
			name       string
			start, end uint64
		}
		var fns []fn
		for i, n := range names[:len(names)-1] {
			a, b := k[n], k[names[i+1]]
			if a >= k["_stext"] && b <= k["_etext"] && b > a && b-a <= 4096 && !strings.HasPrefix(n, "__pfx_") {
				fns = append(fns, fn{n, a, b})
			}
		}
		keep := map[string]bool{}
		for _, n := range testFuncs {
			keep[n] = true
		}
		for i := 0; i < sampleFuncs; i++ {
			keep[fns[i*len(fns)/sampleFuncs].name] = true
		}
		var cs []chunk
		clean := 0
		for _, f := range fns {
			if !keep[f.name] {
				continue
			}
			delete(keep, f.name)
			off := f.start - k["_stext"]
			cs = append(cs, chunk{f.start, text[off : off+f.end-f.start]})
			if compareCode(got[off:off+f.end-f.start], text[off:off+f.end-f.start], f.start, k["__fentry__"], k["__x86_return_thunk"], returnThunks(k)).other == 0 {
				clean++
			}
		}
		if len(keep) != 0 {
			t.Fatalf("%s: functions not found or too large: %v", boot, keep)
		}
		t.Logf("%s: kept %d functions, %d without other differences", boot, len(cs), clean)

		out := filepath.Join("testdata", "boots", boot)
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeChunks(filepath.Join(out, "text.gz"), cs); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, n := range fixedSyms {
			want[n] = true
		}
		for _, c := range cs {
			for _, n := range names {
				if k[n] == c.addr {
					want[n] = true
				}
			}
		}
		all, err := os.ReadFile(filepath.Join(dir, "kallsyms"))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, l := range strings.Split(string(all), "\n") {
			if fs := strings.Fields(l); len(fs) == 3 && want[fs[2]] {
				lines = append(lines, l)
			}
		}
		if err := os.WriteFile(filepath.Join(out, "kallsyms"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
