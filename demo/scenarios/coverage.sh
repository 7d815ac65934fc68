# make coverage (package coverage): every pack of /packs/list, one after
# the other. A line of the list is
#   ID PACK FUNCS [MODULE.ko ...]
# (FUNCS: the replaced functions, comma-separated; the modules in load
# order, the patched one last, ?PATH for one that may fail to load). For each pack: load its modules, check,
# apply, exercise the kernel (counting, with ftrace, the calls of the
# replaced functions), undo, unload, and the kernel log. Markers, each on
# a line of its own, parsed by coverage.ParseTranscript:
#   @@begin ID            the pack's run starts
#   @@cov ID STEP         the output of STEP follows
#   @@rc ID STEP RC T0 T1 STEP exited RC; /proc/uptime before and after
#   @@end ID              the pack's run ended
#   @@dirty ID            an update or module stayed loaded: this boot ends
#                         and the host boots a fresh guest for the rest
up() { read -r u _ </proc/uptime; echo "$u"; }
run() {
	id=$1 name=$2
	shift 2
	printf '\n@@cov %s %s\n' "$id" "$name"
	t0=$(up)
	"$@" 2>&1
	rc=$?
	printf '\n@@rc %s %s %d %s %s\n' "$id" "$name" "$rc" "$t0" "$(up)"
	return $rc
}
modname() { n=${1##*/}; n=${n%.ko}; echo "$n" | tr - _; }
# A module written ?PATH is a soft dependency's candidate: it may fail.
load() {
	for ko in "$@"; do
		opt=
		case $ko in \?*) opt=1 ko=${ko#?} ;; esac
		[ -d "/sys/module/$(modname "$ko")" ] && continue
		insmod "$ko" || [ -n "$opt" ] || return 1
	done
}
unload() {
	rev=
	for ko in "$@"; do rev="${ko#\?} $rev"; done
	for ko in $rev; do
		m=$(modname "$ko")
		[ -d "/sys/module/$m" ] || continue
		[ "$(cat "/sys/module/$m/refcnt" 2>/dev/null)" = 0 ] || continue
		rmmod "$m" || return 1
	done
}
tr_dir=/sys/kernel/tracing
# trace_on traces the functions named (comma-separated) that ftrace
# knows; traced counts them. An empty filter means every function: then
# nothing is traced.
trace_on() {
	traced=0
	[ -w $tr_dir/set_ftrace_filter ] || return 0
	echo nop >$tr_dir/current_tracer
	: >$tr_dir/trace
	: >$tr_dir/set_ftrace_filter
	for f in $(echo "$1" | tr , ' '); do
		echo "$f" >>$tr_dir/set_ftrace_filter 2>/dev/null
	done
	traced=$(grep -vc '^#' $tr_dir/set_ftrace_filter)
	[ "$traced" -gt 0 ] && echo function >$tr_dir/current_tracer
	return 0
}
trace_off() {
	[ -w $tr_dir/set_ftrace_filter ] || return 0
	n=$(echo "$1" | tr , ' ' | wc -w)
	if [ "$(cat $tr_dir/current_tracer)" = function ]; then
		echo "calls of the replaced functions ($traced of $n traced): $(grep -vc '^#' $tr_dir/trace)"
	else
		echo "calls of the replaced functions ($traced of $n traced): -"
	fi
	echo nop >$tr_dir/current_tracer
	: >$tr_dir/set_ftrace_filter
	: >$tr_dir/trace
}
# exercise: a little of every subsystem busybox reaches, then "exercise
# ok" if every part worked. A part that fails is tried once more: under
# TCG on a busy host timing can fail a part, a broken kernel fails it
# twice.
exercise() {
	exercise_once && return 0
	echo "again:"
	exercise_once
}
exercise_once() {
	bad=
	part() { what=$1; shift; "$@" >/dev/null 2>&1 || bad="$bad $what"; }
	part files sh -c 'echo data >/tmp/ex && cat /tmp/ex && mv /tmp/ex /tmp/ex2 && ln -s /tmp/ex2 /tmp/ex3 && cat /tmp/ex3 && rm /tmp/ex2 /tmp/ex3'
	part dirs sh -c 'mkdir -p /tmp/exd/a/b && touch /tmp/exd/a/b/f && find /tmp/exd && rm -r /tmp/exd'
	part write sh -c 'dd if=/dev/zero of=/tmp/exblob bs=64k count=32 && sync && md5sum /tmp/exblob && rm /tmp/exblob'
	part fork sh -c 'sh -c "exit 3"; [ $? = 3 ]'
	part pipe sh -c 'seq 1 2000 | sort -r | grep -c 1'
	part signal sh -c 'sleep 5 & kill $! && wait $!; [ $? -gt 128 ]'
	part timer usleep 20000
	part proc sh -c 'cat /proc/meminfo /proc/stat /proc/interrupts /proc/self/status /proc/self/maps /proc/mounts /proc/modules /proc/net/dev /proc/net/tcp'
	part sys sh -c 'cat /sys/kernel/mm/transparent_hugepage/enabled; ls /sys/class/net /sys/block /sys/bus'
	part ping ping -c 1 -W 2 127.0.0.1
	part tcp sh -c 'timeout 10 nc -l -p 7777 >/tmp/exnc & srv=$!; i=0
		until echo hello | timeout 5 nc 127.0.0.1 7777; do
			i=$((i + 1)); [ $i -lt 20 ] || break; usleep 100000
		done
		wait $srv; grep -q hello /tmp/exnc'
	part netns unshare -n -u -i sh -c 'ip link set lo up && ping -c 1 -W 2 127.0.0.1'
	part memory sh -c 'echo 3 >/proc/sys/vm/drop_caches && free'
	part ps ps
	if [ -n "$bad" ]; then
		echo "exercise failed:$bad"
		return 1
	fi
	echo "exercise ok"
}
ip link set lo up 2>/dev/null
run - boot dmesg -c
while read -r id pack funcs mods; do
	printf '\n@@begin %s\n' "$id"
	waiting=
	if [ -n "$mods" ]; then
		run "$id" modules load $mods || waiting=1
		run "$id" modules-log dmesg -c
	fi
	# A module that does not load here (no such hardware) is still
	# patched: the update waits for it, and a load attempt with the
	# update applied is patched as it loads, whether its init then
	# fails or not.
	if run "$id" check timeout 300 livesplice check "/packs/$pack" &&
		run "$id" apply timeout 300 livesplice apply "/packs/$pack"; then
		trace_on "$funcs"
		[ -n "$waiting" ] && run "$id" reload load $mods
		run "$id" exercise exercise
		run "$id" reached trace_off "$funcs"
		run "$id" list livesplice list
		run "$id" undo timeout 300 livesplice undo "$id"
	fi
	[ -n "$mods" ] && run "$id" unload unload $mods
	run "$id" dmesg dmesg -c
	if grep -q '^livesplice_' /proc/modules; then
		printf '\n@@dirty %s\n' "$id"
		exit 0
	fi
	printf '\n@@end %s\n' "$id"
done </packs/list
run - alive exercise
