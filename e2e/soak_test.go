package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/livesplice/livesplice/demo"
)

// TestSoak applies and undoes the demo fix (cmdline_proc_show) 100 times
// in one boot while a reader on every vCPU reads /proc/cmdline in a tight
// loop and checks each answer: the patched text while applied, the
// original while undone, either across an apply or an undo. `make soak`
// runs the same for 1,000 cycles (cmd/livesplice-soak).
func TestSoak(t *testing.T) {
	s, bin, packPath := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	cyclesBin, err := s.CyclesBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const cycles = 100
	r, err := s.RunCycles(ctx, bin, cyclesBin, packPath, demo.CycleOptions{Cycles: cycles, Read: true})
	if r != nil {
		var applied, undone int64
		for _, c := range r.Cycles {
			applied, undone = applied+c.AppliedReads, undone+c.UndoneReads
		}
		st := r.Stops()
		t.Logf("%d cycles in %s (boot %s): %d reads (%d while applied, %d while undone), %d wrong; apply stop median %.0f us, %.2fx the empty stop_machine before it (median of per-cycle ratios)",
			len(r.Cycles), r.CyclesDuration.Round(time.Second), r.Duration.Round(time.Second), r.Reads, applied, undone, r.Wrong, st.Apply.Median, st.ApplyRatio.Median)
	}
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	for _, f := range r.Failures() {
		t.Error(f)
	}
}
