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

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
)

// Fixture is the file format (runpre's tests read the same fields).
type Fixture struct {
	Source   string        `json:"source"`
	Function pack.Function `json:"function"`
	Addr     uint64        `json:"addr"`
	Run      []byte        `json:"run"`
	Kallsyms string        `json:"kallsyms"`
}

// sizes are Debian 6.1's entry sizes (module.EntrySizes on its headers).
var sizes = map[string]int{".altinstructions": 12, "__jump_table": 16, "alt_instr.instrlen": 10, "alt_instr.replacementlen": 11}

func main() {
	obj := flag.String("obj", "", "pre object")
	fn := flag.String("func", "", "function")
	dump := flag.String("dump", "", "dump directory: kallsyms and text-STEXT")
	index := flag.Int("candidate", 0, "which kallsyms symbol of that name")
	source := flag.String("source", "", "where the sequences come from")
	out := flag.String("o", "", "output file")
	flag.Parse()
	if err := run(*obj, *fn, *dump, *index, *source, *out); err != nil {
		log.Fatal(err)
	}
}

func run(obj, fn, dump string, index int, source, out string) error {
	f, err := elfobj.Open(obj)
	if err != nil {
		return err
	}
	r, err := differ.PreFunction(f, fn, sizes)
	if err != nil {
		return err
	}
	pf := builder.PackFunction(obj, r)
	names := map[string]bool{fn: true}
	for _, x := range pf.PreRelocs {
		names[x.Symbol] = true
	}
	for _, s := range pf.PreSites {
		for _, x := range s.Relocs {
			names[x.Symbol] = true
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
	c := cands[index]
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
	n := syms.Extent(c)
	if max := uint64(len(pf.PreCode) + 256); n == 0 || n > max {
		n = max
	}
	run := text[c.Addr-stext : c.Addr-stext+n]
	keep := func(s kallsyms.Symbol) bool {
		return names[s.Name] || s.Addr >= c.Addr && s.Addr <= c.Addr+n
	}
	lines, err := filterLines(ksPath, keep)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(Fixture{Source: source, Function: pf, Addr: c.Addr, Run: run, Kallsyms: lines}, "", "\t")
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
