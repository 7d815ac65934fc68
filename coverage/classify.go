package coverage

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/internal/tail"
	"github.com/livesplice/livesplice/module"
)

// Category is an outcome a person understands, the unit of the report's
// tables. Its value is the stable key stored in the results file.
type Category string

// The categories, in the order the report lists them.
const (
	// Built is not an outcome: the pack waits for the guest.
	Built         Category = "built"
	Shipped       Category = "shipped"
	ShippedWaited Category = "shipped-waited"
	NothingToDo   Category = "nothing-to-do"
	NotAlone      Category = "not-alone"
	PreBroken     Category = "pre-does-not-build"
	DataChanged   Category = "data"
	Layout        Category = "layout"
	Signature     Category = "signature"
	Cold          Category = "cold"
	ModuleObject  Category = "module-object"
	NoCode        Category = "no-code-change"
	InitCode      Category = "init-code"
	StaticKey     Category = "static-key"
	Unexported    Category = "unexported"
	TextSection   Category = "text-section"
	PatchSite     Category = "patch-site"
	Duplicate     Category = "duplicate"
	SpecialEntry  Category = "special-entry"
	NewFile       Category = "new-file"
	OtherRefusal  Category = "other-refusal"
	UpdateModule  Category = "update-module"
	BuildTimeout  Category = "build-timeout"
	OtherError    Category = "other-error"
	CheckRefused  Category = "check-refused"
	ApplyRefused  Category = "apply-refused"
	ModuleLoad    Category = "module-load"
	GuestBroken   Category = "guest-broken"
	KernelProblem Category = "kernel-problem"
	UndoFailed    Category = "undo-failed"
	GuestCrashed  Category = "guest-crashed"
)

// categories says, per category, what the report calls it.
var categories = []struct {
	c     Category
	title string
}{
	{Built, "built, waiting for the guest"},
	{Shipped, "built, checked, applied, the guest kept working, undone"},
	{ShippedWaited, "built, checked, applied and undone while the target module does not load in the guest (no such hardware): the update waited for it, and a load attempt with the update applied was patched at load and left the guest working"},
	{NothingToDo, "nothing to do at run time, and the tool says so"},
	{NotAlone, "does not compile alone against the pre tree (needs a change the same delta makes elsewhere, e.g. a header)"},
	{PreBroken, "the builder cannot compile the object from the pristine tree (not a target of its own, or new in the delta)"},
	{DataChanged, "changed initialised data"},
	{Layout, "struct layout changed"},
	{Signature, "a function's signature changed and callers that are not replaced would pass the old arguments"},
	{Cold, "a changed function has a .cold part"},
	{ModuleObject, "the object is part of a module: patching modules is not supported yet"},
	{NoCode, "no function's code changes, reported as a failure"},
	{InitCode, "only __init/__exit code changes, reported as a failure"},
	{StaticKey, "a static key (jump label) that is not exported: tracepoints, dynamic debug"},
	{Unexported, "a reference the update module cannot resolve (an unexported symbol the module loader must resolve, anonymous data, a new static)"},
	{TextSection, "code changed in a section without function symbols (.cpuidle.text, .noinstr.text, ...)"},
	{PatchSite, "the function's first bytes cannot take the jump (too short, branch or relocation in the patch site)"},
	{Duplicate, "a function is defined several times in the object"},
	{SpecialEntry, "a special-section entry cannot be carried"},
	{NewFile, "the patch adds or deletes a file"},
	{OtherRefusal, "other refusal"},
	{UpdateModule, "the update module does not build (kbuild, modpost)"},
	{BuildTimeout, "the build did not finish in time"},
	{OtherError, "other error"},
	{CheckRefused, "built, but `livesplice check` refuses it in the guest"},
	{ApplyRefused, "built and checked, but `livesplice apply` refuses it"},
	{ModuleLoad, "the target module does not load in the guest"},
	{GuestBroken, "applied, but the guest stopped working (the exercise failed)"},
	{KernelProblem, "applied, but the kernel log shows a warning, BUG or oops"},
	{UndoFailed, "applied, but `livesplice undo` failed"},
	{GuestCrashed, "the guest crashed or hung"},
}

// Title is what the report calls c.
func (c Category) Title() string {
	for _, d := range categories {
		if d.c == c {
			return d.title
		}
	}
	return string(c)
}

// Known reports whether c is one of the categories above.
func (c Category) Known() bool { return c.rank() < len(categories) }

// rank orders categories for the report (unknown ones last).
func (c Category) rank() int {
	for i, d := range categories {
		if d.c == c {
			return i
		}
	}
	return len(categories)
}

// DataOrLayout reports whether c is a refusal for changed data or struct
// layout: with the manifest's data_change=maybe, such a patch is not
// code-only and is listed apart from the count.
func (c Category) DataOrLayout() bool { return c == DataChanged || c == Layout }

// BuildOutcome is what building one patch gave.
type BuildOutcome struct {
	// Category is the outcome; for a refusal with several reasons, the
	// one that decides how the patch counts (see Refusal precedence).
	Category Category `json:"category"`
	// Reason is the tool's message for the category (its first line),
	// with the patch's paths replaced by OBJ, PATCH and TREE.
	Reason string `json:"reason"`
	// Refusals are every refusal of a refused build, each classified.
	Refusals []Refusal `json:"refusals,omitempty"`
	// Detail is the end of the message of an error the classifier does
	// not know (OtherError), for whoever adds its rule.
	Detail string `json:"detail,omitempty"`
}

// Refusal is one reason a build gave.
type Refusal struct {
	Category Category `json:"category"`
	Text     string   `json:"text"`
}

// Names are the patch-specific strings the classifier replaces in
// messages, so that one reason reads the same for every patch.
type Names struct {
	Tree, Patch, Object, Work string
}

// ClassifyBuild classifies the error builder.Build returned (nil: Built).
//
// Typed errors decide first (errors.As/Is): one rule per error type of
// the builder and of what it calls; a new typed error slots in as one
// more rule. A refusal's reasons go by their kind (refusalCategory).
// Errors that carry no type yet are sorted by the phrases of
// refusalRules; anything else is "other error" with its first line.
func ClassifyBuild(err error, n Names) BuildOutcome {
	if err == nil {
		return BuildOutcome{Category: Built}
	}
	for _, r := range typedRules {
		if o, ok := r(err, n); ok {
			return o
		}
	}
	line := n.normalise(firstLine(err.Error()))
	if c := phraseCategory(line); c != "" {
		return BuildOutcome{Category: c, Reason: line}
	}
	return BuildOutcome{Category: OtherError, Reason: line, Detail: tail.Lines(n.normalise(strings.TrimSpace(err.Error())), detailLines)}
}

// detailLines is how much of an unknown error a record keeps.
const detailLines = 10

// typedRule classifies err if it is of the rule's type.
type typedRule func(err error, n Names) (BuildOutcome, bool)

// typedRules are tried in order.
var typedRules = []typedRule{
	refusedRule,
	nothingRule,
	compileRule,
	sentinel(module.ErrBuild, UpdateModule),
	sentinel(context.DeadlineExceeded, BuildTimeout),
}

// refusedRule classifies a *builder.RefusedError by its reasons.
func refusedRule(err error, n Names) (BuildOutcome, bool) {
	var re *builder.RefusedError
	if !errors.As(err, &re) {
		return BuildOutcome{}, false
	}
	var o BuildOutcome
	for _, rf := range re.Refusals {
		text := n.normalise(rf.Text)
		c := refusalCategory(rf.Kind, text)
		o.Refusals = append(o.Refusals, Refusal{Category: c, Text: text})
		if o.Category == "" || precedes(c, o.Category) {
			o.Category, o.Reason = c, text
		}
	}
	if o.Category == "" {
		o.Category, o.Reason = OtherRefusal, n.normalise(firstLine(err.Error()))
	}
	return o, true
}

// nothingRule classifies a *builder.NothingToDoError, naming what takes
// effect at the next boot.
func nothingRule(err error, n Names) (BuildOutcome, bool) {
	var nd *builder.NothingToDoError
	if !errors.As(err, &nd) {
		return BuildOutcome{}, false
	}
	reason := n.normalise(firstLine(err.Error()))
	if len(nd.NextBoot) > 0 {
		reason += " " + n.normalise(strings.Join(nd.NextBoot, "; "))
	}
	return BuildOutcome{Category: NothingToDo, Reason: reason}, true
}

// compileRule classifies a *builder.CompileError: the patched object does
// not compile alone (the same delta changed something it needs), or,
// before the patch, the pristine tree does not build it.
func compileRule(err error, n Names) (BuildOutcome, bool) {
	var ce *builder.CompileError
	if !errors.As(err, &ce) {
		return BuildOutcome{}, false
	}
	c := NotAlone
	if ce.Pristine {
		c = PreBroken
	}
	obj := ce.Object
	if obj == "" {
		obj = "an object"
	}
	return BuildOutcome{Category: c, Reason: n.normalise(obj + ": " + ce.FirstError)}, true
}

// sentinel classifies errors that wrap target as c.
func sentinel(target error, c Category) typedRule {
	return func(err error, n Names) (BuildOutcome, bool) {
		if !errors.Is(err, target) {
			return BuildOutcome{}, false
		}
		return BuildOutcome{Category: c, Reason: n.normalise(firstLine(err.Error()))}, true
	}
}

// precedes reports whether refusal category a decides over b when one
// patch has both: data and layout first (they decide whether the patch is
// code-only), then the rest in report order.
func precedes(a, b Category) bool {
	if a.DataOrLayout() != b.DataOrLayout() {
		return a.DataOrLayout()
	}
	return a.rank() < b.rank()
}

// kindCategory is the category of each kind of refusal the differ
// reports (differ.RefusalKind).
var kindCategory = map[differ.RefusalKind]Category{
	differ.RefuseData:      DataChanged,
	differ.RefuseLayout:    Layout,
	differ.RefuseSignature: Signature,
	differ.RefuseSite:      PatchSite,
	differ.RefuseSpecial:   SpecialEntry,
	differ.RefuseReference: Unexported,
	differ.RefuseAmbiguous: Duplicate,
	differ.RefuseCode:      TextSection,
}

// refinements split a kind where a reader wants the cases apart, by the
// differ's wording: a static key is the reference people ask about
// (tracepoints).
var refinements = []struct {
	kind differ.RefusalKind
	c    Category
	re   *regexp.Regexp
}{
	{differ.RefuseReference, StaticKey, regexp.MustCompile(`jump label|static key|__jump_table`)},
}

// refusalCategory is the category of one refusal: by its kind, refined
// by refinements; a refusal of no particular kind (RefuseOther: the
// builder's own, or an object the differ cannot read as it expects) by
// the phrases of refusalRules, else "other refusal".
func refusalCategory(kind differ.RefusalKind, text string) Category {
	for _, r := range refinements {
		if r.kind == kind && r.re.MatchString(text) {
			return r.c
		}
	}
	if c, ok := kindCategory[kind]; ok {
		return c
	}
	if c := phraseCategory(text); c != "" {
		return c
	}
	return OtherRefusal
}

// refusalRules sort the messages that carry no kind (refusals of kind
// RefuseOther, errors without a type) by the builder's and differ's own
// wording; an unknown one stays "other refusal" or "other error", shown
// verbatim, so a reworded message is visible in the report, not lost.
var refusalRules = []struct {
	c  Category
	re *regexp.Regexp
}{
	{Cold, regexp.MustCompile(`\.cold part`)},
	{ModuleObject, regexp.MustCompile(`is part of a module, not of vmlinux`)},
	{NoCode, regexp.MustCompile(`changes no function's code`)},
	{InitCode, regexp.MustCompile(`__(init|exit) function`)},
	{NewFile, regexp.MustCompile(`(new|deleted) file|creates a file|deletes a file`)},
}

// phraseCategory returns the category of a refusal text, or "".
func phraseCategory(text string) Category {
	for _, r := range refusalRules {
		if r.re.MatchString(text) {
			return r.c
		}
	}
	return ""
}

// normalise replaces the patch-specific paths in s.
func (n Names) normalise(s string) string {
	for _, r := range []struct{ from, to string }{
		{n.Work, "WORK"}, {n.Tree, "TREE"}, {n.Patch, "PATCH"}, {n.Object, "OBJ"},
	} {
		if r.from != "" {
			s = strings.ReplaceAll(s, r.from, r.to)
		}
	}
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}
