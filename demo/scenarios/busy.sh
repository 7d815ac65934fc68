# A task asleep inside the code blocks apply and undo until it leaves.
step() { printf '\n@@step %s\n' "$1"; }
# A reader blocked on an empty pipe sleeps inside pipe_read().
reader() { sleep 1000 | cat >/dev/null & sleep 1; }
reader
step busy-apply
livesplice apply --retries 2 --retry-ms 50 /packs/pipe.tar.xz
echo "@@rc $?"
step modules-after-busy
grep livesplice /proc/modules || echo none
killall sleep
wait
step apply
livesplice apply /packs/pipe.tar.xz
echo "@@rc $?"
step pipe
echo through the new pipe_read | cat | cat
reader
step busy-undo
livesplice undo --retries 1 --retry-ms 50 busy-pipe
echo "@@rc $?"
step state
livesplice list
killall sleep
wait
step undo
livesplice undo busy-pipe
echo "@@rc $?"
# A task that exists at the walk before the stop (cat, asleep opening
# the FIFO go, not inside pipe_read) and enters pipe_read after it (go
# written and closed, cat reads on to the FIFO race, whose writer never
# writes): the stop walks again the tasks switched out since their walk,
# and finds it.
step walk-race
mkfifo /tmp/go /tmp/race
cat /tmp/go /tmp/race >/dev/null &
sleep 1000 >/tmp/race &
livesplice apply --retries 0 --walk-delay-ms 4000 /packs/pipe.tar.xz >/tmp/race.out 2>&1 &
ap=$!
n=0
until dmesg | grep -q 'pausing .* ms (walk_delay_ms)'; do
	n=$((n + 1))
	[ $n -lt 600 ] || break
	usleep 50000
done
echo go >/tmp/go
wait $ap
rc=$?
cat /tmp/race.out
echo "@@rc $rc"
step modules-after-race
grep livesplice /proc/modules || echo none
killall sleep
wait
# Every idle task is inside schedule_idle while it is switched out.
step idle
livesplice apply --retries 1 --retry-ms 50 /packs/sched.tar.xz
echo "@@rc $?"
# kthreadd never leaves its main function: refused at once, no retries.
step kthreadd
livesplice apply --retries 3 --retry-ms 50 /packs/kthreadd.tar.xz
echo "@@rc $?"
step dmesg
dmesg
step end
