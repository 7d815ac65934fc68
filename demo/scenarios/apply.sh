# Apply, list, show and undo the demo update, watching /proc/cmdline.
step() { printf '\n@@step %s\n' "$1"; }
step before
cat /proc/cmdline
step apply
livesplice apply /packs/demo.tar.xz
echo "@@rc $?"
step after
cat /proc/cmdline
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
