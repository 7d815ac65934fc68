# The rename update: __set_task_comm replaced by code that turns '/' into
# '_', logs it (a new string, a per-CPU read), keeps the task_rename
# tracepoint and has a pr_debug. rename() renames this shell and prints its
# name.
step() { printf '\n@@step %s\n' "$1"; }
rename() { printf '%s' "$1" > /proc/$$/comm; printf 'comm "%s"\n' "$(cat /proc/$$/comm)"; }
tr=/sys/kernel/tracing
mount -t tracefs nodev $tr
step text-before
livesplice debug text _stext:_etext --sha256
step before
rename a/b
step apply
livesplice apply /packs/rename.tar.xz
echo "@@rc $?"
step list
livesplice list
step renamed
rename c/d/e
dmesg | grep 'had a slash' || echo "no log line"
step trace-off
rename f/g
cat $tr/trace | grep task_rename || echo "no trace"
step trace-on
echo 1 > $tr/events/task/task_rename/enable
rename h/i
echo 0 > $tr/events/task/task_rename/enable
cat $tr/trace | grep task_rename || echo "no trace"
step dyndbg-off
rename l/m
dmesg | grep 'set to l_m' || echo "no debug line"
step dyndbg-on
grep __set_task_comm /proc/dynamic_debug/control
echo 'module livesplice_rename_no_slash +p' > /proc/dynamic_debug/control
rename n/o
dmesg | grep 'set to n_o' || echo "no debug line"
echo 'module livesplice_rename_no_slash -p' > /proc/dynamic_debug/control
step undo
livesplice undo rename-no-slash
echo "@@rc $?"
step undone
rename j/k
step text-after
livesplice debug text _stext:_etext --sha256
step modules
grep livesplice /proc/modules || echo none
step dmesg
dmesg
step end
