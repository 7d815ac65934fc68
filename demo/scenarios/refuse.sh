# Packs that must be refused, each leaving the kernel text as it was.
step() { printf '\n@@step %s\n' "$1"; }
text() {
	livesplice debug text cmdline_proc_show+64 --sha256
	livesplice debug text _stext:_etext --sha256
}
step text-before
text
step stale
livesplice apply /packs/stale.tar.xz
echo "@@rc $?"
step stale-debug
livesplice apply --debug /packs/stale.tar.xz 2>&1
echo "@@rc $?"
step wrong-kernel
livesplice apply /packs/wrong-kernel.tar.xz
echo "@@rc $?"
step damaged
livesplice apply /packs/damaged.tar.xz
echo "@@rc $?"
step text-after
text
step modules
grep livesplice /proc/modules || echo none
step cmdline
cat /proc/cmdline
step dmesg
dmesg
step end
