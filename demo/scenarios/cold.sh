# The cold-part updates: each replaces a function gcc split, its unlikely
# path moved into NAME.cold. cold.tar.xz replaces drop_caches_sysctl_handler,
# whose log message is drop_caches_sysctl_handler.cold (6.1.0-56);
# arp.tar.xz is a real 6.1.190 fix of arp_ioctl, which has arp_ioctl.cold
# (6.1.0-53). Before, applied, undone: the behaviour shows which code runs;
# the module gets the old cold part's address for its stack check; the
# kernel text is the same at the end. With busy.tar.xz (6.1.0-56), a task
# inside a cold part makes apply and undo busy.
step() { printf '\n@@step %s\n' "$1"; }
if [ -e /packs/cold.tar.xz ]; then
	pack=/packs/cold.tar.xz id=cold-drop-caches fn=drop_caches_sysctl_handler
	exercise() {
		echo "$1" > /proc/sys/vm/drop_caches
		dmesg | grep 'drop_caches: ' | tail -1
	}
else
	pack=/packs/arp.tar.xz id=arp-ioctl fn=arp_ioctl
	exercise() { arpget; }
fi
step text-before
livesplice debug text _stext:_etext --sha256
step kallsyms
grep -E " $fn(\.cold)?\$" /proc/kallsyms
step before
exercise 1
step check
# The matches and derived addresses; the instruction listing is left out.
livesplice check --debug $pack > /tmp/check 2>&1
rc=$?
grep -v '^ *+0x' /tmp/check
echo "@@rc $rc"
step apply
livesplice apply $pack
echo "@@rc $?"
step addrs
cat /sys/module/livesplice_*/parameters/addrs
step after
exercise 3
step list
livesplice list
step undo
livesplice undo $id
echo "@@rc $?"
step undone
exercise 2
if [ -e /packs/busy.tar.xz ]; then
	# A task waits inside __io_uring_register.cold (uffdhold): neither
	# the old cold part (apply) nor the new one (undo) may be replaced
	# under it.
	hold() {
		rm -f /tmp/release
		uffdhold > /tmp/hold 2>&1 &
		for i in $(seq 100); do grep -q holding /tmp/hold && break; sleep 0.1; done
		cat /tmp/hold
	}
	letgo() { touch /tmp/release; wait; cat /tmp/hold; }
	step busy-apply
	hold
	livesplice apply --retries 1 --retry-ms 50 /packs/busy.tar.xz
	echo "@@rc $?"
	letgo
	step busy-applied
	livesplice apply /packs/busy.tar.xz
	echo "@@rc $?"
	step busy-undo
	hold
	livesplice undo --retries 1 --retry-ms 50 cold-busy
	echo "@@rc $?"
	letgo
	step busy-undone
	livesplice undo cold-busy
	echo "@@rc $?"
fi
step text-after
livesplice debug text _stext:_etext --sha256
step modules
grep livesplice /proc/modules || echo none
step dmesg
dmesg
step end
