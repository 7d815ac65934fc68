package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/internal/cache"
)

// treeFlags are the flags every command working on a source tree shares.
type treeFlags struct {
	dir, config, release, cc string
}

func (f *treeFlags) register(cmd *cobra.Command, dirFlag string) {
	cmd.Flags().StringVar(&f.dir, dirFlag, "", "kernel source tree (default: $LIVESPLICE_CACHE/trees/RELEASE)")
	cmd.Flags().StringVar(&f.config, "config", "", "the target kernel's config, e.g. /boot/config-6.1.0-56-amd64")
	cmd.Flags().StringVar(&f.release, "release", "", "the target's kernel release (default: from the config's name)")
	cmd.Flags().StringVar(&f.cc, "cc", "gcc-12", "the compiler that built the target kernel")
	cmd.MarkFlagRequired("config")
}

func (f *treeFlags) tree() (*builder.Tree, error) {
	rel := f.release
	if rel == "" {
		var err error
		if rel, err = builder.ReleaseFromConfig(f.config); err != nil {
			return nil, usageError{err}
		}
	}
	dir := f.dir
	if dir == "" {
		dir = cache.Tree(cache.Dir(), rel)
	}
	return &builder.Tree{Dir: dir, Release: rel, CC: f.cc, Stderr: os.Stderr}, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}

func prepareCmd() *cobra.Command {
	var tf treeFlags
	var tarball string
	cmd := &cobra.Command{
		Use:   "prepare",
		Short: "Extract and prepare a kernel source tree for building updates (once; reused)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := tf.tree()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			if err := t.Prepare(ctx, tarball, tf.config); err != nil {
				return err
			}
			fmt.Println(t.Dir)
			return nil
		},
	}
	tf.register(cmd, "dir")
	cmd.Flags().StringVar(&tarball, "tarball", "/usr/src/linux-source-6.1.tar.xz", "kernel source tarball")
	return cmd
}

func buildCmd() *cobra.Command {
	var tf treeFlags
	var o builder.Options
	cmd := &cobra.Command{
		Use:   "build --config FILE --patch FILE --id ID -o PACK",
		Short: "Turn a source patch into an update pack for the target kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := tf.tree()
			if err != nil {
				return err
			}
			o.Tree, o.Config = t, tf.config
			if o.Headers == "" {
				o.Headers = "/usr/src/linux-headers-" + t.Release
			}
			ctx, cancel := signalContext()
			defer cancel()
			m, err := builder.Build(ctx, o)
			if err != nil {
				return err
			}
			fmt.Printf("wrote %s: update %s for %s, %d function(s):", o.Out, m.ID, m.Target.Release, len(m.Functions))
			for _, f := range m.Functions {
				fmt.Printf(" %s", f.Name)
			}
			fmt.Println()
			if len(m.NextBoot) > 0 {
				fmt.Printf("not in the update, takes effect with the next boot (runs only at boot, module load or unload):\n  %s\n",
					strings.Join(m.NextBoot, "\n  "))
			}
			return nil
		},
	}
	tf.register(cmd, "source")
	f := cmd.Flags()
	f.StringVar(&o.Patch, "patch", "", "unified diff to apply with -p1")
	f.StringVar(&o.ID, "id", "", "update id (a-z, 0-9, -)")
	f.StringVarP(&o.Out, "output", "o", "", "pack to write (.tar.xz)")
	f.StringVar(&o.Description, "description", "", "one line saying what the update fixes")
	f.StringSliceVar(&o.CVEs, "cve", nil, "CVE id the update fixes (repeatable)")
	f.StringVar(&o.Headers, "headers", "", "kernel headers for the module build (default /usr/src/linux-headers-RELEASE)")
	f.StringVar(&o.Source, "source-name", "", "names the kernel source in the manifest, e.g. \"linux-source-6.1 6.1.192-2\"")
	f.StringVar(&o.WorkDir, "work", "", "keep intermediate files here")
	for _, name := range []string{"patch", "id", "output"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}
