// Command livesplice-coverage is `make coverage`: it builds the .c patches
// of a corpus delta for their pre release, runs every pack built in a
// guest of that release, and writes docs/coverage.md (package coverage).
// It is resumable: run it again and it continues where it stopped.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/livesplice/livesplice/coverage"
	"github.com/livesplice/livesplice/internal/cache"
)

func main() {
	var o coverage.Options
	var reportOnly bool
	var redo []string
	cmd := &cobra.Command{
		Use:           "livesplice-coverage --corpus DIR",
		Short:         "Measure how many patches of a corpus delta livesplice builds, applies and undoes (make coverage)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = os.Stdout
			for _, c := range redo {
				if !coverage.Category(c).Known() {
					return fmt.Errorf("--redo %s: not an outcome of the report", c)
				}
				o.Redo = append(o.Redo, coverage.Category(c))
			}
			r, err := coverage.New(o)
			if err != nil {
				return err
			}
			if reportOnly {
				return r.WriteReport()
			}
			ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			recs, err := r.Run(ctx)
			if err != nil {
				return err
			}
			fmt.Println(coverage.Count(recs).FirstLine())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Repo, "repo", ".", "the livesplice repository (the guest's binary is built from it)")
	f.StringVar(&o.Corpus, "corpus", "", "the corpus delta's folder (manifest.tsv and the patches)")
	f.StringVar(&o.Cache, "cache", cache.Dir(), "cache directory (prepared trees; results under coverage/RELEASE)")
	f.Uint64Var(&o.Seed, "seed", coverage.DefaultSeed, "seed of the order the candidates are run in")
	f.IntVar(&o.Limit, "limit", 0, "run the first N patches of the order (0: all)")
	f.StringSliceVar(&o.Patches, "patch", nil, "run these patches (manifest names) instead of the seeded order (repeatable)")
	f.IntVar(&o.Batch, "batch", 0, "patches per batch: pre objects compiled in one make, packs run in one boot (default 25)")
	f.IntVar(&o.PerBoot, "per-boot", 0, "at most this many packs per guest boot (default 40)")
	f.BoolVar(&o.Fresh, "fresh", false, "start over: move the results file aside")
	f.StringSliceVar(&redo, "redo", nil, "run again the patches with these outcomes (e.g. module-object,cold), after the code that decided them changed")
	f.StringVar(&o.Dir, "dir", "", "where the results, packs and work are kept (default CACHE/coverage/RELEASE)")
	f.StringVar(&o.Results, "results", "", "results file (default DIR/results.jsonl)")
	f.StringVar(&o.Report, "report", "docs/coverage.md", "the report to rewrite after every batch (empty: none)")
	f.BoolVar(&reportOnly, "report-only", false, "only rewrite the report from the results file")
	cmd.MarkFlagRequired("corpus")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "livesplice-coverage:", err)
		os.Exit(1)
	}
}
