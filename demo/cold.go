package demo

import "context"

// Cold replaces drop_caches_sysctl_handler (fs/drop_caches.c), which gcc
// split: its log message ("sh (96): drop_caches: 1") is
// drop_caches_sysctl_handler.cold. The fix names the caches dropped in
// that message ("drop_caches: 3 (page cache, slab)"): the new function
// and its new cold part run from the update's module, and the old cold
// part is covered by the stack check. Writing /proc/sys/vm/drop_caches
// shows which code runs.
var Cold = Update{"cold-drop-caches", "testdata/cold/drop-caches-name-caches.patch",
	"drop_caches: say which caches were dropped"}

// ColdFunc is the function Cold replaces.
const ColdFunc = "drop_caches_sysctl_handler"

// ColdArp is a real 6.1.187 -> 6.1.190 fix (testdata/corpus) of a
// function with a cold part, built for Kernel53: arp_ioctl
// (net/ipv4/arp.c, with arp_ioctl.cold) terminates the device name of an
// ARP request at IFNAMSIZ-1 characters. Kernel56 already has it.
var ColdArp = Update{"arp-ioctl", "testdata/corpus/debian-6.1.187-to-6.1.190/net__ipv4__arp.c.patch",
	"arp: terminate the device name of an ARP ioctl's request"}

// ColdArpFunc is the function ColdArp replaces.
const ColdArpFunc = "arp_ioctl"

// What the guest's arpget prints without the ARP fix (the 16-byte name
// finds no device) and with it (the device is found and has no entry).
const (
	ArpGetOriginal = "arpget: errno 19 (ENODEV)"
	ArpGetFixed    = "arpget: errno 6 (ENXIO)"
)

// ArpGet builds the guest's arpget helper (testdata/cold/arpget) and
// returns its path.
func (s Setup) ArpGet(ctx context.Context) (string, error) {
	return s.goBuild(ctx, "./testdata/cold/arpget", "arpget")
}

// ColdBusy replaces __io_uring_register (io_uring/io_uring.c), whose
// __cold io_register_iowq_aff gcc inlined into __io_uring_register.cold:
// a task the guest's uffdhold keeps waiting in its copy_from_user is
// inside the old cold part (apply is busy) or the new one (undo is).
var ColdBusy = Update{"cold-busy", "testdata/cold/io-uring-iowq-aff-size.patch",
	"io_uring: refuse an io-wq affinity mask longer than a cpumask"}

// ColdBusyFunc is the function ColdBusy replaces.
const ColdBusyFunc = "__io_uring_register"

// UffdHold builds the guest's uffdhold helper (testdata/cold/uffdhold)
// and returns its path.
func (s Setup) UffdHold(ctx context.Context) (string, error) {
	return s.goBuild(ctx, "./testdata/cold/uffdhold", "uffdhold")
}
