package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
	"github.com/livesplice/livesplice/pack"
)

// What the dupnames scenario's new IPC namespace prints (see
// demo/scenarios/dupnames.sh): the creator's queues_max is set to 100, a
// new namespace starts at the default 256 without the fix and at 100 with
// it, and the 42 it writes stays inside it.
const (
	dupNamesOriginal = "new: 256\nwritten: 42\ncreator: 100"
	dupNamesPatched  = "new: 100\nwritten: 42\ncreator: 100"
)

// dupNamesCPUs are qemu CPU models whose alternatives differ (their return
// thunks, among others), with what /proc/cpuinfo's model name shows.
var dupNamesCPUs = []struct{ cpu, model string }{
	{"qemu64", "QEMU Virtual CPU"},
	{"EPYC", "AMD EPYC"},
}

// TestDupNames applies an update whose replacement (setup_mq_sysctls)
// references a static function and a static variable whose names kallsyms
// has more than once (set_is_seen, set_root): run-pre matching must find
// them through the running code. It runs on the same kernel under two CPU
// models whose alternatives differ. A new IPC namespace shows the fix,
// and its own sysctls show the addresses were the right ones. A second
// update replaces proc_single_open, whose own name kallsyms has twice
// (fs/proc/base.c, fs/proc/generic.c): exactly base.c's copy must match.
func TestDupNames(t *testing.T) {
	s, bin := newSetup(t)
	packPath, m := buildPack(t, s, demo.DupNames, "dupnames.tar.xz", "setup_mq_sysctls")
	for _, name := range []string{demo.DupNamesFunc, demo.DupNamesVar} {
		if !slices.Contains(m.Symbols, pack.Symbol{Name: name, Object: pack.Vmlinux}) {
			t.Fatalf("the pack does not need %s: symbols %v", name, m.Symbols)
		}
	}
	funcPack, _ := buildPack(t, s, demo.DupFunc, "dupfunc.tar.xz", demo.DupFuncName)
	packs := map[string]string{"dupnames.tar.xz": packPath, "dupfunc.tar.xz": funcPack}
	for _, c := range dupNamesCPUs {
		t.Run(c.cpu, func(t *testing.T) {
			steps := bootWith(t, s, bin, packs, "dupnames", guest.Config{CPU: c.cpu})
			checkDupNames(t, steps, c.model)
		})
	}
}

func checkDupNames(t *testing.T, steps map[string]string, model string) {
	t.Helper()
	if !strings.Contains(steps["cpu"], model) {
		t.Errorf("the guest's CPU is not %q: %s", model, steps["cpu"])
	}
	// The precondition, on the running kernel: both names are duplicated.
	for _, name := range []string{demo.DupNamesFunc, demo.DupNamesVar, demo.DupFuncName} {
		n, err := kallsymsCount(steps["dups"], name)
		if err != nil || n < 2 {
			t.Errorf("%s is not duplicated in /proc/kallsyms (%v):\n%s", name, err, steps["dups"])
		}
	}
	for _, step := range []string{"cpu", "dups", "before", "apply", "after", "undo", "undone"} {
		t.Logf("%s:\n%s", step, steps[step])
	}
	if steps["before"] != dupNamesOriginal {
		t.Errorf("before: got\n%s\nwant\n%s", steps["before"], dupNamesOriginal)
	}
	checkSteps(t, steps, []stepWant{{"check", 0, []string{"dup-names fits the running kernel"}}})
	checkDerived(t, steps["check"], steps["kallsyms"])
	if !strings.Contains(steps["modules"], "none") {
		t.Errorf("a livesplice module stayed loaded:\n%s", steps["modules"])
	}
	if rc := demo.ExitStatus(steps["apply"]); rc != 0 {
		t.Errorf("livesplice apply exited %d:\n%s", rc, steps["apply"])
		return
	}
	if steps["after"] != dupNamesPatched {
		t.Errorf("after apply: got\n%s\nwant\n%s", steps["after"], dupNamesPatched)
	}
	checkContains(t, steps, "list", demo.DupNames.ID, "applied", "setup_mq_sysctls")
	if rc := demo.ExitStatus(steps["undo"]); rc != 0 {
		t.Errorf("livesplice undo exited %d:\n%s", rc, steps["undo"])
	}
	if steps["undone"] != dupNamesOriginal {
		t.Errorf("after undo: got\n%s\nwant\n%s", steps["undone"], dupNamesOriginal)
	}
	// The replaced function's own name is duplicated: base.c's copy is the
	// one found, and kthreadd's limits close while it is applied.
	checkSteps(t, steps, []stepWant{
		{"limits-before", 0, nil},
		{"apply-func", 0, []string{"applied " + demo.DupFunc.ID, demo.DupFuncName}},
		{"limits-after", 1, []string{"Operation not permitted"}},
		{"limits-self", 0, []string{"Limit"}},
		{"undo-func", 0, []string{"undone " + demo.DupFunc.ID}},
		{"limits-undone", 0, nil},
	})
}

// kallsymsCount reads "NAME COUNT" from the scenario's dups step.
func kallsymsCount(out, name string) (int, error) {
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.Atoi(n)
		}
	}
	return 0, fmt.Errorf("no count for %s", name)
}

var derivedRE = regexp.MustCompile(`(?m)^\s*derived (\S+) = 0x([0-9a-f]+) `)

// checkDerived checks that the addresses check derived from the running
// code for the duplicated names are among kallsyms' candidates for them.
func checkDerived(t *testing.T, check, kallsyms string) {
	t.Helper()
	candidates := map[string][]uint64{}
	for _, line := range strings.Split(kallsyms, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			t.Fatalf("kallsyms line %q: %v", line, err)
		}
		candidates[f[2]] = append(candidates[f[2]], addr)
	}
	derived := map[string]uint64{}
	for _, m := range derivedRE.FindAllStringSubmatch(check, -1) {
		addr, _ := strconv.ParseUint(m[2], 16, 64)
		derived[m[1]] = addr
	}
	for _, name := range []string{demo.DupNamesFunc, demo.DupNamesVar} {
		addr, ok := derived[name]
		switch {
		case !ok:
			t.Errorf("check derived no address for %s:\n%s", name, check)
		case !slices.Contains(candidates[name], addr):
			t.Errorf("check derived %s = %#x, not one of kallsyms' %#x", name, addr, candidates[name])
		default:
			t.Logf("%s derived from the running code: %#x (kallsyms has %d)", name, addr, len(candidates[name]))
		}
	}
}
