set -x
a() { awk -v n="$1" '$3==n {print "0x"$1; exit}' /proc/kallsyms; }
ADDRS=
for s in text_poke text_poke_kgdb text_mutex stop_machine_cpuslocked cmdline_proc_show saved_command_line; do ADDRS="$ADDRS${ADDRS:+,}$(a $s)"; done
echo "ADDRS=$ADDRS"
M=livesplice_demo_cmdline
D=/sys/module/$M/livesplice
# bad address: cmdline_proc_show+1
C=$(a cmdline_proc_show); C1=$(echo $C | sed 's/0$/1/')
BAD=$(echo $ADDRS | sed "s/$C/$C1/")
BAD2=$(echo $ADDRS | sed "s/$C/$(a text_poke)/")
insmod /t.ko addrs=$BAD2 expect=0000000000; echo "insmod bad2 rc=$?"
insmod /t.ko addrs=$ADDRS expect=00; echo "insmod short expect rc=$?"
insmod /t.ko addrs=$BAD expect=0000000000; echo "insmod bad rc=$?"
insmod /t.ko addrs=$ADDRS expect=0000000000; echo "insmod rc=$?"
ls $D
cat $D/id $D/description $D/state $D/functions
echo apply > $D/control; echo "apply rc=$?"
cat $D/error
FOUND=$(sed -n 's/.*found //p' $D/error | tr -d ' ')
rmmod $M; echo "rmmod rc=$?"
insmod /t.ko addrs=$ADDRS expect=$FOUND retries=2 retry_ms=200; echo "insmod rc=$?"
cat /proc/cmdline
echo calibrate > $D/control; echo "calibrate rc=$?"; cat $D/empty_stop_ns
echo apply > $D/control; echo "apply rc=$?"
cat $D/state $D/error $D/apply_stop_ns $D/apply_work_ns
cat /proc/cmdline
echo apply > $D/control; echo "apply again rc=$?"; cat $D/error
echo bogus > $D/control; echo "bogus rc=$?"; cat $D/error
rmmod $M; echo "rmmod while applied rc=$?"
cat /proc/cmdline > /tmp/c1 &
sleep 0.5
echo undo > $D/control; echo "undo busy rc=$?"; cat $D/error
wait; cat /tmp/c1
echo undo > $D/control; echo "undo rc=$?"; cat $D/state $D/undo_stop_ns $D/undo_work_ns; cat $D/error
cat /proc/cmdline
echo undo > $D/control; echo "undo again rc=$?"; cat $D/error
for i in 1 2 3; do echo apply > $D/control || echo FAIL; echo undo > $D/control || echo FAIL; done
cat /proc/sys/kernel/tainted
dmesg | grep -i livesplice
rmmod $M; echo "rmmod rc=$?"
