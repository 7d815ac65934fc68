# The dup-names update: setup_mq_sysctls replaced by code that passes
# set_root and set_is_seen, whose names kallsyms has more than once, to the
# sysctl core. A new IPC namespace shows which code ran and whether those
# two were found: its own queues_max (capped at the creator's by the fix),
# and a write that stays inside it.
# Then the dup-func update: proc_single_open, itself a duplicated name,
# replaced so that kthreadd's (pid 2) /proc/2/limits cannot be opened.
step() { printf '\n@@step %s\n' "$1"; }
q=/proc/sys/fs/mqueue/queues_max
newns() {
	unshare -i sh -c "echo \"new: \$(cat $q)\"; echo 42 > $q; echo \"written: \$(cat $q)\""
	echo "creator: $(cat $q)"
}
step cpu
grep -m1 'model name' /proc/cpuinfo
step dups
for name in set_is_seen set_root proc_single_open; do
	echo "$name $(grep -c " $name\$" /proc/kallsyms)"
done
step kallsyms
grep -E ' (set_is_seen|set_root|setup_mq_sysctls)$' /proc/kallsyms
echo 100 > $q
step before
newns
step check
# The addresses run-pre matching derives; the instruction listing is left out.
livesplice check --debug /packs/dupnames.tar.xz > /tmp/check 2>&1
rc=$?
grep -v '^ *+0x' /tmp/check
echo "@@rc $rc"
step apply
livesplice apply /packs/dupnames.tar.xz
echo "@@rc $?"
step after
newns
step list
livesplice list
step undo
livesplice undo dup-names
echo "@@rc $?"
step undone
newns
step limits-before
cat /proc/2/limits > /dev/null
echo "@@rc $?"
step apply-func
livesplice apply /packs/dupfunc.tar.xz
echo "@@rc $?"
step limits-after
cat /proc/2/limits
echo "@@rc $?"
step limits-self
head -1 /proc/self/limits
echo "@@rc $?"
step undo-func
livesplice undo dup-func
echo "@@rc $?"
step limits-undone
cat /proc/2/limits > /dev/null
echo "@@rc $?"
step modules
grep livesplice /proc/modules || echo none
step dmesg
dmesg
step end
