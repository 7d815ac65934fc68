package loader

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livesplice/livesplice/pack"
)

// Fault points, a test hook (Loader.Fault; the CLI reads it from
// LIVESPLICE_FAULT). At a kill point the loader sends its own process
// SIGKILL: nothing is cleaned up, and the kernel drops the lock as the
// process dies, so the test sees what a crash or a kill -9 leaves. The
// other two hand the kernel what it must refuse.
const (
	FaultApplyBeforeLoad = "apply:before-load" // checked, nothing loaded
	FaultApplyAfterLoad  = "apply:after-load"  // loaded and calibrated, not applied
	FaultApplyAfterStop  = "apply:after-stop"  // applied, nothing printed
	FaultUndoBeforeStop  = "undo:before-stop"  // still applied
	FaultUndoAfterStop   = "undo:after-stop"   // undone, still loaded
	// FaultBadAddr passes the first vmlinux symbol one byte off: the
	// helper's init refuses it (sprint_symbol check).
	FaultBadAddr = "apply:bad-addr"
	// FaultBadImage passes half of the module image: the kernel's module
	// loader refuses it.
	FaultBadImage = "apply:bad-image"
)

// Faults are the fault points, in the order apply and undo reach them.
var Faults = []string{FaultApplyBeforeLoad, FaultApplyAfterLoad, FaultApplyAfterStop,
	FaultUndoBeforeStop, FaultUndoAfterStop, FaultBadAddr, FaultBadImage}

// checkFault refuses a Fault that names no fault point, so that a typo
// does not pass for a fault that did not strike.
func (l *Loader) checkFault() error {
	if l.Fault == "" || slices.Contains(Faults, l.Fault) {
		return nil
	}
	return fmt.Errorf("fault point %q: no such point (%s)", l.Fault, strings.Join(Faults, ", "))
}

// fault kills the process if point is the fault asked for.
func (l *Loader) fault(point string) {
	if l.Fault != point {
		return
	}
	unix.Kill(os.Getpid(), unix.SIGKILL)
	time.Sleep(time.Hour) // another thread may take the signal
}

// faulty returns the module image and the plan to load, damaged as the
// fault asked for says.
func (l *Loader) faulty(m *pack.Manifest, image []byte, plan *Plan) ([]byte, *Plan) {
	switch l.Fault {
	case FaultBadImage:
		return image[:len(image)/2], plan
	case FaultBadAddr:
		i := slices.IndexFunc(m.Symbols, func(s pack.Symbol) bool { return s.Object == pack.Vmlinux })
		if i >= 0 {
			bad := *plan
			bad.Addrs = slices.Clone(plan.Addrs)
			bad.Addrs[i]++
			return image, &bad
		}
	}
	return image, plan
}
