package demo

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Spread is a sample's median and spread.
type Spread struct {
	N                          int
	Min, P10, Median, P90, Max float64
}

// SpreadOf returns xs's spread (percentiles interpolated between the
// closest ranks), leaving out unknown values (negative); N is 0 if none
// is known.
func SpreadOf(xs []float64) Spread {
	var v []float64
	for _, x := range xs {
		if x >= 0 {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{}
	}
	slices.Sort(v)
	q := func(p float64) float64 {
		pos := p * float64(len(v)-1)
		i := int(math.Floor(pos))
		if i+1 >= len(v) {
			return v[len(v)-1]
		}
		return v[i] + (pos-float64(i))*(v[i+1]-v[i])
	}
	return Spread{N: len(v), Min: v[0], P10: q(0.1), Median: q(0.5), P90: q(0.9), Max: v[len(v)-1]}
}

// StopStats are a boot's stop times in µs and their ratios.
type StopStats struct {
	// Empty is the empty stop after the same work before it as apply's,
	// EmptyBare the one without it (back to back), Rewrite the stop that
	// writes the jumps' own bytes back (back to back; N 0: not measured).
	Apply, Undo, Empty, EmptyBare, Rewrite Spread
	// ApplyWork and UndoWork are the time in the stop's callback, µs.
	ApplyWork, UndoWork Spread
	// ApplyRatio and UndoRatio are the per-cycle ratios to the cycle's
	// empty stop.
	ApplyRatio, UndoRatio Spread
	// ApplyBareRatio is apply's per-cycle ratio to the bare empty stop.
	ApplyBareRatio Spread
	// ApplyPasses and UndoPasses count the stops that needed the pass
	// over every task, of Passes stops that said.
	ApplyPasses, UndoPasses, Passes int
	// ApplyTasks and UndoTasks are the tasks walked inside the stop (N 0:
	// the helper does not say).
	ApplyTasks, UndoTasks Spread
}

// Stops computes the stop statistics of the run's cycles that applied
// and undid.
func (r *CycleRun) Stops() StopStats {
	var a, u, e, eb, rw, aw, uw, ar, ur, abr, at, ut []float64
	var st StopStats
	us := func(ns int64) float64 {
		if ns < 0 {
			return -1
		}
		return float64(ns) / 1e3
	}
	ratio := func(x, y int64) float64 {
		if x < 0 || y <= 0 {
			return -1
		}
		return float64(x) / float64(y)
	}
	for _, c := range r.Cycles {
		if c.ApplyRC != 0 || c.UndoRC != 0 {
			continue
		}
		a, u, e, eb = append(a, us(c.ApplyNS)), append(u, us(c.UndoNS)), append(e, us(c.EmptyNS)), append(eb, us(c.EmptyBareNS))
		rw = append(rw, us(c.RewriteNS))
		aw, uw = append(aw, us(c.ApplyWorkNS)), append(uw, us(c.UndoWorkNS))
		ar, ur = append(ar, ratio(c.ApplyNS, c.EmptyNS)), append(ur, ratio(c.UndoNS, c.EmptyNS))
		abr = append(abr, ratio(c.ApplyNS, c.EmptyBareNS))
		at, ut = append(at, float64(c.ApplyTasks)), append(ut, float64(c.UndoTasks))
		if c.ApplyPass >= 0 && c.UndoPass >= 0 {
			st.Passes++
			st.ApplyPasses += int(c.ApplyPass)
			st.UndoPasses += int(c.UndoPass)
		}
	}
	st.Apply, st.Undo, st.Empty, st.EmptyBare, st.Rewrite = SpreadOf(a), SpreadOf(u), SpreadOf(e), SpreadOf(eb), SpreadOf(rw)
	st.ApplyWork, st.UndoWork = SpreadOf(aw), SpreadOf(uw)
	st.ApplyRatio, st.UndoRatio, st.ApplyBareRatio = SpreadOf(ar), SpreadOf(ur), SpreadOf(abr)
	st.ApplyTasks, st.UndoTasks = SpreadOf(at), SpreadOf(ut)
	return st
}

// WriteStopTable prints a run's stop statistics: one row per measure
// with its median and spread, then the ratios of the medians.
func WriteStopTable(w io.Writer, r *CycleRun) error {
	st := r.Stops()
	ok := st.Apply.N
	fmt.Fprintf(w, "%d vCPUs, %d tasks: %d of %d cycles applied and undone in one boot (%s)\n",
		r.Options.SMP, r.Tasks, ok, r.Options.Cycles, r.Duration.Round(1e9))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tmin\tp10\tp90\tmax\t")
	row := func(name string, s Spread, format string) {
		cells := []string{name}
		for _, v := range []float64{s.Median, s.Min, s.P10, s.P90, s.Max} {
			if s.N == 0 {
				cells = append(cells, "-")
			} else {
				cells = append(cells, fmt.Sprintf(format, v))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	row("apply stop µs", st.Apply, "%.0f")
	row("undo stop µs", st.Undo, "%.0f")
	row("empty stop µs (median of 7 after apply's pre-stop work)", st.Empty, "%.0f")
	row("empty stop µs (median of 7, back to back)", st.EmptyBare, "%.0f")
	if st.Rewrite.N > 0 {
		row("stop writing the jumps' own bytes back µs (median of 7, back to back)", st.Rewrite, "%.0f")
	}
	row("apply work µs (in the callback)", st.ApplyWork, "%.0f")
	row("undo work µs", st.UndoWork, "%.0f")
	row("apply / empty (per cycle)", st.ApplyRatio, "%.2fx")
	row("undo / empty (per cycle)", st.UndoRatio, "%.2fx")
	row("apply / back-to-back empty (per cycle)", st.ApplyBareRatio, "%.2fx")
	row("tasks walked in the apply stop", st.ApplyTasks, "%.0f")
	row("tasks walked in the undo stop", st.UndoTasks, "%.0f")
	if err := tw.Flush(); err != nil {
		return err
	}
	of := func(x, y Spread) string {
		if x.N == 0 || y.N == 0 || y.Median == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", x.Median/y.Median)
	}
	if _, err := fmt.Fprintf(w, "ratio of medians: apply/empty %s, undo/empty %s, apply/back-to-back empty %s\n",
		of(st.Apply, st.Empty), of(st.Undo, st.Empty), of(st.Apply, st.EmptyBare)); err != nil {
		return err
	}
	if st.Rewrite.N > 0 {
		if _, err := fmt.Fprintf(w, "ratio of medians: stop writing code/back-to-back empty %s, apply/stop writing code %s\n",
			of(st.Rewrite, st.EmptyBare), of(st.Apply, st.Rewrite)); err != nil {
			return err
		}
	}
	if st.Passes == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "stops that needed the pass over every task: apply %d, undo %d, of %d cycles\n", st.ApplyPasses, st.UndoPasses, st.Passes)
	return err
}

// WriteStopSummary prints one line of medians per run.
func WriteStopSummary(w io.Writer, runs []*CycleRun) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "vCPUs\ttasks\tcycles\tapply µs\tundo µs\tempty µs\tback-to-back empty µs\tapply/empty\tmedian apply/median empty\tmedian apply/median back-to-back\twriting-code µs\ttasks walked (apply)\tapply passes\t")
	for _, r := range runs {
		st := r.Stops()
		med := func(s Spread, format string) string {
			if s.N == 0 {
				return "-"
			}
			return fmt.Sprintf(format, s.Median)
		}
		ofMedians := func(x, y Spread) string {
			if x.N == 0 || y.N == 0 || y.Median <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", x.Median/y.Median)
		}
		passes := "-"
		if st.Passes > 0 {
			passes = fmt.Sprintf("%d/%d", st.ApplyPasses, st.Passes)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Options.SMP, r.Tasks, st.Apply.N,
			med(st.Apply, "%.0f"), med(st.Undo, "%.0f"), med(st.Empty, "%.0f"), med(st.EmptyBare, "%.0f"),
			med(st.ApplyRatio, "%.2fx"), ofMedians(st.Apply, st.Empty), ofMedians(st.Apply, st.EmptyBare),
			med(st.Rewrite, "%.0f"), med(st.ApplyTasks, "%.0f"), passes)
	}
	return tw.Flush()
}
