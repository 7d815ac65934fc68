// Command fixturegen writes a run-pre matching test fixture: one function's
// pre code (from an object built in the prepared tree), the bytes the
// running kernel had at its address (from a dump of a qemu guest's
// /proc/kcore) and the lines of that guest's /proc/kallsyms the match
// needs. The fixtures in ../../testdata were made with it; see
// ../../testdata/README.md for the dumps.
//
//	go run ./runpre/internal/fixturegen -obj fs/proc/base.o -func comm_write \
//		-dump /tmp/run/qemu64 -source "..." -o runpre/testdata/comm_write-qemu64.json
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre/internal/fixture"
	"golang.org/x/arch/x86/x86asm"
)

// sizes are Debian 6.1's entry sizes (module.EntrySizes on its headers).
var sizes = map[string]int{".altinstructions": 12, "__jump_table": 16, "alt_instr.instrlen": 10, "alt_instr.replacementlen": 11}

func main() {
	obj := flag.String("obj", "", "pre object")
	fn := flag.String("func", "", "function")
	dump := flag.String("dump", "", "dump directory: kallsyms and text-STEXT")
	index := flag.Int("candidate", 0, "which kallsyms symbol of that name")
	all := flag.Bool("all", false, "keep the code of every kallsyms symbol of that name")
	source := flag.String("source", "", "where the sequences come from")
	out := flag.String("o", "", "output file")
	flag.Parse()
	if err := run(*obj, *fn, *dump, *index, *all, *source, *out); err != nil {
		log.Fatal(err)
	}
}

func run(obj, fn, dump string, index int, all bool, source, out string) error {
	f, err := elfobj.Open(obj)
	if err != nil {
		return err
	}
	pf, err := differ.PreFunction(f, fn, sizes)
	if err != nil {
		return err
	}
	pf.Object, pf.Source = pack.Vmlinux, objName(obj)
	names := map[string]bool{}
	for i := range pf.Cold {
		pf.Cold[i].Object, pf.Cold[i].Source = pf.Object, pf.Source
	}
	for _, f := range append([]pack.Function{pf}, pf.Cold...) {
		names[f.Name] = true
		for _, x := range f.PreRelocs {
			names[x.Symbol] = true
		}
		for _, s := range f.PreSites {
			for _, x := range s.Relocs {
				names[x.Symbol] = true
			}
		}
	}
	ksPath := filepath.Join(dump, "kallsyms")
	syms, err := kallsyms.ReadFile(ksPath)
	if err != nil {
		return err
	}
	cands := syms.Lookup(fn)
	if index >= len(cands) {
		return fmt.Errorf("%s has %d symbols called %s", ksPath, len(cands), fn)
	}
	if !all {
		cands = cands[index : index+1]
	}
	texts, _ := filepath.Glob(filepath.Join(dump, "text-*"))
	if len(texts) != 1 {
		return fmt.Errorf("%s: want one text-STEXT dump", dump)
	}
	stext, err := strconv.ParseUint(strings.TrimPrefix(filepath.Base(texts[0]), "text-"), 16, 64)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(texts[0])
	if err != nil {
		return err
	}
	var mem []fixture.Window
	window := func(c kallsyms.Symbol, size int) {
		n := syms.Extent(c)
		if max := uint64(size + 256); n == 0 || n > max {
			n = max
		}
		mem = append(mem, fixture.Window{Addr: c.Addr, Code: text[c.Addr-stext : c.Addr-stext+n]})
	}
	for _, c := range cands {
		window(c, len(pf.PreCode))
	}
	// Every kallsyms symbol of a cold part's name: Find chooses.
	for _, part := range pf.Cold {
		for _, c := range syms.Lookup(part.Name) {
			window(c, len(part.PreCode))
		}
	}
	for _, w := range mem {
		for _, a := range branchTargets(w) {
			if s, ok := syms.At(a); ok {
				names[s.Name] = true
			}
		}
	}
	keep := func(s kallsyms.Symbol) bool {
		for _, w := range mem {
			if s.Addr >= w.Addr && s.Addr <= w.Addr+uint64(len(w.Code)) {
				return true
			}
		}
		return names[s.Name]
	}
	lines, err := filterLines(ksPath, keep)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(fixture.Fixture{Source: source, Function: pf, Memory: mem, Kallsyms: lines}, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}

// filterLines returns the lines of a kallsyms file whose symbol keep accepts.
func filterLines(path string, keep func(kallsyms.Symbol) bool) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue // module symbols, and anything unexpected
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err == nil && keep(kallsyms.Symbol{Addr: addr, Name: fields[2]}) {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String(), sc.Err()
}

// objName is obj relative to the tree it was built in: what follows the
// last "/post/" or "/objs/" of its path, if any.
func objName(obj string) string {
	for _, sep := range []string{"/post/", "/objs/"} {
		if i := strings.LastIndex(obj, sep); i >= 0 {
			return obj[i+len(sep):]
		}
	}
	return obj
}

// branchTargets returns the targets of the relative branches in w, for
// the disassembly of the running code to name them.
func branchTargets(w fixture.Window) []uint64 {
	var out []uint64
	for off := 0; off < len(w.Code); {
		in, err := x86asm.Decode(w.Code[off:], 64)
		if err != nil || in.Len == 0 {
			off++
			continue
		}
		if rel, ok := in.Args[0].(x86asm.Rel); ok {
			out = append(out, w.Addr+uint64(off+in.Len)+uint64(int64(rel)))
		}
		off += in.Len
	}
	return out
}
