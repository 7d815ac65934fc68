#!/bin/busybox sh
# /init of a livesplice test guest (package guest). Runs /scenario once,
# reports its exit status on the console and powers the machine off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
cd /
printf '\n@@guest-start\n'
if [ -f /scenario ]; then
	sh /scenario "$@" </dev/null
	status=$?
else
	echo "guest: no /scenario in the initramfs" >&2
	status=127
fi
printf '\n@@guest-exit %d\n' "$status"
sync
poweroff -f
# poweroff -f should not return; if it does, exiting PID 1 panics the kernel
# and panic=-1 with qemu -no-reboot ends the run.
exit "$status"
