package coverage

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Counts are the figures of the report's first line.
type Counts struct {
	// Run is how many planned patches have a result; Pending how many of
	// them wait for the guest.
	Run, Pending int
	// NotCompiling and NotCodeOnly are left out of M.
	NotCompiling, NotCodeOnly int
	// M and N as the first line says.
	M, N int
	// Waited counts the patches of N whose module does not load in the
	// guest: applied and undone while the update waited for it.
	Waited int
}

// Count returns the report's figures for recs.
func Count(recs map[string]*Record) Counts {
	var c Counts
	for _, r := range recs {
		c.Run++
		switch r.Counted() {
		case Pending:
			c.Pending++
		case NotCompiling:
			c.NotCompiling++
		case NotCodeOnly:
			c.NotCodeOnly++
		case InM:
			c.M++
			if r.IsShipped() {
				c.N++
				if r.Outcome().Category == ShippedWaited {
					c.Waited++
				}
			}
		}
	}
	return c
}

// FirstLine is the report's first line: shipped: N of M code-only
// patches (P%).
func (c Counts) FirstLine() string {
	p := 0.0
	if c.M > 0 {
		p = 100 * float64(c.N) / float64(c.M)
	}
	return fmt.Sprintf("shipped: %d of %d code-only patches (%.1f%%)", c.N, c.M, p)
}

// WriteReportFile writes the report to path (through a temporary file).
func WriteReportFile(path string, sel Selection, recs map[string]*Record) error {
	var b bytes.Buffer
	if err := WriteReport(&b, sel, recs); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// row groups patches with one outcome and one way of counting.
type row struct {
	c       Category
	counted Counted
	recs    []*Record
}

// WriteReport writes docs/coverage.md: the first line, how the patches
// were chosen, what the counts mean, every outcome with its counts and
// times, the cost per patch, and every patch.
func WriteReport(w io.Writer, sel Selection, recs map[string]*Record) error {
	c := Count(recs)
	var ordered []*Record
	for _, e := range sel.Planned {
		if r, ok := recs[e.Patch]; ok {
			ordered = append(ordered, r)
		}
	}
	p := &printer{w: w}
	p.f("%s\n\n", c.FirstLine())
	p.f("# Coverage on the dev corpus\n\n")
	p.f("Written by `make coverage` (package `coverage`, `cmd/livesplice-coverage`) from its results file; %s.\n\n", versions(ordered))
	if c.Run < len(sel.Planned) || c.Pending > 0 {
		p.f("**Partial run:** %d of the %d planned patches have a result", c.Run, len(sel.Planned))
		if c.Pending > 0 {
			p.f(", %d of them built and waiting for the guest (not counted)", c.Pending)
		}
		p.f(". The run is resumable: `make coverage` continues where it stopped, in the same order.\n\n")
	}

	p.f("## How the patches were chosen\n\n")
	vm, mod := sel.Candidates[StratumVmlinux], sel.Candidates[StratumModule]
	p.f("- Corpus: `%s` (%d per-file patches). Candidates: its `kind=c` rows located in vmlinux (%d) or in a module (%d), %d in all; `not-built` rows are skipped.\n",
		filepath.Base(sel.Corpus), sel.Rows, vm, mod, vm+mod)
	if sel.Explicit {
		p.f("- A fixed list of %d patches (not the seeded order).\n", len(sel.Planned))
	} else {
		p.f("- Order: the vmlinux and the module patches each shuffled with seed %d (Go's math/rand/v2 PCG), then interleaved so that every prefix keeps their proportion (%d:%d, within one patch): the first K patches are a random sample of K drawn in proportion to vmlinux and modules.\n", sel.Seed, vm, mod)
		if sel.Limit > 0 && sel.Limit < vm+mod {
			p.f("- Planned: the first %d of that order.\n", len(sel.Planned))
		} else {
			p.f("- Planned: all %d.\n", len(sel.Planned))
		}
	}
	rv, rm := 0, 0
	for _, r := range ordered {
		if strings.HasPrefix(r.Location, "module:") {
			rm++
		} else {
			rv++
		}
	}
	p.f("- Run so far: %d (%d vmlinux, %d module).\n", c.Run, rv, rm)
	p.f("- Each patch is built forward for its pre release, `%s` (kernel %s), with `builder.Build` as `livesplice build` does. Each pack built is run in a %s guest (qemu TCG, 2 vCPUs), many packs per boot: the target module loaded (with its dependencies, from the host's `/lib/modules/%s`) where the patch is in one, then `livesplice check`, `apply`, an exercise of the kernel (files, fork, pipes, signals, timers, /proc and /sys, loopback ping and TCP, a new network namespace, reclaim; ftrace counts the calls of the replaced functions meanwhile), `list`, `undo`, the module unloaded, and the kernel log checked for warnings, BUGs and oopses. A pack that crashes or hangs the guest is recorded as such and a fresh guest runs the packs after it.\n\n",
		sel.Kernel.Source, sel.Kernel.Release, sel.Kernel.Release, sel.Kernel.Release)

	p.f("## What the first line counts\n\n")
	p.f("- M = the %d patches run", c.Run)
	if c.Pending > 0 {
		p.f(", less %d waiting for the guest", c.Pending)
	}
	p.f(", less %d that do not compile alone against the pre tree, less %d refused for changed initialised data or struct layout that the manifest also marks `data_change=maybe` (listed apart below) = **%d**.\n", c.NotCompiling, c.NotCodeOnly, c.M)
	p.f("- A patch refused before its post object was compiled (a module object, today) is in M: whether it compiles alone is not known.\n")
	p.f("- N = those of M that built, checked, applied, kept the guest working (exercise passed, no warning, BUG or oops in the kernel log) and undid, plus those the tool correctly reports as having nothing to do at run time = **%d**.\n", c.N)
	p.f("- Of N, %d are in a module that does not load in this guest (its hardware is absent, or its init fails here): their update was checked against the module's `.ko`, applied while it waited for the module, a load of the module was attempted with the update applied (the update patches it as it loads, before its init runs), and the update was undone; their new code did not run. Without them: %d of %d.\n\n", c.Waited, c.N-c.Waited, c.M-c.Waited)

	rows := groupRows(ordered)
	p.f("## Outcomes\n\n")
	p.f("| outcome | counts as | patches | vmlinux | module | build s (median) | guest s per pack (median) |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, rw := range rows {
		v, m := 0, 0
		var bs, gs []float64
		for _, r := range rw.recs {
			if strings.HasPrefix(r.Location, "module:") {
				m++
			} else {
				v++
			}
			bs = append(bs, r.Build.Seconds+r.Build.PreSeconds)
			if r.Guest != nil {
				gs = append(gs, r.Guest.seconds())
			}
		}
		p.f("| %s | %s | %d | %d | %d | %s | %s |\n", cell(rw.c.Title()), countedText(rw, rw.recs[0]), len(rw.recs), v, m, median(bs), median(gs))
	}
	p.f("\n")

	p.f("### Why the others were not shipped (a patch refused for several reasons counts once per reason)\n\n")
	p.f("| reason | patches | example |\n|---|---:|---|\n")
	for _, rs := range reasonRows(ordered) {
		p.f("| %s | %d | %s |\n", cell(rs.c.Title()), rs.n, cell(rs.example))
	}
	p.f("\n")

	p.list("Listed apart: refused for changed data or struct layout, manifest `data_change=maybe`", ordered, func(r *Record) bool { return r.Counted() == NotCodeOnly })
	p.list("Nothing to do at run time, as the tool says (counted as shipped; the reason is the tool's)", ordered, func(r *Record) bool { return r.Outcome().Category == NothingToDo })
	p.list("Guest crashes and hangs", ordered, func(r *Record) bool { return r.Outcome().Category == GuestCrashed })
	p.details(ordered)

	p.cost(ordered)

	p.f("## Every patch\n\n")
	p.f("| # | patch | location | data | outcome | reason | build s | guest s |\n|---:|---|---|---|---|---|---:|---:|\n")
	for i, r := range ordered {
		o := r.Outcome()
		gs := "-"
		if r.Guest != nil {
			gs = fmt.Sprintf("%.1f", r.Guest.seconds())
		}
		p.f("| %d | `%s` | %s | %s | %s | %s | %.1f | %s |\n", i+1, r.Patch, strings.TrimPrefix(r.Location, "module:"), r.DataChange,
			o.Category, cell(o.Reason), r.Build.Seconds+r.Build.PreSeconds, gs)
	}
	return p.err
}

// printer writes formatted text and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// list writes a section listing the records keep selects, if any.
func (p *printer) list(title string, recs []*Record, keep func(*Record) bool) {
	var sel []*Record
	for _, r := range recs {
		if keep(r) {
			sel = append(sel, r)
		}
	}
	if len(sel) == 0 {
		return
	}
	p.f("## %s\n\n", title)
	for _, r := range sel {
		o := r.Outcome()
		p.f("- `%s` (%s): %s: %s\n", r.Patch, strings.TrimPrefix(r.Location, "module:"), o.Category.Title(), o.Reason)
	}
	p.f("\n")
}

// details writes the end of every error the classifier does not know.
func (p *printer) details(recs []*Record) {
	first := true
	for _, r := range recs {
		if r.Build.Detail == "" {
			continue
		}
		if first {
			p.f("## Other errors, in full (each wants a typed error or a rule)\n\n")
			first = false
		}
		p.f("- `%s`:\n\n", r.Patch)
		for _, line := range strings.Split(r.Build.Detail, "\n") {
			p.f("      %s\n", line)
		}
		p.f("\n")
	}
}

// cost writes what the run cost per patch.
func (p *printer) cost(recs []*Record) {
	p.f("## Cost per patch\n\n")
	var pre, build, buildOK, guestAll, loads []float64
	preTotal := 0.0
	boots := map[string]*Record{}
	steps := map[string][]float64{}
	var stops, ratios []float64
	applied, reached, traced := 0, 0, 0
	for _, r := range recs {
		pre = append(pre, r.Build.PreSeconds)
		preTotal += r.Build.PreSeconds
		build = append(build, r.Build.Seconds)
		if r.Build.Load > 0 {
			loads = append(loads, r.Build.Load)
		}
		if r.Build.Category == Built {
			buildOK = append(buildOK, r.Build.Seconds)
		}
		g := r.Guest
		if g == nil {
			continue
		}
		boots[g.Boot] = r
		guestAll = append(guestAll, g.seconds())
		for _, s := range g.Steps {
			steps[s.Name] = append(steps[s.Name], s.Seconds)
		}
		if us, ratio := g.applyStop(); us > 0 {
			stops = append(stops, float64(us)/1000)
			if ratio > 0 {
				ratios = append(ratios, ratio)
			}
		}
		if s := g.Step(stepApply); s != nil && s.RC == 0 {
			applied++
			if n, ok := calls(g.Step("reached")); ok {
				traced++
				if n > 0 {
					reached++
				}
			}
		}
	}
	total := func(xs []float64) float64 {
		t := 0.0
		for _, x := range xs {
			t += x
		}
		return t
	}
	p.f("- Pre objects: the builder compiles one patch's objects per call and has no batch API, so the run compiles the pre objects of each batch of patches itself, in one `make -k -j2` in the pristine tree; `builder.Build`'s own pre build then finds them up to date. %.0f s for %d patches, %s s per patch (median).\n", preTotal, len(pre), median(pre))
	p.f("- `builder.Build` per patch (pre up to date, post compiled, diff, update module, pack): median %s s, 90th percentile %s s, %.0f s in all; of the %d packs built: median %s s.\n",
		median(build), percentile(build, 0.9), total(build), len(buildOK), median(buildOK))
	if len(loads) > 0 {
		p.f("- The host's 1-minute load average as builds ended: median %s, 90th percentile %s, on %d cores (other work shared the host: the times above grow with it).\n",
			median(loads), percentile(loads, 0.9), runtime.NumCPU())
	}
	if len(boots) > 0 {
		var bootSecs []float64
		packs := 0
		for _, r := range boots {
			bootSecs = append(bootSecs, r.Guest.BootSeconds)
			packs += r.Guest.BootPacks
		}
		p.f("- Guest: %d boots for %d packs (%.1f per boot), %s s per boot (median, from starting qemu to power-off); per pack: %s s in all (median)",
			len(boots), len(guestAll), float64(packs)/float64(len(boots)), median(bootSecs), median(guestAll))
		var names []string
		for n := range steps {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p.f(", %s %s s", n, median(steps[n]))
		}
		p.f(".\n")
		if len(stops) > 0 {
			p.f("- Apply stop time (all CPUs held): median %s ms, 90th percentile %s ms, over %d applies; as a ratio to an empty stop_machine in the same boot: median %sx, 90th percentile %sx (TCG inflates absolute times: compare ratios).\n",
				median(stops), percentile(stops, 0.9), len(stops), median(ratios), percentile(ratios, 0.9))
		}
		p.f("- Exercise reach: of %d packs applied, ftrace could trace replaced functions of %d, and the exercise called them in %d (most fixes are in drivers for hardware the guest does not have).\n", applied, traced, reached)
	}
	p.f("\n")
}

var callsRE = regexp.MustCompile(`calls of the replaced functions \((\d+) of \d+ traced\): (\d+)`)

// calls returns the count the reached step printed, if some of the
// functions could be traced.
func calls(s *Step) (int, bool) {
	if s == nil {
		return 0, false
	}
	m := callsRE.FindStringSubmatch(s.Output)
	if m == nil || m[1] == "0" {
		return 0, false
	}
	n, _ := strconv.Atoi(m[2])
	return n, true
}

// seconds is the time of a pack's steps in the guest.
func (g *GuestRun) seconds() float64 {
	t := 0.0
	for _, s := range g.Steps {
		t += s.Seconds
	}
	return t
}

// groupRows groups records by outcome and by how they count, in category
// order.
func groupRows(recs []*Record) []*row {
	type key struct {
		c       Category
		counted Counted
	}
	byKey := map[key]*row{}
	var rows []*row
	for _, r := range recs {
		k := key{r.Outcome().Category, r.Counted()}
		rw, ok := byKey[k]
		if !ok {
			rw = &row{c: k.c, counted: k.counted}
			byKey[k] = rw
			rows = append(rows, rw)
		}
		rw.recs = append(rw.recs, r)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].c.rank() != rows[j].c.rank() {
			return rows[i].c.rank() < rows[j].c.rank()
		}
		return rows[i].counted < rows[j].counted
	})
	return rows
}

func countedText(rw *row, r *Record) string {
	switch rw.counted {
	case Pending:
		return "not yet (waiting for the guest)"
	case NotCompiling:
		return "not in M"
	case NotCodeOnly:
		return "not in M (data_change=maybe, listed apart)"
	}
	if r.IsShipped() {
		return "M and N"
	}
	return "M"
}

type reasonRow struct {
	c       Category
	n       int
	example string
}

// reasonRows counts, per category, the patches whose build refusals (or
// outcome, when there are none) name it.
func reasonRows(recs []*Record) []reasonRow {
	byCat := map[Category]*reasonRow{}
	for _, r := range recs {
		seen := map[Category]bool{}
		add := func(c Category, text string) {
			if seen[c] {
				return
			}
			seen[c] = true
			rr, ok := byCat[c]
			if !ok {
				rr = &reasonRow{c: c, example: text}
				byCat[c] = rr
			}
			rr.n++
		}
		if len(r.Build.Refusals) == 0 {
			if o := r.Outcome(); !r.IsShipped() && o.Category != Built {
				add(o.Category, o.Reason)
			}
			continue
		}
		for _, rf := range r.Build.Refusals {
			add(rf.Category, rf.Text)
		}
	}
	var out []reasonRow
	for _, rr := range byCat {
		out = append(out, *rr)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].n != out[j].n {
			return out[i].n > out[j].n
		}
		return out[i].c.rank() < out[j].c.rank()
	})
	return out
}

// versions says which livesplice sources the results come from.
func versions(recs []*Record) string {
	count := map[string]int{}
	var last time.Time
	for _, r := range recs {
		count[r.Version]++
		if r.When.After(last) {
			last = r.When
		}
	}
	if len(count) == 0 {
		return "no results yet"
	}
	var vs []string
	for v := range count {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		return count[vs[i]] > count[vs[j]] || count[vs[i]] == count[vs[j]] && vs[i] < vs[j]
	})
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("%s (%d patches)", v, count[v]))
	}
	return fmt.Sprintf("livesplice source %s (coverage.SourceVersion); last result %s", strings.Join(parts, ", "), last.Format("2006-01-02 15:04 UTC"))
}

func median(xs []float64) string { return percentile(xs, 0.5) }

// percentile returns the q-quantile of xs (nearest rank), "-" for none.
func percentile(xs []float64, q float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return fmt.Sprintf("%.1f", s[i])
}

// cell makes s safe in a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
