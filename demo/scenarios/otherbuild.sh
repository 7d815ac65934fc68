# The other-build update (built from 6.1.187 for 6.1.0-53-amd64): refused
# as a code mismatch by a kernel whose prctl_set_auxv is other code, applied
# and undone by the kernel it was built for. Either way the kernel text is
# the same at the end; setauxv shows which prctl_set_auxv runs.
step() { printf '\n@@step %s\n' "$1"; }
step text-before
livesplice debug text _stext:_etext --sha256
step auxv-before
setauxv
step apply
livesplice apply /packs/other.tar.xz
rc=$?
echo "@@rc $rc"
step list
livesplice list
step auxv-after
setauxv
step undo
if [ "$rc" = 0 ]; then
	livesplice undo other-build
	echo "@@rc $?"
else
	echo "not applied"
fi
step auxv-undone
setauxv
step text-after
livesplice debug text _stext:_etext --sha256
step modules
grep livesplice /proc/modules || echo none
step dmesg
dmesg
step end
