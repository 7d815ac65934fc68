package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/livesplice/livesplice/guest"
)

// CycleOptions says how RunCycles runs the demo update's apply/undo cycles
// in one boot (scenario "cycles", guest program cmd/livesplice-cycles).
type CycleOptions struct {
	// Cycles is how many times the update is applied and undone.
	Cycles int
	// Tasks: threads are started asleep before the cycles until the guest
	// has this many tasks (0: none are).
	Tasks int
	// Read runs a reader of /proc/cmdline on every vCPU during the cycles,
	// which checks every answer.
	Read bool
	// Rewrite measures after each apply the floor of a stop that writes
	// code: stops that write the jumps' own bytes back (Cycle.RewriteNS).
	Rewrite bool
	// SMP and MemoryMB size the guest (guest.Config's defaults if 0).
	SMP, MemoryMB int
	// Log receives the guest's console output as it arrives.
	Log io.Writer
}

// Cycle is what one apply/undo cycle measured. Times are in ns; -1 is
// unknown (a helper that does not report it, or a step that failed).
type Cycle struct {
	N               int
	ApplyRC, UndoRC int
	// EmptyNS is the median of the 7 empty stop_machines that apply's
	// calibrate ran just before this apply, each after the same work
	// before the stop as apply's (the walk of every task, the snapshot and
	// the pass); EmptyBareNS is the median of 7 more without that work,
	// back to back.
	EmptyNS, EmptyBareNS, ApplyNS, UndoNS int64
	// RewriteNS (CycleOptions.Rewrite) is the median of 7 stops back to
	// back, after the apply, that write the jumps' own bytes back and do
	// nothing else: the floor of a stop that writes code.
	RewriteNS int64
	// ApplyWorkNS and UndoWorkNS are the time spent in the stop's
	// callback on the CPU that patches.
	ApplyWorkNS, UndoWorkNS int64
	// ApplyTasks and UndoTasks are the tasks walked inside the stop.
	ApplyTasks, UndoTasks int64
	// ApplyPass and UndoPass are 1 when the stop needed the pass over
	// every task (some CPU ran another task between the snapshot and the
	// stop), 0 when it looked only at the CPUs' tasks of the snapshot.
	ApplyPass, UndoPass int64
	// ApplyMS and UndoMS are how long livesplice apply and undo ran.
	ApplyMS, UndoMS int64
	// Reads of /proc/cmdline while applied, while undone, overlapping an
	// apply or an undo, and wrong answers.
	AppliedReads, UndoneReads, MovingReads, Wrong int64
}

// CycleRun is the outcome of one boot of RunCycles.
type CycleRun struct {
	Options CycleOptions
	// Tasks is how many tasks the guest had when the cycles began.
	Tasks  int
	Cycles []Cycle
	// Finished: the guest program ran every cycle and reported its totals
	// (Reads, Wrong: every read, before the first cycle too).
	Finished     bool
	Reads, Wrong int64
	// WrongAnswers are the first wrong answers as the readers printed them.
	WrongAnswers []string
	// KernelProblems are the kernel log's warnings, BUGs and oopses, from
	// every record logged during the run and the final dmesg.
	KernelProblems []string
	// Alive: the guest ran the scenario's steps after the cycles and
	// powered off normally.
	Alive bool
	// Output is the cycles step's output without its per-cycle lines and
	// kernel log records: what went wrong, if anything did.
	Output string
	// Duration is the whole boot's; CyclesDuration the cycles'.
	Duration, CyclesDuration time.Duration
}

// CyclesBinary builds the static guest program that runs the cycles.
func (s Setup) CyclesBinary(ctx context.Context) (string, error) {
	return s.goBuild(ctx, "./cmd/livesplice-cycles", "livesplice-cycles")
}

// RunCycles boots the target kernel once with the demo pack and runs
// o.Cycles apply/undo cycles. The error is the boot's (the guest did not
// power off, crashed, timed out); the run is returned whenever the guest
// printed anything, with what it got through.
func (s Setup) RunCycles(ctx context.Context, bin, cyclesBin, demoPack string, o CycleOptions) (*CycleRun, error) {
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	cfg := guest.Config{
		SMP: o.SMP, MemoryMB: o.MemoryMB, Log: o.Log,
		Append: []string{"CYCLES=" + strconv.Itoa(o.Cycles), "TASKS=" + strconv.Itoa(o.Tasks),
			"READ=" + flag(o.Read), "REWRITE=" + flag(o.Rewrite)},
		Timeout: 5*time.Minute + time.Duration(o.Cycles)*30*time.Second,
	}
	res, err := s.Boot(ctx, bin, map[string]string{"demo.tar.xz": demoPack}, "cycles", cfg,
		guest.File{Path: "/bin/livesplice-cycles", Mode: 0o755, Source: cyclesBin})
	if res == nil {
		return nil, err
	}
	run := parseCycles(res.ScenarioOutput())
	run.Options, run.Duration = o, res.Duration
	run.Alive = run.Alive && err == nil && res.ExitCode == 0
	return run, err
}

// parseCycles reads the scenario's output.
func parseCycles(out string) *CycleRun {
	run := &CycleRun{}
	steps := Steps(out)
	var kmsg, rest []string
	for _, line := range strings.Split(steps["cycles"], "\n") {
		word, args, _ := strings.Cut(line, " ")
		switch word {
		case "@@cycle":
			run.Cycles = append(run.Cycles, parseCycle(args))
		case "@@kmsg":
			kmsg = append(kmsg, args)
		case "@@wrong":
			run.WrongAnswers = append(run.WrongAnswers, args)
		case "@@tasks":
			run.Tasks, _ = strconv.Atoi(args)
		case "@@cycles-done":
			run.Finished = true
			kv := fields(args)
			run.Reads, run.Wrong = kv.int("reads"), kv.int("wrong")
			sec, _ := strconv.ParseFloat(kv["seconds"], 64)
			run.CyclesDuration = time.Duration(sec * float64(time.Second))
		default:
			rest = append(rest, line)
		}
	}
	run.Output = strings.TrimSpace(strings.Join(rest, "\n"))
	run.KernelProblems = KernelProblems(strings.Join(kmsg, "\n") + "\n" + steps["dmesg"])
	_, end := steps["end"]
	run.Alive = end && strings.HasPrefix(steps["alive"], "alive")
	return run
}

// parseCycle reads an "@@cycle N key=value..." line (without "@@cycle ").
func parseCycle(args string) Cycle {
	n, rest, _ := strings.Cut(args, " ")
	c := Cycle{}
	c.N, _ = strconv.Atoi(n)
	kv := fields(rest)
	c.ApplyRC, c.UndoRC = int(kv.int("apply_rc")), int(kv.int("undo_rc"))
	c.EmptyNS, c.ApplyNS, c.UndoNS = kv.int("empty_ns"), kv.int("apply_ns"), kv.int("undo_ns")
	c.EmptyBareNS, c.RewriteNS = kv.int("empty_bare_ns"), kv.int("rewrite_ns")
	c.ApplyTasks, c.UndoTasks = kv.int("apply_tasks"), kv.int("undo_tasks")
	c.ApplyPass, c.UndoPass = kv.int("apply_pass"), kv.int("undo_pass")
	c.ApplyWorkNS, c.UndoWorkNS = kv.int("apply_work_ns"), kv.int("undo_work_ns")
	c.ApplyMS, c.UndoMS = kv.int("apply_ms"), kv.int("undo_ms")
	c.AppliedReads, c.UndoneReads = kv.int("applied_reads"), kv.int("undone_reads")
	c.MovingReads, c.Wrong = kv.int("moving_reads"), kv.int("wrong")
	return c
}

// values are an output line's key=value words.
type values map[string]string

func fields(s string) values {
	kv := make(values)
	for _, w := range strings.Fields(s) {
		if k, v, ok := strings.Cut(w, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// int is key's integer value; -1 if it is "-" or missing.
func (kv values) int(key string) int64 {
	n, err := strconv.ParseInt(kv[key], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// Failures are what a soak must not show, each said plainly: a cycle that
// did not apply or undo, a wrong answer, a phase without reads (with
// o.Read), a kernel problem, a guest that did not survive.
func (r *CycleRun) Failures() []string {
	var f []string
	if len(r.Cycles) != r.Options.Cycles || !r.Finished {
		f = append(f, fmt.Sprintf("%d of %d cycles ran:\n%s", len(r.Cycles), r.Options.Cycles, r.Output))
	}
	var applied, undone, wrong int64
	for _, c := range r.Cycles {
		if c.ApplyRC != 0 || c.UndoRC != 0 {
			f = append(f, fmt.Sprintf("cycle %d: apply exited %d, undo %d", c.N, c.ApplyRC, c.UndoRC))
		}
		applied += c.AppliedReads
		undone += c.UndoneReads
		wrong += c.Wrong
	}
	if wrong > 0 || r.Wrong > 0 {
		f = append(f, fmt.Sprintf("%d wrong answers (%d during the cycles), the first: %s", r.Wrong, wrong, strings.Join(r.WrongAnswers, "; ")))
	}
	if r.Options.Read && (applied == 0 || undone == 0) {
		f = append(f, fmt.Sprintf("reads while applied: %d, while undone: %d; want both > 0", applied, undone))
	}
	if len(r.KernelProblems) > 0 {
		f = append(f, "kernel log problems:\n"+strings.Join(r.KernelProblems, "\n"))
	}
	if !r.Alive {
		f = append(f, "the guest did not finish the scenario after the cycles")
	}
	return f
}

// CycleInputs builds what RunCycles boots with: the guest's livesplice,
// its cycles program and the demo pack.
func (s Setup) CycleInputs(ctx context.Context) (bin, cyclesBin, demoPack string, err error) {
	if bin, err = s.Binary(ctx); err != nil {
		return "", "", "", err
	}
	if cyclesBin, err = s.CyclesBinary(ctx); err != nil {
		return "", "", "", err
	}
	if demoPack, _, err = s.Pack(ctx, Cmdline, "demo.tar.xz"); err != nil {
		return "", "", "", err
	}
	return bin, cyclesBin, demoPack, nil
}

// WorkSetup is DefaultSetup with the work directory made when work is ""
// (a temporary one, which cleanup removes).
func WorkSetup(repo, cacheDir, work string) (s Setup, cleanup func(), err error) {
	cleanup = func() {}
	if work == "" {
		if work, err = os.MkdirTemp("", "livesplice-cycles-"); err != nil {
			return Setup{}, nil, err
		}
		dir := work
		cleanup = func() { os.RemoveAll(dir) }
	}
	return DefaultSetup(repo, cacheDir, work), cleanup, nil
}
