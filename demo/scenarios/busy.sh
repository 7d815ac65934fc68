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
step dmesg
dmesg
step end
