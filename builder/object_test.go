package builder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/livesplice/livesplice/pack"
)

func TestObjectOf(t *testing.T) {
	tree := t.TempDir()
	cmds := map[string]string{
		// The first lines of real .o.cmd files of Debian's 6.1 tree, cut.
		"fs/ext4/inode.o":   "cmd_fs/ext4/inode.o := gcc-12 -Wp,-MMD,fs/ext4/.inode.o.d -nostdinc -DMODULE  -DKBUILD_BASENAME='\"inode\"' -DKBUILD_MODNAME='\"ext4\"' -D__KBUILD_MODNAME=kmod_ext4 -c -o fs/ext4/inode.o fs/ext4/inode.c\n\nsource_fs/ext4/inode.o := fs/ext4/inode.c\n",
		"fs/proc/cmdline.o": "cmd_fs/proc/cmdline.o := gcc-12 -Wp,-MMD,fs/proc/.cmdline.o.d -nostdinc -DKBUILD_MODFILE='\"fs/proc/proc\"' -DKBUILD_BASENAME='\"cmdline\"' -DKBUILD_MODNAME='\"proc\"' -c -o fs/proc/cmdline.o fs/proc/cmdline.c\n",
		"drivers/x/y.o":     "cmd_drivers/x/y.o := gcc-12 -DMODULE -c -o drivers/x/y.o drivers/x/y.c\n",
		"drivers/x/flag.o":  "cmd_drivers/x/flag.o := gcc-12 -DMODULE_PARAM_PREFIX=x -DKBUILD_MODNAME='\"x\"' -c\n",
		"sound/hda/codec.o": "cmd_sound/hda/codec.o := gcc-12 -DMODULE -DKBUILD_MODNAME='\"snd_hda_codec\"' -c\n",
	}
	for obj, cmd := range cmds {
		p := filepath.Join(tree, filepath.Dir(obj), "."+filepath.Base(obj)+".cmd")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(cmd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for obj, want := range map[string]string{
		"fs/ext4/inode.o":   "ext4",
		"fs/proc/cmdline.o": pack.Vmlinux,
		"drivers/x/flag.o":  pack.Vmlinux,
		"sound/hda/codec.o": "snd_hda_codec",
	} {
		if got, err := objectOf(tree, obj); err != nil || got != want {
			t.Errorf("objectOf(%s) = %q, %v; want %q", obj, got, err, want)
		}
	}
	if _, err := objectOf(tree, "drivers/x/y.o"); err == nil {
		t.Error("objectOf of a module object without KBUILD_MODNAME succeeded")
	}
	if _, err := objectOf(tree, "fs/none.o"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("objectOf of an object never built = %v, want a not-exist error", err)
	}
}

func TestFixupObject(t *testing.T) {
	exporters := map[string]string{"_printk": pack.Vmlinux, "jbd2_journal_start": "jbd2", "ext4_own_export": "ext4"}
	for _, tt := range []struct{ object, target, want string }{
		{"ext4", "jbd2_journal_start", "jbd2"},
		{"ext4", "ext4_own_export", "ext4"},
		{"ext4", "ext4_static_helper", "ext4"},
		{"ext4", "__this_module", "ext4"},
		{"ext4", "_printk", pack.Vmlinux},
		{pack.Vmlinux, "saved_command_line", pack.Vmlinux},
		{pack.Vmlinux, "jbd2_journal_start", pack.Vmlinux},
	} {
		if got := fixupObject(tt.object, tt.target, exporters); got != tt.want {
			t.Errorf("fixupObject(%s, %s) = %s, want %s", tt.object, tt.target, got, tt.want)
		}
	}
}
