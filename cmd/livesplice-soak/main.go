// Command livesplice-soak applies and undoes the demo fix (it replaces
// cmdline_proc_show) many times in one boot of Debian's kernel in qemu
// while a reader on every vCPU reads /proc/cmdline as fast as it can and
// checks each answer is the original or the patched text, as the phase
// allows. It prints the cycles, reads, wrong answers and how long it took,
// and fails on any cycle that did not apply or undo, any wrong answer, a
// kernel warning or oops, or a guest that did not survive. Run it with
// `make soak` (1,000 cycles); e2e's TestSoak runs 100.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/internal/cache"
)

func main() {
	repo := flag.String("repo", ".", "livesplice repository")
	cacheDir := flag.String("cache", cache.Dir(), "cache holding trees/RELEASE")
	work := flag.String("work", "", "work directory (default: a temporary one)")
	console := flag.String("console", "", "write the guest's console output to this file as it arrives")
	var o demo.CycleOptions
	flag.IntVar(&o.Cycles, "cycles", 1000, "apply/undo cycles")
	flag.IntVar(&o.SMP, "vcpus", 2, "guest vCPUs")
	flag.IntVar(&o.Tasks, "tasks", 0, "sleeping threads are started until the guest has this many tasks")
	flag.Parse()
	o.Read = true
	if err := run(*repo, *cacheDir, *work, *console, o); err != nil {
		fmt.Fprintln(os.Stderr, "livesplice-soak:", err)
		os.Exit(1)
	}
}

func run(repo, cacheDir, work, console string, o demo.CycleOptions) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	s, cleanup, err := demo.WorkSetup(repo, cacheDir, work)
	if err != nil {
		return err
	}
	defer cleanup()
	if console != "" {
		f, err := os.Create(console)
		if err != nil {
			return err
		}
		defer f.Close()
		o.Log = f
	}
	start := time.Now()
	bin, cyclesBin, packPath, err := s.CycleInputs(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("== built in %s; booting %s with %d vCPUs for %d cycles\n", time.Since(start).Round(time.Second), s.Kernel, o.SMP, o.Cycles)
	r, err := s.RunCycles(ctx, bin, cyclesBin, packPath, o)
	if r != nil {
		report(os.Stdout, r)
	}
	if err != nil {
		return err
	}
	if f := r.Failures(); len(f) > 0 {
		return fmt.Errorf("soak failed:\n%s", strings.Join(f, "\n"))
	}
	return nil
}

func report(w io.Writer, r *demo.CycleRun) {
	var applied, undone, moving int64
	ok := 0
	for _, c := range r.Cycles {
		applied += c.AppliedReads
		undone += c.UndoneReads
		moving += c.MovingReads
		if c.ApplyRC == 0 && c.UndoRC == 0 {
			ok++
		}
	}
	fmt.Fprintf(w, "cycles:        %d of %d applied and undone (%d vCPUs, %d tasks)\n", ok, r.Options.Cycles, r.Options.SMP, r.Tasks)
	fmt.Fprintf(w, "reads:         %d (while applied %d, while undone %d, across an apply or undo %d)\n", r.Reads, applied, undone, moving)
	fmt.Fprintf(w, "wrong answers: %d\n", r.Wrong)
	fmt.Fprintf(w, "kernel log:    %d problem(s)\n", len(r.KernelProblems))
	if st := r.Stops(); st.Passes > 0 {
		fmt.Fprintf(w, "stops:         the pass over every task in %d applies and %d undos of %d; the snapshot's tasks alone in the rest\n",
			st.ApplyPasses, st.UndoPasses, st.Passes)
	}
	fmt.Fprintf(w, "guest alive:   %v\n", r.Alive)
	fmt.Fprintf(w, "duration:      %s cycles, %s the whole boot\n", r.CyclesDuration.Round(time.Second), r.Duration.Round(time.Second))
}
