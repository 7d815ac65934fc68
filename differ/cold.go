package differ

import (
	"regexp"
	"sort"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// Cold parts.
//
// gcc moves the unlikely paths of a function F (error handling, WARN and
// printk calls, branches __builtin_expect marks unlikely, paths into cold
// functions) into a piece of their own, F.cold, in .text.unlikely.F: a
// local STT_FUNC symbol that nothing calls, that has no fentry call, whose
// stack frame is F's, reached by jumps from F (and by jump labels and
// exception table fixups of F) and jumping back into F. Clones and split
// functions have theirs (F.isra.0.cold, F.part.0.cold); gcc before 9
// numbered them (F.cold.N). The running kernel has each in kallsyms.
// So a cold part travels with its parent:
//
//   - F changed when F or any of its cold parts differ (sameCopies); the
//     cold part of a renumbered clone (F.isra.1.cold for F.isra.0.cold)
//     is correlated like the clone, by stem (correlate.go);
//   - the new F's cold parts are extracted with it, laid out after it in
//     its section (planCold): one NewSize covers them, so the helper's
//     undo stack check covers them with F. Their relocations, special
//     section entries and ORC are planned like F's; the jumps between F
//     and its cold parts stay inside the object. Fix-ups in a cold part
//     are relative to F's global symbol;
//   - the old F's cold parts get no jump: once F is redirected nothing
//     enters them but a task already inside, and the stack check refuses
//     that. The pack carries their pre code (pack.Function.Cold) for
//     run-pre matching, which also gives the helper their running
//     addresses for the stack check.
//
// .part.N pieces (gcc's partial inlining) are functions of their own,
// called, with an fentry call: they are compared, replaced and matched
// like any function, their cold parts travel with them.

var coldName = regexp.MustCompile(`^(.+)\.cold(\.[0-9]+)?$`)

// coldParent returns the name of the function a cold part belongs to.
func coldParent(name string) (string, bool) {
	m := coldName.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// indexCold fills o.cold from o.funcs.
func (o *object) indexCold() {
	o.cold = map[string][]*elfobj.Symbol{}
	for name, syms := range o.funcs {
		if parent, ok := coldParent(name); ok {
			o.cold[parent] = append(o.cold[parent], syms...)
		}
	}
	for _, parts := range o.cold {
		sort.Slice(parts, func(i, j int) bool { return parts[i].Name < parts[j].Name })
	}
}

// coldParts returns the cold parts of function name, by name.
func (o *object) coldParts(name string) []*elfobj.Symbol { return o.cold[name] }

// sameCold compares the cold parts of function name in pre and post.
func (d *differ) sameCold(name string) (bool, error) {
	pre, post := d.pre.coldParts(name), d.post.coldParts(name)
	if len(pre) != len(post) {
		return false, nil
	}
	for i := range pre {
		if pre[i].Name != post[i].Name {
			return false, nil
		}
		same, err := d.sameFunc(pre[i], post[i])
		if err != nil || !same {
			return same, err
		}
	}
	return true, nil
}

// compareOrphanCold refuses a changed cold part whose parent is in
// neither object: nothing would carry it.
func (d *differ) compareOrphanCold(name string) error {
	parent, _ := coldParent(name)
	if len(d.pre.funcs[parent]) > 0 || len(d.post.funcs[parent]) > 0 {
		return nil // judged with its parent
	}
	post, pre := d.post.funcs[name], d.pre.funcs[name]
	same := len(pre) == len(post)
	for i := 0; same && i < len(pre); i++ {
		var err error
		if same, err = d.sameFunc(pre[i], post[i]); err != nil {
			return err
		}
	}
	if !same {
		d.refuse(RefuseOther, name, post[0].Section.Name, "cold part %s changed, and its function %s is in neither build: cannot carry it", name, parent)
	}
	return nil
}

// planCold plans the cold parts of p's post function into p, each after
// the previous one at its section's alignment, and returns their
// refusals. p.size becomes the size of the function with its cold parts.
func planCold(pre, post *object, p *plan, extracted map[string]bool, pol *dataPolicy) []Refusal {
	var rs []Refusal
	at := uint64(len(p.code))
	for _, s := range post.coldParts(p.fn.Name) {
		cp, prs := planFunction(pre, post, s, extracted, pol)
		rs = append(rs, prs...)
		if cp == nil {
			continue
		}
		align := max(s.Section.Addralign, 1)
		at = (at + align - 1) / align * align
		cp.root, cp.at = p, at
		p.parts = append(p.parts, cp)
		at += uint64(len(cp.code))
	}
	p.size = at
	return rs
}

// extractedWithCold adds the cold parts of the extracted functions to
// the set of what goes into the object.
func extractedWithCold(post *object, set map[string]bool) map[string]bool {
	for name := range set {
		for _, s := range post.coldParts(name) {
			set[s.Name] = true
		}
	}
	return set
}

// preCold describes the pre cold parts of fn for run-pre matching.
func preCold(o *object, fn *elfobj.Symbol, sizes map[string]int) ([]pack.Function, error) {
	var out []pack.Function
	for _, s := range o.coldParts(fn.Name) {
		f, err := preFunction(o, s, sizes)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}
