package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
	"github.com/livesplice/livesplice/pack"
)

// TestCold applies, exercises and undoes updates of functions that gcc
// split, their unlikely paths moved into NAME.cold, in the kernels they
// were built for: drop_caches_sysctl_handler (demo.Cold, a fix of its
// cold part only) on 6.1.0-56, and arp_ioctl (demo.ColdArp, a real
// 6.1.190 fix) on 6.1.0-53. Each pack carries the old cold part, which
// run-pre matching finds where the function's code jumps to it and whose
// running address the module gets for its stack check; the behaviour
// before, applied and undone shows which code runs; the kernel text is
// byte-identical at the end. On 6.1.0-56 a task waiting inside
// __io_uring_register.cold (demo.ColdBusy) makes apply busy, and one
// inside the replacement's cold part makes undo busy.
func TestCold(t *testing.T) {
	t.Run(demo.Kernel56.Release, func(t *testing.T) {
		s, bin := newSetup(t)
		packPath, m := buildPack(t, s, demo.Cold, "cold.tar.xz", demo.ColdFunc)
		checkColdPack(t, m, demo.ColdFunc)
		busyPath, m := buildPack(t, s, demo.ColdBusy, "busy.tar.xz", demo.ColdBusyFunc)
		checkColdPack(t, m, demo.ColdBusyFunc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		uffdhold, err := s.UffdHold(ctx)
		if err != nil {
			t.Fatal(err)
		}
		steps := boot(t, s, bin, map[string]string{"cold.tar.xz": packPath, "busy.tar.xz": busyPath}, "cold",
			guest.File{Path: "/bin/uffdhold", Mode: 0o755, Source: uffdhold})
		checkColdSteps(t, steps, demo.Cold.ID, demo.ColdFunc)
		const msg = "drop_caches: "
		for step, want := range map[string]string{"before": msg + "1", "after": msg + "3 (page cache, slab)", "undone": msg + "2"} {
			line := steps[step]
			if !strings.HasSuffix(line, want) {
				t.Errorf("%s: the log says %q, want it to end with %q", step, line, want)
			}
		}

		// A task inside the old cold part makes apply busy, one inside
		// the new cold part (in the update's module, inside the
		// replacement's NewSize) undo.
		cold := demo.ColdBusyFunc + ".cold+"
		checkSteps(t, steps, []stepWant{
			{"busy-apply", 6, []string{"holding", "apply: task", "(uffdhold) is inside " + cold}},
			{"busy-applied", 0, []string{"applied " + demo.ColdBusy.ID}},
			{"busy-undo", 6, []string{"holding", "undo: task", "(uffdhold) is inside " + cold, "[" + pack.ModuleName(demo.ColdBusy.ID) + "]"}},
			{"busy-undone", 0, []string{"undone " + demo.ColdBusy.ID}},
		})
	})

	t.Run(demo.Kernel53.Release, func(t *testing.T) {
		s, bin := newSetupFor(t, demo.Kernel53)
		packPath, m := buildPack(t, s, demo.ColdArp, "arp.tar.xz", demo.ColdArpFunc)
		checkColdPack(t, m, demo.ColdArpFunc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		arpget, err := s.ArpGet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		steps := boot(t, s, bin, map[string]string{"arp.tar.xz": packPath}, "cold",
			guest.File{Path: "/bin/arpget", Mode: 0o755, Source: arpget})
		checkColdSteps(t, steps, demo.ColdArp.ID, demo.ColdArpFunc)
		for step, want := range map[string]string{"before": demo.ArpGetOriginal, "after": demo.ArpGetFixed, "undone": demo.ArpGetOriginal} {
			if steps[step] != want {
				t.Errorf("%s: arpget printed %q, want %q", step, steps[step], want)
			}
		}
	})
}

// checkColdPack checks that the pack replacing fn carries its old cold
// part for run-pre matching.
func checkColdPack(t *testing.T, m *pack.Manifest, fn string) {
	t.Helper()
	f := m.Functions[0]
	if len(f.Cold) != 1 || f.Cold[0].Name != fn+".cold" || len(f.Cold[0].PreCode) != f.Cold[0].Size {
		t.Fatalf("%s: the pack's cold parts are %+v, want %s.cold with its pre code", fn, f.Cold, fn)
	}
}

// checkColdSteps checks a cold scenario run for update id replacing fn:
// check matched the old cold part at its kallsyms address, the module got
// that address, apply and undo worked, the text is as it was.
func checkColdSteps(t *testing.T, steps map[string]string, id, fn string) {
	t.Helper()
	for _, step := range []string{"kallsyms", "before", "check", "apply", "addrs", "after", "undo", "undone"} {
		t.Logf("%s:\n%s", step, steps[step])
	}
	cold := kallsymsAddr(t, steps["kallsyms"], fn+".cold")
	checkSteps(t, steps, []stepWant{
		{"check", 0, []string{id + " fits the running kernel", fmt.Sprintf("cold part %s.cold: ", fn), fmt.Sprintf("at %#x", cold)}},
		{"apply", 0, []string{"applied " + id, fn}},
		{"undo", 0, []string{"undone " + id}},
	})
	if !slices.Contains(strings.Split(steps["addrs"], ","), strconv.FormatUint(cold, 10)) {
		t.Errorf("the module's addrs %q lack %s.cold's %d: its stack check would not cover the old cold part", steps["addrs"], fn, cold)
	}
	checkContains(t, steps, "list", id, "applied", fn)
	checkUnchanged(t, steps)
}

// kallsymsAddr returns the address of name in /proc/kallsyms lines.
func kallsymsAddr(t *testing.T, lines, name string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^([0-9a-f]+) t ` + regexp.QuoteMeta(name) + `$`).FindStringSubmatch(lines)
	if m == nil {
		t.Fatalf("%s is not in the guest's kallsyms:\n%s", name, lines)
	}
	addr, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
