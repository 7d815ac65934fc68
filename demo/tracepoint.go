package demo

// Rename replaces __set_task_comm (fs/exec.c) with code that turns '/' in
// a task's name into '_' and says so in the kernel log: the replacement
// has a new string literal, reads an unexported per-CPU variable
// (process_counts) and keeps the task_rename tracepoint, whose key vmlinux
// does not export.
var Rename = Update{"rename-no-slash", "testdata/tracepoint/set-task-comm-no-slash.patch",
	"exec: no '/' in task names"}
