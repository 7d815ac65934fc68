# The module update: bm_entry_read of binfmt_misc, a module, replaced by
# code that reads binfmt_misc's own "enabled". Applied with the module
# loaded, then before it loads; the module is unloaded and loaded again
# while patched; undone with it loaded and with it gone.
step() { printf '\n@@step %s\n' "$1"; }
ko=/lib/modules/$(uname -r)/kernel/fs/binfmt_misc.ko
bm=/tmp/binfmt_misc
mkdir -p $bm
# up loads binfmt_misc, mounts it, registers a format and disables
# binfmt_misc as a whole; entry prints the format's first line (the fix:
# "disabled"); down unmounts and unloads it.
up() {
	insmod $ko && mount -t binfmt_misc none $bm &&
		echo ':lstest:E::lstest::/bin/true:' > $bm/register && echo 0 > $bm/status
	echo "@@rc $?"
}
entry() { echo "entry: $(head -n 1 $bm/lstest)"; }
down() { umount $bm && rmmod binfmt_misc; echo "@@rc $?"; }
text() { livesplice debug text --module binfmt_misc bm_entry_read+431 --sha256; }
apply() { livesplice apply /packs/module.tar.xz; echo "@@rc $?"; }
undo() { livesplice undo binfmt-entry; echo "@@rc $?"; }

step check-file
livesplice check /packs/module.tar.xz
echo "@@rc $?"
step load
up
entry
step text-before
text
step check-loaded
livesplice check /packs/module.tar.xz
echo "@@rc $?"
step apply-loaded
apply
step list-live
livesplice list
step patched
entry
echo 1 > $bm/status
entry
echo 0 > $bm/status
step undo-loaded
undo
step undone
entry
step text-after
text
step unload
down

step apply-waiting
apply
step list-waiting
livesplice list
livesplice show binfmt-entry
step load-patched
up
entry
livesplice list
step reload
down
livesplice list
up
entry
step undo-live
undo
entry
down
step undo-waiting
apply
undo
livesplice list
up
entry
down
step refuse-other
# Another build of binfmt_misc, one byte different at bm_entry_read's
# patch site: the waiting update refuses its load; the real one loads.
apply
insmod /lib/modules/$(uname -r)/extra/binfmt_misc-other.ko && echo "other build: loaded" || echo "other build: refused"
echo "binfmt_misc in /proc/modules: $(grep -c binfmt_misc /proc/modules)"
livesplice list
livesplice show binfmt-entry
up
entry
down
undo
step modules
grep -E 'livesplice|binfmt' /proc/modules || echo none
step dmesg
dmesg
step end
