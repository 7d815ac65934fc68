package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/kcore"
)

func debugCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "debug",
		Short: "Look at the running kernel (read only)",
	}
	cmd.AddCommand(textCmd())
	return cmd
}

func textCmd() *cobra.Command {
	var sum bool
	var module string
	cmd := &cobra.Command{
		Use:   "text SYMBOL[+LEN|:ENDSYMBOL]",
		Short: "Print kernel text from /proc/kcore: LEN bytes (default 64) at SYMBOL, or SYMBOL up to ENDSYMBOL (--module: a loaded module's symbols)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			syms, err := kallsyms.ReadFile("/proc/kallsyms")
			if err != nil {
				return err
			}
			start, end, err := textRange(syms.In(module), args[0])
			if err != nil {
				return usageError{err}
			}
			mem, err := kcore.Open("/proc/kcore")
			if err != nil {
				return err
			}
			defer mem.Close()
			h := sha256.New()
			var data []byte
			for a := start; a < end; {
				n := min(end-a, 1<<20)
				chunk, err := mem.Read(a, int(n))
				if err != nil {
					return err
				}
				h.Write(chunk)
				if !sum {
					data = append(data, chunk...)
				}
				a += n
			}
			fmt.Printf("%s %#x %d sha256:%s\n", args[0], start, end-start, hex.EncodeToString(h.Sum(nil)))
			if !sum {
				fmt.Println(hex.EncodeToString(data))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&sum, "sha256", false, "print only the sha256 of the bytes")
	cmd.Flags().StringVar(&module, "module", "", "look the symbols up in this loaded module first")
	return cmd
}

func textRange(syms *kallsyms.Table, spec string) (uint64, uint64, error) {
	name, endName, ranged := strings.Cut(spec, ":")
	name, lenText, hasLen := strings.Cut(name, "+")
	s, err := syms.Unique(name)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case ranged:
		e, err := syms.Unique(endName)
		if err != nil {
			return 0, 0, err
		}
		if e.Addr <= s.Addr {
			return 0, 0, fmt.Errorf("%s is not above %s", endName, name)
		}
		return s.Addr, e.Addr, nil
	case hasLen:
		n, err := strconv.ParseUint(lenText, 0, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("length %q: %w", lenText, err)
		}
		return s.Addr, s.Addr + n, nil
	}
	return s.Addr, s.Addr + 64, nil
}
