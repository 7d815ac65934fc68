# The header update (header.tar.xz): inotify_mark_user_mask() of
# fs/notify/inotify/inotify.h changed, inotify_fdinfo replaced. Before,
# applied, undone: inotifymask prints the mask fdinfo reports for a watch;
# the kernel text is the same at the end.
step() { printf '\n@@step %s\n' "$1"; }
step text-before
livesplice debug text _stext:_etext --sha256
step before
inotifymask
step apply
livesplice apply /packs/header.tar.xz
echo "@@rc $?"
step list
livesplice list
step after
inotifymask
step undo
livesplice undo header-inotify
echo "@@rc $?"
step undone
inotifymask
step text-after
livesplice debug text _stext:_etext --sha256
step modules
grep livesplice /proc/modules || echo none
step dmesg
dmesg
step end
