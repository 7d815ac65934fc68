package demo

import "context"

// Header is a header change (testdata/headers): it changes
// inotify_mark_user_mask(), an inline helper of
// fs/notify/inotify/inotify.h, which three objects include
// (fs/notify/fdinfo.o, inotify_fsnotify.o, inotify_user.o). All three are
// rebuilt and diffed; only fdinfo.c's inotify_fdinfo, the helper's one
// caller, changes: /proc/PID/fdinfo of an inotify descriptor shows each
// watch's mask with IN_ONLYDIR (0x01000000) set.
var Header = Update{"header-inotify", "testdata/headers/inotify-fdinfo-onlydir.patch",
	"inotify: fdinfo shows IN_ONLYDIR in every watch's mask"}

// HeaderFunc is the function Header replaces.
const HeaderFunc = "inotify_fdinfo"

// What the guest's inotifymask prints for its IN_CREATE watch without
// the Header change and with it.
const (
	MaskOriginal = "mask:100"
	MaskChanged  = "mask:1000100"
)

// InotifyMask builds the guest's inotifymask helper
// (testdata/headers/inotifymask) and returns its path.
func (s Setup) InotifyMask(ctx context.Context) (string, error) {
	return s.goBuild(ctx, "./testdata/headers/inotifymask", "inotifymask")
}
