// Command livesplice-demo shows the whole path on the kernel Debian ships:
// it builds the demo fix (testdata/demo) into a pack, boots Debian's
// 6.1.0-56-amd64 kernel in qemu, and applies, lists and undoes the fix
// while /proc/cmdline shows the behaviour change. Run it with `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
	"github.com/livesplice/livesplice/internal/cache"
)

func main() {
	repo := flag.String("repo", ".", "livesplice repository")
	cacheDir := flag.String("cache", cache.Dir(), "cache holding trees/RELEASE")
	work := flag.String("work", "", "work directory (default: a temporary one)")
	flag.Parse()
	if err := run(*repo, *cacheDir, *work); err != nil {
		fmt.Fprintln(os.Stderr, "livesplice-demo:", err)
		os.Exit(1)
	}
}

func run(repo, cacheDir, work string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "livesplice-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	s := demo.DefaultSetup(repo, cacheDir, work)
	s.Tree.Stderr = os.Stderr
	start := time.Now()
	bin, err := s.Binary(ctx)
	if err != nil {
		return err
	}
	packPath, m, err := s.Pack(ctx, demo.Cmdline, "demo.tar.xz")
	if err != nil {
		return err
	}
	fmt.Printf("== built %s in %s: update %s replaces", filepath.Base(packPath), time.Since(start).Round(time.Second), m.ID)
	for _, f := range m.Functions {
		fmt.Printf(" %s", f.Name)
	}
	fmt.Printf("\n== booting %s in qemu (TCG) and running the apply scenario\n", s.Kernel)
	res, err := s.Boot(ctx, bin, map[string]string{"demo.tar.xz": packPath}, "apply", guest.Config{})
	if err != nil {
		return err
	}
	steps := demo.Steps(res.ScenarioOutput())
	for _, name := range []string{"before", "apply", "after", "ftrace", "list", "show", "undo", "undone"} {
		fmt.Printf("-- %s\n%s\n", name, steps[name])
	}
	if bad := demo.KernelProblems(steps["dmesg"]); len(bad) > 0 {
		return fmt.Errorf("the kernel reported problems: %q", bad)
	}
	fmt.Printf("== guest ran %s, exit %d; dmesg clean\n", res.Duration.Round(time.Second), res.ExitCode)
	return nil
}
