package coverage

import (
	"fmt"
	"strings"
)

// Outcome is where a patch ended.
type Outcome struct {
	Category Category
	Reason   string
}

// Counted says how a patch counts in the first line of the report.
type Counted int

const (
	// InM: one of the M code-only patches; Shipped ones are also in N.
	InM Counted = iota
	// NotCodeOnly: refused for changed data or struct layout, and the
	// manifest says the patch may change data (listed apart).
	NotCodeOnly
	// NotCompiling: does not compile alone against the pre tree.
	NotCompiling
	// Pending: built, its guest run has not happened yet.
	Pending
)

// Outcome returns where the patch ended: its build's category, or, for a
// built pack, its guest run's.
func (r *Record) Outcome() Outcome {
	if r.Build.Category != Built {
		return Outcome{r.Build.Category, r.Build.Reason}
	}
	if r.Guest == nil {
		return Outcome{Built, ""}
	}
	return r.Guest.outcome()
}

// Counted says how the patch counts.
func (r *Record) Counted() Counted {
	o := r.Outcome()
	switch {
	case o.Category == Built:
		return Pending
	case o.Category == NotAlone:
		return NotCompiling
	case r.DataChange == "maybe" && r.dataRefusal():
		return NotCodeOnly
	}
	return InM
}

// dataRefusal reports whether one of the build's refusals is for changed
// data or struct layout (it decides the category, see precedes).
func (r *Record) dataRefusal() bool {
	return r.Build.Category.DataOrLayout()
}

// IsShipped reports whether the patch counts in N.
func (r *Record) IsShipped() bool {
	c := r.Outcome().Category
	return r.Counted() == InM && (c == Shipped || c == ShippedWaited || c == NothingToDo)
}

// The guest's step names (see the scenario, coverage.sh).
const (
	stepModules  = "modules"
	stepModLog   = "modules-log"
	stepReload   = "reload"
	stepCheck    = "check"
	stepApply    = "apply"
	stepExercise = "exercise"
	stepUndo     = "undo"
	stepLog      = "dmesg"
)

// ExerciseOK is the exercise's last line when every part of it worked.
const ExerciseOK = "exercise ok"

// outcome classifies a guest run by the steps' exit status: the CLI's
// exit codes are its contract (README, cmd/livesplice).
func (g *GuestRun) outcome() Outcome {
	if g.Crashed != "" {
		when := g.Crashed
		if !strings.HasPrefix(when, "after ") && when != "between steps" {
			when = "during " + when
		}
		return Outcome{GuestCrashed, fmt.Sprintf("%s: %s", when, lastLine(g.stepOutput(g.Crashed)))}
	}
	if len(g.Problems) > 0 {
		return Outcome{KernelProblem, g.Problems[0]}
	}
	waited := ""
	if s := g.Step(stepModules); s != nil && s.RC != 0 {
		// The update is applied anyway: it waits for its module.
		waited = lastLine(s.Output)
		if g.Step(stepCheck) == nil {
			return Outcome{ModuleLoad, waited}
		}
	}
	for _, r := range []struct {
		step string
		c    Category
	}{{stepCheck, CheckRefused}, {stepApply, ApplyRefused}} {
		s := g.Step(r.step)
		if s == nil {
			return Outcome{GuestCrashed, "no " + r.step + " step in the transcript"}
		}
		if s.RC != 0 {
			return Outcome{r.c, fmt.Sprintf("exit %d (%s): %s", s.RC, ExitMeaning(s.RC), toolError(s.Output))}
		}
	}
	if s := g.Step(stepExercise); s == nil || s.RC != 0 || lastLine(s.Output) != ExerciseOK {
		out := ""
		if s != nil {
			out = lastLine(s.Output)
		}
		return Outcome{GuestBroken, out}
	}
	if s := g.Step(stepUndo); s == nil || s.RC != 0 {
		reason := "no undo step"
		if s != nil {
			reason = fmt.Sprintf("exit %d (%s): %s", s.RC, ExitMeaning(s.RC), toolError(s.Output))
		}
		return Outcome{UndoFailed, reason}
	}
	if waited != "" {
		if g.Step(stepReload) == nil {
			return Outcome{GuestCrashed, "no reload step in the transcript"}
		}
		return Outcome{ShippedWaited, waited}
	}
	return Outcome{Shipped, ""}
}

func (g *GuestRun) stepOutput(name string) string {
	if s := g.Step(name); s != nil {
		return s.Output
	}
	return ""
}

// exitMeanings are the livesplice CLI's exit codes (README).
var exitMeanings = map[int]string{
	1: "other error", 2: "usage", 3: "bad pack", 4: "another kernel build", 5: "missing or ambiguous symbol",
	6: "busy", 7: "code mismatch", 8: "wrong state", 9: "the kernel refused the module",
	10: "cannot be turned into an update", 11: "nothing to do at run time", 12: "does not compile", 124: "killed by its time limit", 143: "killed by its time limit",
}

// ExitMeaning says what a livesplice exit code means.
func ExitMeaning(rc int) string {
	if m, ok := exitMeanings[rc]; ok {
		return m
	}
	return "exit code " + fmt.Sprint(rc)
}

// toolError is the "livesplice: ..." line of a command's output, else its
// last line.
func toolError(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if msg, ok := strings.CutPrefix(line, "livesplice: "); ok {
			return msg
		}
	}
	return lastLine(out)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}
