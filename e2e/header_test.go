package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
)

// TestHeader applies, exercises and undoes a header change on 6.1.0-56
// (demo.Header): the builder finds the three objects that include
// fs/notify/inotify/inotify.h in the tree's dependency index, rebuilds
// and diffs them all, and ships the one function that changed,
// inotify_fdinfo; inotifymask shows which code runs; the kernel text is
// byte-identical at the end.
func TestHeader(t *testing.T) {
	s, bin := newSetup(t)
	packPath, _ := buildPack(t, s, demo.Header, "header.tar.xz", demo.HeaderFunc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mask, err := s.InotifyMask(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := boot(t, s, bin, map[string]string{"header.tar.xz": packPath}, "header",
		guest.File{Path: "/bin/inotifymask", Mode: 0o755, Source: mask})
	checkSteps(t, steps, []stepWant{
		{"apply", 0, []string{"applied " + demo.Header.ID, demo.HeaderFunc}},
		{"undo", 0, []string{"undone " + demo.Header.ID}},
	})
	checkContains(t, steps, "list", demo.Header.ID, "applied", demo.HeaderFunc)
	for step, want := range map[string]string{"before": demo.MaskOriginal, "after": demo.MaskChanged, "undone": demo.MaskOriginal} {
		if steps[step] != want {
			t.Errorf("%s: inotifymask printed %q, want %q", step, steps[step], want)
		}
	}
	checkUnchanged(t, steps)
}
