package demo

import (
	"strings"
	"testing"
)

// cyclesOutput is a guest's output as the cycles scenario prints it, with
// kernel log records at the dmesg step.
func cyclesOutput(cycleLines, kmsg, dmesg string) string {
	return "\n@@step cycles\n@@tasks 61\n@@readers 2\n" + cycleLines + kmsg +
		"@@cycles-done cycles=2 seconds=12.5 reads=900 wrong=0\n@@rc 0\n" +
		"\n@@step alive\nalive\nconsole=ttyS0 secret=hunter2\n\n@@step dmesg\n" + dmesg + "\n@@step end\n"
}

const twoCycles = "@@cycle 1 apply_rc=0 undo_rc=0 empty_ns=100000 empty_bare_ns=40000 rewrite_ns=80000 apply_ns=120000 apply_tasks=3 apply_pass=0 apply_work_ns=30000 undo_ns=110000 undo_tasks=2 undo_pass=1 undo_work_ns=20000 apply_ms=1700 undo_ms=200 applied_reads=10 undone_reads=20 moving_reads=400 wrong=0\n" +
	"@@cycle 2 apply_rc=0 undo_rc=0 empty_ns=200000 apply_ns=200000 apply_tasks=- undo_ns=150000 undo_tasks=- apply_ms=1800 undo_ms=210 applied_reads=11 undone_reads=21 moving_reads=401 wrong=0\n"

func TestParseCycles(t *testing.T) {
	r := parseCycles(cyclesOutput(twoCycles, "@@kmsg livesplice_demo_cmdline: applied demo-cmdline\n", "[    1.0] booted\n"))
	r.Options = CycleOptions{Cycles: 2, Read: true}
	if len(r.Cycles) != 2 || r.Tasks != 61 || !r.Finished || r.Reads != 900 || !r.Alive {
		t.Fatalf("parsed %+v", r)
	}
	c := r.Cycles[1]
	if c.N != 2 || c.EmptyNS != 200000 || c.ApplyNS != 200000 || c.UndoNS != 150000 || c.ApplyTasks != -1 || c.UndoTasks != -1 || c.UndoneReads != 21 || c.ApplyWorkNS != -1 ||
		c.EmptyBareNS != -1 || c.ApplyPass != -1 {
		t.Errorf("cycle 2 parsed as %+v", c)
	}
	if c := r.Cycles[0]; c.EmptyBareNS != 40000 || c.RewriteNS != 80000 || c.ApplyPass != 0 || c.UndoPass != 1 {
		t.Errorf("cycle 1 parsed as %+v", c)
	}
	if f := r.Failures(); len(f) > 0 {
		t.Errorf("a clean run fails: %q", f)
	}
	st := r.Stops()
	if st.ApplyRatio.Median != 1.1 || st.ApplyTasks.N != 1 || st.ApplyTasks.Median != 3 || st.Empty.Max != 200 || st.ApplyWork.N != 1 || st.ApplyWork.Median != 30 ||
		st.EmptyBare.N != 1 || st.EmptyBare.Median != 40 || st.ApplyBareRatio.Median != 3 || st.Passes != 1 || st.ApplyPasses != 0 || st.UndoPasses != 1 {
		t.Errorf("stops %+v", st)
	}
	var b strings.Builder
	if err := WriteStopTable(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "ratio of medians: apply/empty 1.07x, undo/empty 0.87x, apply/back-to-back empty 4.00x\n"+
		"ratio of medians: stop writing code/back-to-back empty 2.00x, apply/stop writing code 2.00x\n"+
		"stops that needed the pass over every task: apply 0, undo 1, of 1 cycles\n") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestCycleFailures(t *testing.T) {
	tests := []struct {
		name, cycles, kmsg, dmesg string
		read                      bool
		want                      string
	}{
		{"apply refused", strings.Replace(twoCycles, "apply_rc=0 undo_rc=0 empty_ns=200000", "apply_rc=6 undo_rc=-1 empty_ns=-", 1), "", "", true, "cycle 2: apply exited 6"},
		{"wrong answer", twoCycles + "@@wrong cpu=1 phase=5..5 got=\"x\" err=<nil>\n", "", "", true, "wrong answers"},
		{"warning in a record", twoCycles, "@@kmsg WARNING: CPU: 1 PID: 80 at kernel/x.c:1\n", "", true, "kernel log problems"},
		{"oops at the end", twoCycles, "", "BUG: unable to handle page fault", true, "kernel log problems"},
		{"no reads while undone", strings.ReplaceAll(strings.ReplaceAll(twoCycles, "undone_reads=20", "undone_reads=0"), "undone_reads=21", "undone_reads=0"), "", "", true, "while undone: 0"},
		{"one cycle missing", strings.SplitAfter(twoCycles, "\n")[0], "", "", false, "1 of 2 cycles ran"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := parseCycles(cyclesOutput(tt.cycles, tt.kmsg, tt.dmesg))
			r.Options = CycleOptions{Cycles: 2, Read: tt.read}
			if strings.Contains(tt.cycles, "@@wrong") {
				r.Wrong = 1
			}
			f := strings.Join(r.Failures(), "\n")
			if !strings.Contains(f, tt.want) {
				t.Errorf("failures %q, want %q", f, tt.want)
			}
		})
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{-1, -1}, Spread{}},
		{[]float64{5}, Spread{N: 1, Min: 5, P10: 5, Median: 5, P90: 5, Max: 5}},
		{[]float64{4, -1, 1, 3, 2}, Spread{N: 4, Min: 1, P10: 1.3, Median: 2.5, P90: 3.7, Max: 4}},
	}
	for _, tt := range tests {
		got := SpreadOf(tt.in)
		near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
		if got.N != tt.want.N || !near(got.Min, tt.want.Min) || !near(got.P10, tt.want.P10) || !near(got.Median, tt.want.Median) || !near(got.P90, tt.want.P90) || !near(got.Max, tt.want.Max) {
			t.Errorf("SpreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
