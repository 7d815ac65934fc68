package corpus

import (
	"fmt"
	"github.com/livesplice/livesplice/internal/cache"
	"os"
	"path/filepath"
	"runtime"

	"github.com/livesplice/livesplice/builder"
)

// Release is the kernel the prepared tree and the corpus checks are for.
const Release = "6.1.0-56-amd64"

// Config is the target's kernel config the tree was prepared from.
const Config = "/boot/config-" + Release

// DeltaName is the corpus delta the patches come from. The prepared tree is
// Debian's 6.1.192, which already contains it: pairs are built with the
// patch reversed.
const DeltaName = "debian-6.1.187-to-6.1.190"

// Selected are the patches the corpus test and benchmark use: small ones
// (fast to build) whose reverse applies to the prepared tree, a mix of
// vmlinux and module objects, of functions kept out of line and static
// functions gcc inlined (manifest "missing:"), a new function, an __init
// change, and ext4's inode.c (__LINE__ passed into code). Left out: patches
// whose reverse needs a header the delta also changed (kernel/stop_machine.c
// calls rcu_momentary_dyntick_idle, renamed in 6.1.190), and more of the same
// to keep a cold run (one build of about 14 s per patch) near 6 minutes.
var Selected = []string{
	// vmlinux
	"net__ipv4__arp.c.patch",
	"net__unix__garbage.c.patch", // missing:unix_del_edge
	"io_uring__io-wq.c.patch",
	"kernel__time__timer.c.patch", // missing:migrate_timer_list
	"net__core__sock_map.c.patch",
	"lib__ucs2_string.c.patch",
	"block__blk-stat.c.patch",
	"drivers__tty__pty.c.patch",
	"net__ipv6__xfrm6_input.c.patch",
	"kernel__time__itimer.c.patch",              // missing:put_itimerval
	"net__netlabel__netlabel_unlabeled.c.patch", // missing:netlbl_unlhsh_add_addr6
	"block__blk-iocost.c.patch",                 // missing:ioc_lat_stat
	"drivers__base__swnode.c.patch",
	"kernel__sys.c.patch",
	"net__xdp__xskmap.c.patch",
	"drivers__clk__x86__clk-pmc-atom.c.patch", // missing:plt_clk_register
	"init__main.c.patch",                      // start_kernel: __init
	// modules
	"drivers__bluetooth__hci_bcm.c.patch",
	"drivers__hwmon__w83791d.c.patch",
	"drivers__i2c__i2c-mux.c.patch",
	"drivers__iio__proximity__srf04.c.patch",
	"drivers__md__dm-log-userspace-base.c.patch", // missing:build_constructor_string
	"drivers__net__usb__cx82310_eth.c.patch",
	"block__kyber-iosched.c.patch",
	"sound__core__seq__seq_clientmgr.c.patch", // missing:deliver_to_subscribers
	"fs__ext4__inode.c.patch",                 // missing:ext4_try_to_expand_extra_isize; __LINE__
}

// NoCodeChange names the selected patches whose edits compile to the same
// code in this kernel's config, and why (checked with objdump): for them an
// edited function that the changeset does not report is not a mismatch.
// They still check that the differ reports nothing it should not.
var NoCodeChange = map[string]string{
	"drivers__tty__pty.c.patch":     "pty_write: const unsigned char * -> const u8 *, the same type",
	"drivers__i2c__i2c-mux.c.patch": "of_node_put() is an empty inline: CONFIG_OF is not set",
	"kernel__time__timer.c.patch":   "debug_timer_activate() is empty: CONFIG_DEBUG_OBJECTS_TIMERS is not set",
	"kernel__time__itimer.c.patch":  "put_itimerval: `v = {}` is dead, every field is assigned (pre and post disassemble the same)",
}

// DeltaDir returns the corpus delta's folder: $LIVESPLICE_CORPUS, else
// the copy of the selected patches in the repository's testdata/corpus.
func DeltaDir() string {
	if d := os.Getenv("LIVESPLICE_CORPUS"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "corpus", DeltaName)
}

// TreeDir returns the prepared tree: $LIVESPLICE_CACHE/trees/RELEASE, else
// the user cache directory's livesplice/trees/RELEASE.
func TreeDir() string {
	return cache.Tree(cache.Dir(), Release)
}

// Tree returns the prepared tree, checked against the target's config.
func Tree() (*builder.Tree, error) {
	t := &builder.Tree{Dir: TreeDir(), Release: Release, CC: "gcc-12"}
	if _, err := os.Stat(Config); err != nil {
		return nil, fmt.Errorf("kernel config %s is missing: run `make kernel-inputs`", Config)
	}
	if err := t.Check(Config); err != nil {
		return nil, fmt.Errorf("%w: run `make kernel-inputs`", err)
	}
	return t, nil
}
