# Faults: livesplice killed (SIGKILL, LIVESPLICE_FAULT) at every step of
# apply and undo, then list, then recovery; racing applies; a pack
# swapped between check and apply; a module the kernel refuses and one
# whose init fails. After each, the kernel is fully patched or its text
# is as it was.
step() { printf '\n@@step %s\n' "$1"; }
text() { livesplice debug text _stext:_etext --sha256; }
# look NAME: the state a fault left (list, modules, /proc/cmdline, text).
look() {
	step "list-$1"
	livesplice list
	echo "@@rc $?"
	step "modules-$1"
	grep -o '^livesplice[^ ]*' /proc/modules || echo none
	step "cmdline-$1"
	cat /proc/cmdline
	step "text-$1"
	text
}
# run NAME CMD...: a livesplice command as step NAME, stderr too.
run() {
	step "$1"
	shift
	"$@" 2>&1
	echo "@@rc $?"
}
A=/packs/demo.tar.xz
B=/packs/demo-b.tar.xz

step text-before
text

# Killed before the load: nothing was loaded; apply again just applies.
run kill-apply-before-load env LIVESPLICE_FAULT=apply:before-load livesplice apply $A
look apply-before-load
run recover-apply-before-load livesplice apply $A
run undo-1 livesplice undo demo-cmdline

# Killed after the load, before the stop: loaded, not applied. Apply
# starts over; undo unloads it.
run kill-apply-after-load env LIVESPLICE_FAULT=apply:after-load livesplice apply $A
look apply-after-load
run recover-apply-after-load livesplice apply $A
step cmdline-recovered-after-load
cat /proc/cmdline
run undo-2 livesplice undo demo-cmdline
run kill-apply-after-load-2 env LIVESPLICE_FAULT=apply:after-load livesplice apply $A
run recover-undo-after-load livesplice undo demo-cmdline
look undone-after-load

# Killed just after the stop: fully applied; apply again says so.
run kill-apply-after-stop env LIVESPLICE_FAULT=apply:after-stop livesplice apply $A
look apply-after-stop
run again-apply-after-stop livesplice apply $A
run undo-3 livesplice undo demo-cmdline

# Undo killed before its stop: still applied; undo again takes it out.
run apply-4 livesplice apply $A
run kill-undo-before-stop env LIVESPLICE_FAULT=undo:before-stop livesplice undo demo-cmdline
look undo-before-stop
run recover-undo-before-stop livesplice undo demo-cmdline

# Undo killed just after its stop: code restored, module loaded; undo
# unloads it.
run apply-5 livesplice apply $A
run kill-undo-after-stop env LIVESPLICE_FAULT=undo:after-stop livesplice undo demo-cmdline
look undo-after-stop
run recover-undo-after-stop livesplice undo demo-cmdline

# pauses counts the helper's pauses between its walk and its stop
# (--walk-delay-ms); await_pause N waits, at most 30 s, for more than N.
pauses() { dmesg | grep -c 'pausing .* ms (walk_delay_ms)'; }
await_pause() {
	n=0
	until [ "$(pauses)" -gt "$1" ]; do
		n=$((n + 1))
		[ $n -lt 600 ] || break
		usleep 50000
	done
}

# Killed inside the control write (paused by the helper between its walk
# and its stop): the write, and so the apply, finishes before the process
# dies.
step kill-in-stop
n0=$(pauses)
livesplice apply --walk-delay-ms 2000 $A 2>&1 &
p=$!
await_pause "$n0"
kill -9 $p
wait $p
echo "@@rc $?"
look in-stop
run undo-in-stop livesplice undo demo-cmdline

# Racing: while one apply holds the lock (paused in the helper between
# its walk and its stop), another update of the same function and the
# same pack again wait for it, then are refused.
step race
n0=$(pauses)
livesplice apply --walk-delay-ms 3000 $A >/tmp/race-a.out 2>&1 &
a=$!
await_pause "$n0"
livesplice apply $B >/tmp/race-b.out 2>&1 &
b=$!
livesplice apply $A >/tmp/race-a2.out 2>&1 &
a2=$!
wait $a
echo "first: rc $?"
cat /tmp/race-a.out
wait $b
echo "other: rc $?"
cat /tmp/race-b.out
wait $a2
echo "again: rc $?"
cat /tmp/race-a2.out
look race
run undo-race livesplice undo demo-cmdline
# The other update, alone, applies: it was refused for the first.
run other-apply livesplice apply $B
run other-undo livesplice undo demo-cmdlin2

# A pack swapped on disk between check and apply: apply judges the file
# it reads, on its own.
cp $A /tmp/swap.tar.xz
run swap-check livesplice check /tmp/swap.tar.xz
cp /packs/damaged.tar.xz /tmp/swap.tar.xz
run swap-damaged livesplice apply /tmp/swap.tar.xz
cp /packs/stale.tar.xz /tmp/swap.tar.xz
run swap-stale livesplice apply /tmp/swap.tar.xz

# The kernel refuses the module (half an image); the helper's init
# refuses a wrong address.
run bad-image env LIVESPLICE_FAULT=apply:bad-image livesplice apply $A
run bad-addr env LIVESPLICE_FAULT=apply:bad-addr livesplice apply $A
look refused

step text-after
text
step dmesg
dmesg
step end
