package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/livesplice/livesplice/loader"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre"
)

func loaderFlags(cmd *cobra.Command, l *loader.Loader) {
	cmd.Flags().IntVar(&l.Retries, "retries", -1, "how often to retry while a task is inside the code (default: the module's, 5)")
	cmd.Flags().IntVar(&l.RetryMS, "retry-ms", 0, "pause between retries in ms (default: the module's, 100)")
	cmd.Flags().IntVar(&l.WalkDelayMS, "walk-delay-ms", 0, "test hook: pause between the walk of every task and the stop")
	cmd.Flags().MarkHidden("walk-delay-ms")
	cmd.Flags().DurationVar(&l.LockWait, "lock-wait", loader.DefaultLockWait, "how long to wait for another apply or undo to finish")
	l.Notify = os.Stderr
	// A test hook: kill the process at a fault point (loader.Faults).
	l.Fault = os.Getenv("LIVESPLICE_FAULT")
}

// debugFlag adds --debug, which sends the whole run-pre comparison to
// stderr.
func debugFlag(cmd *cobra.Command, l *loader.Loader) {
	var debug bool
	cmd.Flags().BoolVar(&debug, "debug", false, "print the whole comparison of the pack's code with the running code")
	cmd.PreRun = func(*cobra.Command, []string) {
		if debug {
			l.Debug = os.Stderr
		}
	}
}

func applyCmd() *cobra.Command {
	var l loader.Loader
	cmd := &cobra.Command{
		Use:   "apply PACK",
		Short: "Splice an update into the running kernel",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := pack.ReadFile(args[0])
			if err != nil {
				return err
			}
			s, err := l.Apply(p)
			if err != nil {
				return err
			}
			fmt.Printf("applied %s: %s; stop %s\n", s.ID, functionNames(s), stopText(s.ApplyStopNS, s.EmptyStopNS))
			if waiting := waitingModules(s); len(waiting) > 0 {
				fmt.Printf("not loaded: %s; the update takes effect when it loads, before any of its code runs\n", strings.Join(waiting, ", "))
			}
			return nil
		},
	}
	loaderFlags(cmd, &l)
	debugFlag(cmd, &l)
	return cmd
}

func checkCmd() *cobra.Command {
	var l loader.Loader
	cmd := &cobra.Command{
		Use:   "check PACK",
		Short: "Check that an update fits the running kernel (run-pre matching), without applying it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := pack.ReadFile(args[0])
			if err != nil {
				return err
			}
			c, err := l.Check(&p.Manifest)
			if err != nil {
				return err
			}
			header := p.Manifest.ID + " fits the running kernel"
			if c.Source != "" {
				header += fmt.Sprintf(" (code read from %s)", c.Source)
			}
			fmt.Println(header + ":")
			for _, name := range slices.Sorted(maps.Keys(c.Spaces)) {
				if sp := c.Spaces[name]; name != pack.Vmlinux {
					fmt.Printf("  module %s: code read from %s\n", name, sp.Source)
				}
			}
			show := func(what string, fs []pack.Function, ms []*runpre.Match) {
				for i, mt := range ms {
					fmt.Printf("  %s%s at %#x: %d bytes of pack code match %d running bytes, %d references resolved\n",
						what, pack.Symbol{Name: mt.Name, Object: fs[i].Object}, mt.Addr, len(fs[i].PreCode), mt.Len, len(mt.Derived))
				}
			}
			show("", p.Manifest.Functions, c.Matches)
			show("anchor ", p.Manifest.Anchors, c.Anchors)
			return nil
		},
	}
	debugFlag(cmd, &l)
	return cmd
}

func undoCmd() *cobra.Command {
	var l loader.Loader
	cmd := &cobra.Command{
		Use:   "undo ID",
		Short: "Take an update back out of the running kernel and unload it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := l.Undo(args[0])
			if err != nil {
				return err
			}
			switch s.Leftover {
			case loader.LeftApply:
				fmt.Printf("unloaded %s: it was loaded, not applied (an interrupted apply); the kernel code was not changed by it\n", s.ID)
			case loader.LeftUndo:
				fmt.Printf("unloaded %s: an earlier undo had restored %s, stop %s; only the unload was left\n", s.ID, plainNames(s), stopText(s.UndoStopNS, s.EmptyStopNS))
			default:
				fmt.Printf("undone %s: %s restored; stop %s\n", s.ID, plainNames(s), stopText(s.UndoStopNS, s.EmptyStopNS))
			}
			return nil
		},
	}
	loaderFlags(cmd, &l)
	return cmd
}

func listCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the updates loaded in the running kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l loader.Loader
			all, err := l.List()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(all)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATE\tFUNCTIONS\tAPPLY STOP")
			for _, s := range all {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.ID, s.State, functionNames(s), stopText(s.ApplyStopNS, s.EmptyStopNS))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, s := range all {
				if s.Note != "" {
					fmt.Printf("%s: %s\n", s.ID, s.Note)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func showCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one update: its functions, addresses and stop times",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var l loader.Loader
			s, err := l.Show(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(s)
			}
			fmt.Printf("id:          %s\nmodule:      %s\nstate:       %s\n", s.ID, s.Module, s.State)
			if s.Note != "" {
				fmt.Printf("note:        %s\n", s.Note)
			}
			if s.Description != "" {
				fmt.Printf("description: %s\n", s.Description)
			}
			fmt.Printf("apply stop:  %s\n", stopText(s.ApplyStopNS, s.EmptyStopNS))
			if s.UndoStopNS > 0 {
				fmt.Printf("undo stop:   %s\n", stopText(s.UndoStopNS, s.EmptyStopNS))
			}
			if s.Error != "" {
				fmt.Printf("last error:  %s\n", s.Error)
			}
			fmt.Println("functions:")
			for _, f := range s.Functions {
				name := pack.Symbol{Name: f.Name, Object: f.Object}.String()
				switch f.State {
				case loader.FunctionWaiting:
					fmt.Printf("  %s  waiting: patched when %s loads -> %#x\n", name, f.Object, f.New)
				default:
					fmt.Printf("  %s  %s %#x+%d -> %#x\n", name, f.State, f.Old, f.SiteOffset, f.New)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// functionNames lists an update's functions; a module's with its module
// and whether it is live or waiting for the module to load.
func functionNames(s *loader.Status) string {
	names := make([]string, len(s.Functions))
	for i, f := range s.Functions {
		names[i] = f.Name
		if f.Object != pack.Vmlinux {
			names[i] = fmt.Sprintf("%s [%s] %s", f.Name, f.Object, f.State)
		}
	}
	return strings.Join(names, ",")
}

// plainNames lists an update's functions, a module's with its module.
func plainNames(s *loader.Status) string {
	names := make([]string, len(s.Functions))
	for i, f := range s.Functions {
		names[i] = pack.Symbol{Name: f.Name, Object: f.Object}.String()
	}
	return strings.Join(names, ",")
}

// waitingModules are the modules an applied update waits for.
func waitingModules(s *loader.Status) []string {
	var mods []string
	for _, f := range s.Functions {
		if f.State == loader.FunctionWaiting && !slices.Contains(mods, f.Object) {
			mods = append(mods, f.Object)
		}
	}
	return mods
}

// stopText prints a stop time and its ratio to an empty stop_machine.
func stopText(ns, empty int64) string {
	if ns <= 0 {
		return "-"
	}
	s := fmt.Sprintf("%d us", ns/1000)
	if empty > 0 {
		s += fmt.Sprintf(" (%.2fx empty stop_machine %d us)", float64(ns)/float64(empty), empty/1000)
	}
	return s
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
