package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/module"
	"github.com/livesplice/livesplice/pack"
)

// Options describe one update to build.
type Options struct {
	Tree *Tree
	// Config is the target kernel's config; the tree must have been
	// prepared from it.
	Config string
	// Patch is the unified diff (-p1) to turn into an update.
	Patch       string
	ID          string
	Description string
	CVEs        []string
	// Headers is the target's kernel headers tree for the module build.
	Headers string
	// Source names the kernel source for the manifest, for people.
	Source string
	// Out is the pack to write.
	Out string
	// WorkDir keeps the intermediate files; a temporary directory when empty.
	WorkDir string
}

// RefusedError says the differ found changes this update cannot carry.
type RefusedError struct {
	Patch    string
	Refusals []Refusal
}

// Refusal is one reason a patch cannot be turned into an update: its
// kind (differ.RefuseOther for the builder's own) and what it says to
// people, naming the object, symbol and section.
type Refusal struct {
	Kind differ.RefusalKind
	Text string
}

func (e *RefusedError) Error() string {
	texts := make([]string, len(e.Refusals))
	for i, r := range e.Refusals {
		texts[i] = r.Text
	}
	return fmt.Sprintf("patch %s cannot be turned into an update:\n  %s", e.Patch, strings.Join(texts, "\n  "))
}

// NothingToDoError says a patch changes no code the running kernel will
// run again: its objects compile to the same code, or it changes only
// code that runs at boot, module load or unload (NextBoot names it, as
// "object: function (section)"). There is nothing to apply; the change
// takes effect with the next boot.
type NothingToDoError struct {
	Patch    string
	NextBoot []string
	// Why says why no object changes, when it is not that they compile
	// to the same code (a header no built object includes).
	Why string
}

func (e *NothingToDoError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("patch %s: %s: nothing to do at run time", e.Patch, e.Why)
	}
	if len(e.NextBoot) == 0 {
		return fmt.Sprintf("patch %s changes no code of the running kernel (the objects it touches compile to the same code): nothing to do at run time", e.Patch)
	}
	return fmt.Sprintf("patch %s changes only code that runs at boot, module load or unload: nothing to do at run time; it takes effect with the next boot:\n  %s",
		e.Patch, strings.Join(e.NextBoot, "\n  "))
}

// Build compiles the objects the patch touches before and after it, finds
// the changed functions, builds the update module and writes the pack.
func Build(ctx context.Context, o Options) (*pack.Manifest, error) {
	err := pack.CheckID(o.ID)
	if err != nil {
		return nil, err
	}
	if o.Patch, err = filepath.Abs(o.Patch); err != nil {
		return nil, err
	}
	diff, err := os.ReadFile(o.Patch)
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	sources, err := PatchedFiles(o.Patch, diff)
	if err != nil {
		return nil, err
	}
	if err := o.Tree.Check(o.Config); err != nil {
		return nil, err
	}
	compiler, err := o.Tree.CheckCompiler(ctx)
	if err != nil {
		return nil, err
	}
	version, err := utsVersion(o.Headers)
	if err != nil {
		return nil, err
	}
	work := o.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "livesplice-build-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
	}
	objects, foreign, err := o.Tree.patchObjects(ctx, o.Patch, sources)
	if err != nil {
		return nil, err
	}
	kernelObjects, err := o.compile(ctx, objects, foreign, work)
	if err != nil {
		return nil, err
	}

	extractDir, modDir := filepath.Join(work, "extract"), filepath.Join(work, "module")
	if err := os.MkdirAll(extractDir, 0o755); err != nil {
		return nil, err
	}
	// What the update's special-section entries are measured with and
	// what the kernel's module loader can resolve: both from the target's
	// headers (see differ/special_carry.go).
	sizes, err := module.EntrySizes(ctx, o.Headers)
	if err != nil {
		return nil, err
	}
	exported, err := module.Exported(o.Headers)
	if err != nil {
		return nil, err
	}
	exporters, err := module.Exporters(o.Headers)
	if err != nil {
		return nil, err
	}
	xopts := differ.ExtractOptions{EntrySizes: sizes, Exported: exported}
	spec := module.Spec{
		ID:          o.ID,
		Name:        pack.ModuleName(o.ID),
		Description: o.Description,
	}
	var u extracted
	var refused []Refusal
	for i, obj := range objects {
		out := filepath.Join(extractDir, fmt.Sprintf("patch%d.o", i))
		xopts.Prefix = fmt.Sprintf("ls%d_", i)
		xopts.Object, xopts.Source = kernelObjects[obj], obj
		err := u.extract(obj, filepath.Join(work, "pre", obj), filepath.Join(work, "post", obj), xopts, exporters, out, &spec)
		var re *RefusedError
		if errors.As(err, &re) {
			refused = append(refused, re.Refusals...)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	if len(refused) > 0 {
		return nil, &RefusedError{Patch: o.Patch, Refusals: refused}
	}
	if len(u.funcs) == 0 {
		return nil, &NothingToDoError{Patch: o.Patch, NextBoot: u.nextBoot}
	}

	if spec.ImportNS, err = module.Namespaces(o.Headers, spec.Objects); err != nil {
		return nil, err
	}
	symbols, err := module.Generate(spec, modDir)
	if err != nil {
		return nil, err
	}
	ko, err := module.Build(ctx, modDir, o.Headers)
	if err != nil {
		return nil, err
	}
	koData, err := os.ReadFile(ko)
	if err != nil {
		return nil, err
	}
	m := pack.Manifest{
		ID:          o.ID,
		Description: o.Description,
		CVEs:        o.CVEs,
		Target:      pack.Target{Release: o.Tree.Release, Version: version, Compiler: compiler, Source: o.Source},
		Module:      spec.Name + ".ko",
		ModuleName:  spec.Name,
		Functions:   u.funcs,
		Anchors:     u.anchors,
		NextBoot:    u.nextBoot,
		Livepatch:   spec.Livepatch,
		Symbols:     symbols,
	}
	if err := pack.Write(o.Out, m, map[string][]byte{m.Module: koData}); err != nil {
		return nil, fmt.Errorf("writing pack %s: %w", o.Out, err)
	}
	return &m, nil
}

// compile builds objects from the pristine tree into work/pre and from the
// patched tree into work/post, and returns the kernel object each is
// built into (objectOf). Foreign objects (linked into neither vmlinux nor
// a module) are built too, and refused if the patch changes them.
//
// An object is built under the path kbuild gives it (Tree.kbuildTargets)
// when its directory's Makefile does not name it (Tree.ownTargets), or
// when the pristine tree does not build it under its own path; the
// results keep the source's path.
func (o Options) compile(ctx context.Context, objects, foreign []string, work string) (map[string]string, error) {
	kernelObjects := map[string]string{}
	pre, post := filepath.Join(work, "pre"), filepath.Join(work, "post")
	build := func(targets []string) error {
		return o.Tree.BuildWithPatch(ctx, o.Patch, false, append(slices.Clip(targets), foreign...), pre, post,
			func() error {
				for i, obj := range objects {
					ko, err := objectOf(o.Tree.Dir, targets[i])
					if err != nil {
						return err
					}
					kernelObjects[obj] = ko
				}
				return nil
			})
	}
	targets := objects
	if !o.Tree.ownTargets(objects) {
		var err error
		if targets, err = o.Tree.kbuildTargets(ctx, objects); err != nil {
			return nil, err
		}
	}
	err := build(targets)
	var ce *CompileError
	if errors.As(err, &ce) && ce.Pristine && slices.Equal(targets, objects) {
		alt, terr := o.Tree.kbuildTargets(ctx, objects)
		if terr != nil {
			return nil, errors.Join(err, terr)
		}
		if !slices.Equal(alt, objects) {
			err = build(alt)
		}
	}
	if err != nil {
		return nil, err
	}
	return kernelObjects, foreignChanged(o.Patch, foreign, pre, post)
}

var (
	moduleFlagRE = regexp.MustCompile(`(^|\s)-DMODULE(\s|$)`)
	modNameRE    = regexp.MustCompile(`-DKBUILD_MODNAME='"([A-Za-z0-9_]+)"'`)
)

// objectOf says which kernel object the compiled object obj (relative to
// the tree) is part of: pack.Vmlinux, or, when Kbuild compiles it for a
// module (-DMODULE in its .o.cmd), the module's name (KBUILD_MODNAME,
// what lsmod shows).
func objectOf(tree, obj string) (string, error) {
	cmdFile := filepath.Join(tree, filepath.Dir(obj), "."+filepath.Base(obj)+".cmd")
	data, err := os.ReadFile(cmdFile)
	if err != nil {
		return "", fmt.Errorf("object %s: %w", obj, err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if !moduleFlagRE.MatchString(line) {
		return pack.Vmlinux, nil
	}
	m := modNameRE.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("object %s is built for a module, but %s names no KBUILD_MODNAME", obj, cmdFile)
	}
	return m[1], nil
}

// fixupObject says where code of kernel object object finds target: in
// vmlinux or another module when that one exports it, else in the object
// itself (a module's statics, its other objects' globals, its own
// exports). vmlinux code's fix-ups are all to vmlinux.
func fixupObject(object, target string, exporters map[string]string) string {
	if e, ok := exporters[target]; ok && object != pack.Vmlinux {
		return e
	}
	return object
}

// extracted is what the objects of one update give: the replaced
// functions, the anchors, and what takes effect only at the next boot.
type extracted struct {
	funcs, anchors []pack.Function
	nextBoot       []string
}

// extract diffs one object and writes its replacement code to out, adding
// what the module needs to spec and the functions to u.
func (u *extracted) extract(obj, prePath, postPath string, xopts differ.ExtractOptions, exporters map[string]string, out string, spec *module.Spec) error {
	pre, err := elfobj.Open(prePath)
	if err != nil {
		return err
	}
	post, err := elfobj.Open(postPath)
	if err != nil {
		return err
	}
	cs, err := differ.Diff(pre, post)
	if err != nil {
		return fmt.Errorf("object %s: %w", obj, err)
	}
	if len(cs.Refused) > 0 {
		return refusedError(obj, cs.Refused)
	}
	for _, fn := range cs.NextBoot {
		u.nextBoot = append(u.nextBoot, fmt.Sprintf("%s: %s (%s)", obj, fn.Name, fn.Section))
	}
	if len(cs.Changed) == 0 && len(cs.Added) == 0 {
		return nil
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	ex, err := differ.Extract(cs, xopts, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var dre *differ.RefusedError
	if errors.As(err, &dre) {
		return refusedError(obj, dre.Refused)
	}
	if err != nil {
		return fmt.Errorf("object %s: %w", obj, err)
	}
	if xopts.Object != pack.Vmlinux && len(ex.Livepatch) > 0 {
		// A module's code links against vmlinux's exports only: its
		// unexported keys and per-CPU variables are the module's own,
		// and the kernel resolves livepatch relocations at load only
		// for vmlinux.
		var rs []differ.Refusal
		for _, name := range ex.Livepatch {
			rs = append(rs, differ.Refusal{Kind: differ.RefuseReference, Symbol: name, Section: "-",
				Reason: fmt.Sprintf("a static key or per-CPU variable (a tracepoint, dynamic debug) of module %s: the kernel resolves those at load only in vmlinux", xopts.Object)})
		}
		return refusedError(obj, rs)
	}
	for i := range ex.Fixups {
		ex.Fixups[i].Object = fixupObject(xopts.Object, ex.Fixups[i].Target, exporters)
	}
	spec.Objects = append(spec.Objects, out)
	spec.Functions = append(spec.Functions, ex.Functions...)
	spec.Fixups = append(spec.Fixups, ex.Fixups...)
	for _, name := range ex.Livepatch {
		if !slices.Contains(spec.Livepatch, name) {
			spec.Livepatch = append(spec.Livepatch, name)
		}
	}
	u.funcs = append(u.funcs, ex.Functions...)
	u.anchors = append(u.anchors, ex.Anchors...)
	return nil
}

// refusedError names the object in each of the differ's refusals.
func refusedError(obj string, refused []differ.Refusal) *RefusedError {
	re := &RefusedError{}
	for _, r := range refused {
		re.Refusals = append(re.Refusals, Refusal{Kind: r.Kind, Text: fmt.Sprintf("%s: %s (section %s): %s", obj, r.Symbol, r.Section, r.Reason)})
	}
	return re
}

// utsVersion returns UTS_VERSION from a headers tree: what `uname -v`
// prints on the kernel the headers belong to.
func utsVersion(headers string) (string, error) {
	path := filepath.Join(headers, "include", "generated", "utsversion.h")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kernel headers: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "#define UTS_VERSION "); ok {
			return strings.Trim(strings.TrimSpace(v), `"`), nil
		}
	}
	return "", fmt.Errorf("%s has no UTS_VERSION", path)
}
