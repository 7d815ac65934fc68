package coverage

import (
	"strings"
	"testing"
)

// transcript is the coverage scenario's output for three packs: one that
// shipped (with a kernel message in the middle of its apply), one whose
// check was refused, and one whose apply crashed the guest.
const transcript = `
@@cov - boot
[    0.000000] Linux version 6.1.0-53-amd64
@@rc - boot 0 3.10 3.12

@@begin c-ok-1
@@cov c-ok-1 check
c-ok-1 fits the running kernel (code read from /proc/kcore):
  f at 0xffffffff81000000: 100 bytes of pack code match 100 running bytes, 2 references resolved
@@rc c-ok-1 check 0 3.20 5.70

@@cov c-ok-1 apply
[   6.000000] random: crng init done
applied c-ok-1: f; stop 1234 us (2.00x empty stop_machine 617 us)
@@rc c-ok-1 apply 0 5.70 7.00

@@cov c-ok-1 exercise
exercise ok
@@rc c-ok-1 exercise 0 7.00 8.00

@@cov c-ok-1 reached
calls of the replaced functions (1 of 2 traced): 3
@@rc c-ok-1 reached 0 8.00 8.10

@@cov c-ok-1 undo
undone c-ok-1: f restored; stop 800 us (1.30x empty stop_machine 617 us)
@@rc c-ok-1 undo 0 8.10 8.30

@@cov c-ok-1 dmesg
[    7.000000] livesplice_c_ok_1: applied c-ok-1
@@rc c-ok-1 dmesg 0 8.30 8.31

@@end c-ok-1

@@begin c-bad-2
@@cov c-bad-2 check
livesplice: update c-bad-2 refused (code mismatch): g at 0x10: ...
@@rc c-bad-2 check 7 8.40 9.00

@@cov c-bad-2 dmesg
[    9.000000] WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo+0x0/0x10
@@rc c-bad-2 dmesg 0 9.00 9.01

@@end c-bad-2

@@begin c-crash-3
@@cov c-crash-3 modules
@@rc c-crash-3 modules 0 9.10 9.50

@@cov c-crash-3 check
ok
@@rc c-crash-3 check 0 9.50 10.00

@@cov c-crash-3 apply
[   10.5] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   10.5] Oops: 0000 [#1] PREEMPT SMP NOPTI
`

// hung is a pack whose guest stopped between two steps.
const hung = `
@@begin c-hang-4
@@cov c-hang-4 apply
applied c-hang-4: f; stop 10 us
@@rc c-hang-4 apply 0 1.00 2.00
[   12.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:300]
`

func TestParseTranscript(t *testing.T) {
	tr := ParseTranscript(transcript)
	if tr.Boot == nil || tr.Boot.RC != 0 || !strings.Contains(tr.Boot.Output, "Linux version") {
		t.Errorf("boot step %+v", tr.Boot)
	}
	if len(tr.Packs) != 3 {
		t.Fatalf("%d packs, want 3", len(tr.Packs))
	}
	ok, bad, crash := tr.Packs[0], tr.Packs[1], tr.Packs[2]
	if ok.ID != "c-ok-1" || !ok.Ended || ok.Dirty || ok.Open != "" || len(ok.Steps) != 6 {
		t.Errorf("first pack %+v", ok)
	}
	if s := ok.Steps[0]; s.Name != "check" || s.RC != 0 || s.Seconds < 2.49 || s.Seconds > 2.51 {
		t.Errorf("first step %+v, want check, rc 0, 2.5 s", s)
	}
	if bad.Steps[0].RC != 7 {
		t.Errorf("refused check rc %d, want 7", bad.Steps[0].RC)
	}
	if crash.Ended || crash.Open != "apply" || !strings.Contains(crash.OpenOutput, "Oops") {
		t.Errorf("crashed pack %+v: want open apply with the oops", crash)
	}
}

func TestGuestOutcome(t *testing.T) {
	tr := ParseTranscript(transcript)
	tests := []struct {
		p      *PackRun
		want   Category
		reason string
	}{
		{tr.Packs[0], Shipped, ""},
		// A warning in the pack's kernel log decides over its refusal.
		{tr.Packs[1], KernelProblem, "WARNING: CPU: 0"},
		{tr.Packs[2], GuestCrashed, "during apply"},
	}
	for _, tc := range tests {
		g := tc.p.GuestRun()
		o := g.outcome()
		if o.Category != tc.want || !strings.Contains(o.Reason, tc.reason) {
			t.Errorf("%s: %s (%s), want %s (%q)", tc.p.ID, o.Category, o.Reason, tc.want, tc.reason)
		}
	}
	if g := tr.Packs[0].GuestRun(); g.ApplyStopUS != 1234 {
		t.Errorf("apply stop %d us, want 1234", g.ApplyStopUS)
	}
	if n, ok := calls(tr.Packs[0].GuestRun().Step("reached")); !ok || n != 3 {
		t.Errorf("calls = %d, %v, want 3", n, ok)
	}
	for _, out := range []string{"calls of the replaced functions (0 of 1 traced): -", "calls of the replaced functions: 5"} {
		if n, ok := calls(&Step{Output: out}); ok {
			t.Errorf("calls(%q) = %d, true: want nothing traced", out, n)
		}
	}
	h := ParseTranscript(hung).Packs[0].GuestRun()
	if o := h.outcome(); o.Category != GuestCrashed || o.Reason != "after apply: [   12.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:300]" {
		t.Errorf("hung pack: %s (%s)", o.Category, o.Reason)
	}
	if len(h.Problems) != 1 {
		t.Errorf("hung pack: problems %q, want the soft lockup", h.Problems)
	}
}

// outcome's decisions, step by step.
func TestGuestOutcomeSteps(t *testing.T) {
	okSteps := func(change func([]Step) []Step) []Step {
		s := []Step{{Name: stepCheck}, {Name: stepApply}, {Name: stepExercise, Output: ExerciseOK}, {Name: stepUndo}, {Name: stepLog}}
		return change(s)
	}
	set := func(i, rc int, out string) func([]Step) []Step {
		return func(s []Step) []Step {
			s[i].RC, s[i].Output = rc, out
			return s
		}
	}
	tests := []struct {
		name   string
		steps  []Step
		want   Category
		reason string
	}{
		{"shipped", okSteps(func(s []Step) []Step { return s }), Shipped, ""},
		{"module waited", okSteps(func(s []Step) []Step {
			return append([]Step{{Name: stepModules, RC: 1, Output: "insmod: can't insert 'x.ko': No such device"}}, append(s[:2:2], append([]Step{{Name: stepReload, RC: 1}}, s[2:]...)...)...)
		}), ShippedWaited, "No such device"},
		{"module waited, no reload", okSteps(func(s []Step) []Step {
			return append([]Step{{Name: stepModules, RC: 1, Output: "insmod: can't insert 'x.ko': No such device"}}, s...)
		}), GuestCrashed, "no reload step"},
		{"module waited, apply refused", okSteps(func(s []Step) []Step {
			s[1].RC, s[1].Output = 7, "livesplice: mismatch"
			return append([]Step{{Name: stepModules, RC: 1, Output: "insmod: can't insert 'x.ko': No such device"}}, s...)
		}), ApplyRefused, "mismatch"},
		{"modules, no check step", []Step{{Name: stepModules, RC: 1, Output: "insmod: can't insert 'x.ko': No such device"}}, ModuleLoad, "No such device"},
		{"check", okSteps(set(0, 5, "livesplice: update x refused (symbol): foo is missing")), CheckRefused, "exit 5 (missing or ambiguous symbol): update x refused (symbol): foo is missing"},
		{"apply busy", okSteps(set(1, 6, "livesplice: busy")), ApplyRefused, "exit 6 (busy): busy"},
		{"exercise failed", okSteps(set(2, 1, "exercise failed: tcp")), GuestBroken, "exercise failed: tcp"},
		{"exercise silent", okSteps(set(2, 0, "")), GuestBroken, ""},
		{"undo", okSteps(set(3, 8, "livesplice: state")), UndoFailed, "exit 8 (wrong state): state"},
		{"apply timed out", okSteps(set(1, 143, "Terminated")), ApplyRefused, "killed by its time limit"},
		{"no apply step", []Step{{Name: stepCheck}}, GuestCrashed, "no apply step"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := (&GuestRun{Steps: tc.steps}).outcome()
			if o.Category != tc.want || !strings.Contains(o.Reason, tc.reason) {
				t.Errorf("%s (%q), want %s (%q)", o.Category, o.Reason, tc.want, tc.reason)
			}
		})
	}
}
