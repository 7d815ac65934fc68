package demo

// DupNames replaces setup_mq_sysctls (ipc/mq_sysctl.c), which installs a
// new IPC namespace's fs.mqueue sysctl set with the file's static set_root
// (a ctl_table_root) and set_is_seen (the function the sysctl core then
// calls to decide which namespace sees the set). Both names are duplicated
// in kallsyms: ipc/ipc_sysctl.c and kernel/ucount.c have their own, and
// fs/namei.c has a function set_root, so the loader can find them only
// through the running code (run-pre matching). A wrong address shows: the
// new namespace would not get sysctls of its own. The fix caps the new
// namespace's queues_max at its creator's.
var DupNames = Update{"dup-names", "testdata/demo/mqueue-queues-max-cap.patch",
	"ipc: mqueue: a new namespace gets no more queues than its creator"}

// The kallsyms names DupNames' replacement references that are duplicated
// in the running kernel: a static function and a static variable.
const (
	DupNamesFunc = "set_is_seen"
	DupNamesVar  = "set_root"
)

// DupFunc replaces proc_single_open of fs/proc/base.c, a static whose name
// fs/proc/generic.c uses too: kallsyms lists it twice, and the loader
// locates base.c's by its code (exactly one candidate matches). The fix
// makes a kernel thread's /proc/PID/limits (and its other single-show
// files) fail to open with EPERM.
var DupFunc = Update{"dup-func", "testdata/demo/proc-single-open-kthreads.patch",
	"proc: kernel threads have no per-task single files to show"}

// DupFuncName is the replaced function whose own name is duplicated.
const DupFuncName = "proc_single_open"
