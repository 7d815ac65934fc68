# The special update: comm_write replaced by code with a user access that
# faults (its own exception table entry), a copy_from_user that faults, a
# WARN_ON and a static branch, against the original.
step() { printf '\n@@step %s\n' "$1"; }
stats=/proc/sys/kernel/bpf_stats_enabled
step before
commwrite fault
commwrite fault-later
commwrite empty
step apply
livesplice apply /packs/special.tar.xz
echo "@@rc $?"
step fault
commwrite fault
commwrite fault-later
step branch-off
cat $stats
commwrite name ls-off
step branch-on
echo 1 > $stats
cat $stats
commwrite name ls-on
echo 0 > $stats
step branch-off-again
commwrite name ls-off-again
step warn
commwrite empty
dmesg | grep -A1 'WARNING:' || echo "no warning"
step undo
livesplice undo special
echo "@@rc $?"
step undone
commwrite fault
commwrite fault-later
commwrite empty
step modules
grep livesplice /proc/modules || echo none
step dmesg
dmesg
step end
