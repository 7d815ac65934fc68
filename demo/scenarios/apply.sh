# Apply, list, show and undo the demo update, watching /proc/cmdline.
step() { printf '\n@@step %s\n' "$1"; }
step before
cat /proc/cmdline
step check
livesplice check /packs/demo.tar.xz
echo "@@rc $?"
step apply
livesplice apply /packs/demo.tar.xz
echo "@@rc $?"
step after
cat /proc/cmdline
step ftrace
# ftrace still traces the patched function: the jmp sits after its fentry site.
t=/sys/kernel/tracing
echo cmdline_proc_show > $t/set_ftrace_filter
echo function > $t/current_tracer
cat /proc/cmdline
echo "traced calls: $(grep -c 'cmdline_proc_show <-' $t/trace)"
echo nop > $t/current_tracer
echo "ftrace_enabled: $(cat /proc/sys/kernel/ftrace_enabled)"
step list
livesplice list
step show
livesplice show demo-cmdline
step undo
livesplice undo demo-cmdline
echo "@@rc $?"
step undone
cat /proc/cmdline
step modules
grep livesplice /proc/modules || echo none
step taint
cat /proc/sys/kernel/tainted
step dmesg
dmesg
step end
