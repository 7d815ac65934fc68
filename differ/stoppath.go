package differ

import "github.com/livesplice/livesplice/elfobj"

// stopPathFuncs are the functions the other CPUs run while the helper's
// stop_machine callback writes the jumps: multi_cpu_stop's spin loop and
// what it calls (kernel/stop_machine.c, 6.1). A stack walk cannot see
// them (those CPUs are running, not switched out), and a jump written
// into code another CPU is executing can tear the instruction it fetches.
// multi_cpu_stop and its callers are on the stack of the stopper that
// runs the callback, which the helper walks: they are refused as busy
// there, and here too, to say why before anything ships.
var stopPathFuncs = map[string]bool{
	"multi_cpu_stop":                  true,
	"stop_machine_yield":              true,
	"ack_state":                       true,
	"set_state":                       true,
	"rcu_momentary_dyntick_idle":      true, // 6.1.187
	"rcu_momentary_eqs":               true, // the same, renamed by 6.1.192
	"arch_touch_nmi_watchdog":         true,
	"touch_softlockup_watchdog":       true,
	"touch_softlockup_watchdog_sched": true,
	"cpu_stopper_thread":              true,
	"smpboot_thread_fn":               true,
	"stop_machine_cpuslocked":         true,
	"stop_machine":                    true,
}

// nmiSections hold the code that runs in NMI and entry context
// (noinstr), which an NMI can run on any CPU during the stop.
var nmiSections = map[string]bool{
	".noinstr.text": true,
	".entry.text":   true,
}

// stopPathCheck refuses fn when another CPU may be executing it while the
// jump is written: see stopPathFuncs and nmiSections.
func stopPathCheck(fn *elfobj.Symbol, ref refuser) []Refusal {
	switch {
	case stopPathFuncs[fn.Name]:
		return []Refusal{ref("%s runs on the other CPUs while stop_machine writes the jump (its spin loop): the jump could tear an instruction they fetch", fn.Name)}
	case fn.Section != nil && nmiSections[fn.Section.Name]:
		return []Refusal{ref("%s is in %s, code an NMI runs on any CPU, also while stop_machine writes the jump: the jump could tear an instruction it fetches", fn.Name, fn.Section.Name)}
	}
	return nil
}
