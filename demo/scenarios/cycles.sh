# Apply and undo the demo update $CYCLES times (livesplice-cycles), with
# sleeping threads up to $TASKS tasks, and with readers checking /proc/cmdline on
# every CPU when $READ is 1, measuring a stop that writes the jumps' own bytes
# back after each apply when $REWRITE is 1. Parameters come from the kernel
# command line.
step() { printf '\n@@step %s\n' "$1"; }
step cycles
read=
[ "$READ" = 1 ] && read=-read
rewrite=
[ "$REWRITE" = 1 ] && rewrite=-rewrite
livesplice-cycles -cycles "${CYCLES:-20}" -tasks "${TASKS:-0}" $read $rewrite /packs/demo.tar.xz
echo "@@rc $?"
step alive
echo alive
cat /proc/cmdline
step dmesg
dmesg
step end
