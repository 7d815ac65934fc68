package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// packView is what `inspect PACK` shows: the manifest without the pre code.
type packView struct {
	Pack        string         `json:"pack"`
	ID          string         `json:"id"`
	Description string         `json:"description,omitempty"`
	CVEs        []string       `json:"cves,omitempty"`
	Target      pack.Target    `json:"target"`
	Module      string         `json:"module"`
	ModuleName  string         `json:"module_name"`
	Functions   []packFunction `json:"functions"`
	Anchors     []packFunction `json:"anchors,omitempty"`
	NextBoot    []string       `json:"next_boot,omitempty"`
	Symbols     []pack.Symbol  `json:"symbols"`
}

type packFunction struct {
	Name       string `json:"name"`
	Object     string `json:"object"`
	Source     string `json:"source"`
	Size       int    `json:"size"`
	NewSize    int    `json:"new_size"`
	SiteOffset int    `json:"site_offset"`
	PreRelocs  int    `json:"pre_relocs"`
}

// changesetView is what `inspect --pre --post` shows.
type changesetView struct {
	Pre       string         `json:"pre"`
	Post      string         `json:"post"`
	Changed   []functionView `json:"changed"`
	Added     []functionView `json:"added"`
	Refused   []refusalView  `json:"refused"`
	Renamed   []renamedView  `json:"renamed,omitempty"`
	AddedData []dataView     `json:"added_data,omitempty"`
	NextBoot  []functionView `json:"next_boot,omitempty"`
}

type functionView struct {
	Name     string `json:"name"`
	Section  string `json:"section"`
	PreSize  int    `json:"pre_size,omitempty"`
	PostSize int    `json:"post_size"`
}

type renamedView struct {
	Pre  string `json:"pre"`
	Post string `json:"post"`
}

type dataView struct {
	Name    string `json:"name"`
	Section string `json:"section"`
	Size    int    `json:"size"`
}

type refusalView struct {
	Object  string `json:"object"`
	Symbol  string `json:"symbol"`
	Section string `json:"section"`
	Reason  string `json:"reason"`
}

func inspectCmd() *cobra.Command {
	var pre, post string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect PACK | inspect --pre PRE.o --post POST.o",
		Short: "Show a changeset: the functions a pack replaces, or what the differ finds between two objects",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && pre == "" && post == "":
				v, err := inspectPack(args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(v)
				}
				return v.print(os.Stdout)
			case len(args) == 0 && pre != "" && post != "":
				v, err := inspectObjects(pre, post)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(v)
				}
				return v.print(os.Stdout)
			}
			return usageError{errors.New("inspect: give a pack, or both --pre and --post objects")}
		},
	}
	cmd.Flags().StringVar(&pre, "pre", "", "object built from the pristine source")
	cmd.Flags().StringVar(&post, "post", "", "object built from the patched source")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func inspectPack(name string) (*packView, error) {
	p, err := pack.ReadFile(name)
	if err != nil {
		return nil, err
	}
	m := p.Manifest
	v := &packView{
		Pack: name, ID: m.ID, Description: m.Description, CVEs: m.CVEs, Target: m.Target,
		Module: m.Module, ModuleName: m.ModuleName, Symbols: m.Symbols, NextBoot: m.NextBoot,
		Functions: make([]packFunction, 0, len(m.Functions)),
	}
	if v.Symbols == nil {
		v.Symbols = []pack.Symbol{}
	}
	view := func(f pack.Function) packFunction {
		return packFunction{Name: f.Name, Object: f.Object, Source: f.Source, Size: f.Size, NewSize: f.NewSize,
			SiteOffset: f.SiteOffset, PreRelocs: len(f.PreRelocs)}
	}
	for _, f := range m.Functions {
		v.Functions = append(v.Functions, view(f))
	}
	for _, f := range m.Anchors {
		v.Anchors = append(v.Anchors, view(f))
	}
	return v, nil
}

func (v *packView) print(out io.Writer) error {
	fmt.Fprintf(out, "pack:        %s\nid:          %s\n", v.Pack, v.ID)
	if v.Description != "" {
		fmt.Fprintf(out, "description: %s\n", v.Description)
	}
	if len(v.CVEs) > 0 {
		fmt.Fprintf(out, "cves:        %s\n", strings.Join(v.CVEs, ", "))
	}
	fmt.Fprintf(out, "target:      %s", v.Target.Release)
	if v.Target.Version != "" {
		fmt.Fprintf(out, " (%s)", v.Target.Version)
	}
	fmt.Fprintf(out, "\ncompiler:    %s\n", v.Target.Compiler)
	if v.Target.Source != "" {
		fmt.Fprintf(out, "source:      %s\n", v.Target.Source)
	}
	fmt.Fprintf(out, "module:      %s (%s)\n", v.Module, v.ModuleName)
	fmt.Fprintf(out, "functions replaced (%d):\n", len(v.Functions))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  NAME\tIN\tSOURCE\tOLD SIZE\tNEW SIZE\tSITE\tPRE RELOCS")
	for _, f := range v.Functions {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%d\t%d\t+%d\t%d\n", f.Name, f.Object, f.Source, f.Size, f.NewSize, f.SiteOffset, f.PreRelocs)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(v.Anchors) > 0 {
		fmt.Fprintf(out, "anchors (not replaced; their code locates statics only the update uses) (%d):\n", len(v.Anchors))
		for _, f := range v.Anchors {
			fmt.Fprintf(out, "  %s\t%s\t%s\t%d bytes\t%d relocations\n", f.Name, f.Object, f.Source, f.Size, f.PreRelocs)
		}
	}
	if len(v.NextBoot) > 0 {
		fmt.Fprintf(out, "not carried, takes effect with the next boot (%d):\n", len(v.NextBoot))
		for _, s := range v.NextBoot {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	fmt.Fprintf(out, "symbols needed (%d):\n", len(v.Symbols))
	for _, s := range v.Symbols {
		fmt.Fprintf(out, "  %s\n", s)
	}
	return nil
}

func inspectObjects(pre, post string) (*changesetView, error) {
	preObj, err := elfobj.Open(pre)
	if err != nil {
		return nil, fmt.Errorf("pre object: %w", err)
	}
	postObj, err := elfobj.Open(post)
	if err != nil {
		return nil, fmt.Errorf("post object: %w", err)
	}
	cs, err := differ.Diff(preObj, postObj)
	if err != nil {
		return nil, err
	}
	v := &changesetView{
		Pre: pre, Post: post,
		Changed: functionViews(cs.Changed), Added: functionViews(cs.Added), NextBoot: functionViews(cs.NextBoot),
		Refused: make([]refusalView, 0, len(cs.Refused)),
	}
	for _, r := range cs.Renamed {
		v.Renamed = append(v.Renamed, renamedView{Pre: r.Pre, Post: r.Post})
	}
	for _, d := range cs.AddedData {
		v.AddedData = append(v.AddedData, dataView{Name: d.Name, Section: d.Section, Size: d.Size})
	}
	for _, r := range cs.Refused {
		v.Refused = append(v.Refused, refusalView{Object: post, Symbol: r.Symbol, Section: r.Section, Reason: r.Reason})
	}
	return v, nil
}

func functionViews(fns []differ.Function) []functionView {
	out := make([]functionView, 0, len(fns))
	for _, f := range fns {
		out = append(out, functionView{Name: f.Name, Section: f.Section, PreSize: f.PreSize, PostSize: f.PostSize})
	}
	return out
}

func (v *changesetView) print(out io.Writer) error {
	fmt.Fprintf(out, "pre:  %s\npost: %s\n", v.Pre, v.Post)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "functions replaced (%d):\n", len(v.Changed))
	if len(v.Changed) > 0 {
		fmt.Fprintln(w, "  NAME\tSECTION\tOLD SIZE\tNEW SIZE")
	}
	for _, f := range v.Changed {
		fmt.Fprintf(w, "  %s\t%s\t%d\t%d\n", f.Name, f.Section, f.PreSize, f.PostSize)
	}
	fmt.Fprintf(w, "functions added (%d):\n", len(v.Added))
	if len(v.Added) > 0 {
		fmt.Fprintln(w, "  NAME\tSECTION\t\tSIZE")
	}
	for _, f := range v.Added {
		fmt.Fprintf(w, "  %s\t%s\t\t%d\n", f.Name, f.Section, f.PostSize)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(v.AddedData) > 0 {
		fmt.Fprintf(out, "data added (%d):\n", len(v.AddedData))
		for _, d := range v.AddedData {
			fmt.Fprintf(out, "  %s (%s) %d bytes\n", d.Name, d.Section, d.Size)
		}
	}
	if len(v.NextBoot) > 0 {
		fmt.Fprintf(out, "not carried, takes effect with the next boot (boot, module load or unload code) (%d):\n", len(v.NextBoot))
		for _, f := range v.NextBoot {
			fmt.Fprintf(out, "  %s (%s)\n", f.Name, f.Section)
		}
	}
	if len(v.Renamed) > 0 {
		fmt.Fprintf(out, "renamed by gcc (%d), kept under their running names:\n", len(v.Renamed))
		for _, r := range v.Renamed {
			fmt.Fprintf(out, "  %s <- %s\n", r.Pre, r.Post)
		}
	}
	fmt.Fprintf(out, "refused (%d):\n", len(v.Refused))
	for _, r := range v.Refused {
		fmt.Fprintf(out, "  %s: %s (%s): %s\n", r.Object, r.Symbol, r.Section, r.Reason)
	}
	return nil
}
