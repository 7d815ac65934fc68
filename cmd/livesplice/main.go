// Command livesplice builds kernel updates from source patches and applies,
// lists and undoes them on the running kernel without a reboot.
//
// Exit codes: 0 success, 1 other errors, 2 usage, 3 bad pack, 4 wrong
// kernel, 5 missing or ambiguous symbol, 6 busy (a task is in the code),
// 7 code mismatch, 8 wrong state, 9 the kernel refused the module,
// 10 the patch cannot be turned into an update, 11 the patch has nothing
// to do at run time (no code change, or only __init/__exit code), 12 the
// patch does not compile against the tree (the compiler's first error is
// named; the pristine tree failing to build is 1), 13 the pack is not
// signed, 14 its signer is not trusted, 15 its signature does not match
// its bytes (changed after signing, or a damaged signature).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/loader"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/sign"
)

// Exit codes, one per kind of refusal.
const (
	exitError    = 1
	exitUsage    = 2
	exitPack     = 3
	exitKernel   = 4
	exitSymbol   = 5
	exitBusy     = 6
	exitMismatch = 7
	exitState    = 8
	exitLoad     = 9
	exitRefused  = 10
	exitNothing  = 11
	exitCompile  = 12
	exitUnsigned = 13
	exitUntrust  = 14
	exitTampered = 15
)

func main() {
	root := &cobra.Command{
		Use:           "livesplice",
		Short:         "Apply kernel fixes to the running kernel without a reboot",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(prepareCmd(), buildCmd(), checkCmd(), applyCmd(), listCmd(), showCmd(), undoCmd(), inspectCmd(), debugCmd(), signCmd(), verifyCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "livesplice:", err)
		os.Exit(exitCode(err))
	}
}

type usageError struct{ error }

func exitCode(err error) int {
	var le *loader.Error
	var fe *pack.FormatError
	var re *builder.RefusedError
	var ne *builder.NothingToDoError
	var ce *builder.CompileError
	var ue usageError
	var se *signatureError
	switch {
	case errors.As(err, &se):
		switch {
		case errors.Is(err, sign.ErrUnsigned):
			return exitUnsigned
		case errors.Is(err, sign.ErrUntrusted):
			return exitUntrust
		case errors.Is(err, sign.ErrMismatch), errors.Is(err, sign.ErrMalformed):
			return exitTampered
		}
	case errors.As(err, &le):
		return map[loader.Kind]int{
			loader.KindPack: exitPack, loader.KindKernel: exitKernel, loader.KindSymbol: exitSymbol,
			loader.KindBusy: exitBusy, loader.KindMismatch: exitMismatch, loader.KindState: exitState,
			loader.KindLoad: exitLoad,
		}[le.Kind]
	case errors.As(err, &fe):
		return exitPack
	case errors.As(err, &re):
		return exitRefused
	case errors.As(err, &ne):
		return exitNothing
	case errors.As(err, &ce) && !ce.Pristine:
		return exitCompile
	case errors.As(err, &ue):
		return exitUsage
	}
	return exitError
}
