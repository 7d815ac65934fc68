package corpus

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"sort"
	"strings"

	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/elfobj"
)

// BaseName is a function's C name: its symbol without gcc's clone and
// split suffixes (.isra.N, .constprop.N, .part.N, .cold, ...).
func BaseName(sym string) string {
	name, _, _ := strings.Cut(sym, ".")
	return name
}

// matches reports whether the C function name fn is what the manifest
// calls m. Macro-defined functions, MACRO(arg), match every function the
// macro defines around arg (__do_sys_arg, __se_sys_arg, ____arg, arg...).
func matches(m, fn string) bool {
	macro, arg, ok := strings.Cut(m, "(")
	if !ok {
		return m == fn
	}
	arg = strings.TrimSuffix(arg, ")")
	if macro == "" || arg == "" {
		return false
	}
	return fn == arg || strings.HasSuffix(fn, "_"+arg)
}

// Inlining maps a function's C name to the C names of every function gcc
// inlined into its out-of-line code, directly or through other inlined
// functions, as the object's DWARF (DW_TAG_inlined_subroutine) records.
type Inlining map[string]map[string]bool

// ReadInlining reads the inlining tree of an object from its DWARF.
func ReadInlining(path string) (Inlining, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("%s: no usable DWARF (the inlining check needs CONFIG_DEBUG_INFO): %w", path, err)
	}
	// First pass: the name of every entry that has one, by offset, so
	// that abstract origins and specifications resolve in any order.
	names := map[dwarf.Offset]string{}
	refs := map[dwarf.Offset]dwarf.Offset{}
	err = eachEntry(d, path, func(e *dwarf.Entry) {
		if e.Tag != dwarf.TagSubprogram && e.Tag != dwarf.TagInlinedSubroutine {
			return
		}
		if n, ok := e.Val(dwarf.AttrName).(string); ok {
			names[e.Offset] = n
		}
		for _, a := range []dwarf.Attr{dwarf.AttrAbstractOrigin, dwarf.AttrSpecification} {
			if o, ok := e.Val(a).(dwarf.Offset); ok {
				refs[e.Offset] = o
				break
			}
		}
	})
	if err != nil {
		return nil, err
	}
	nameOf := func(off dwarf.Offset) string {
		for range 8 {
			if n, ok := names[off]; ok {
				return n
			}
			next, ok := refs[off]
			if !ok {
				return ""
			}
			off = next
		}
		return ""
	}
	// Second pass: inlined subroutines under each concrete subprogram.
	inl := Inlining{}
	type frame struct{ fn string }
	var stack []frame
	err = eachEntry(d, path, func(e *dwarf.Entry) {
		if e.Tag == 0 {
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			return
		}
		cur := ""
		if len(stack) > 0 {
			cur = stack[len(stack)-1].fn
		}
		switch e.Tag {
		case dwarf.TagSubprogram:
			// Concrete code has an address (low_pc or ranges); an
			// abstract instance or a declaration has none.
			if e.Val(dwarf.AttrLowpc) != nil || e.Val(dwarf.AttrRanges) != nil {
				cur = nameOf(e.Offset)
			} else {
				cur = ""
			}
		case dwarf.TagInlinedSubroutine:
			if cur != "" {
				if n := nameOf(e.Offset); n != "" {
					if inl[cur] == nil {
						inl[cur] = map[string]bool{}
					}
					inl[cur][n] = true
				}
			}
		}
		if e.Children {
			stack = append(stack, frame{cur})
		}
	})
	if err != nil {
		return nil, err
	}
	return inl, nil
}

// eachEntry calls fn on every entry of d, in order; path names the object
// in errors.
func eachEntry(d *dwarf.Data, path string, fn func(*dwarf.Entry)) error {
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return fmt.Errorf("%s: DWARF: %w", path, err)
		}
		if e == nil {
			return nil
		}
		fn(e)
	}
}

// merge adds the inlining of o to in.
func (in Inlining) merge(o Inlining) {
	for fn, set := range o {
		if in[fn] == nil {
			in[fn] = map[string]bool{}
		}
		for n := range set {
			in[fn][n] = true
		}
	}
}

// funcSymbols returns the C names of the functions an object defines, with
// their sections.
func funcSymbols(f *elfobj.File) map[string][]string {
	out := map[string][]string{}
	for _, s := range f.Symbols {
		if s.Type == elf.STT_FUNC && s.Defined() {
			out[BaseName(s.Name)] = append(out[BaseName(s.Name)], s.Section.Name)
		}
	}
	return out
}

// Reported is one function (or other symbol) a changeset reports.
type Reported struct {
	Symbol string
	How    string // changed, added, refused: REASON
	// Why is how the patch explains it: "edited", "inlines X", or empty
	// when it does not.
	Why string
}

// Result is the comparison of one changeset with its manifest entry.
type Result struct {
	Reported   []Reported
	Mismatches []string
}

// Check compares a changeset with what the patch edits per its manifest
// entry:
//
//   - every function the patch edits (functions, new_functions) is reported
//     (changed, added or refused); one the objects have no symbol for must
//     have been inlined (per DWARF) into at least one reported function;
//   - every reported function is one the patch edits, or a function into
//     which gcc inlined one the patch edits (per the DWARF inlining trees
//     of the pre and post objects: DW_TAG_inlined_subroutine under the
//     function's out-of-line code, at any depth). This is the
//     approximation of "callers of changed inlined functions": it does not
//     check that the inlined copy is what changed;
//   - unless e.NoCodeChange says why the edits compile to the same code;
//   - a refusal of a symbol that is not a function (data, a section) is a
//     mismatch unless the manifest says the patch may change data.
func Check(e *Entry, cs *differ.Changeset, pre, post *elfobj.File, inl Inlining) Result {
	var res Result
	mismatch := func(format string, args ...any) {
		res.Mismatches = append(res.Mismatches, fmt.Sprintf(format, args...))
	}
	preFns, postFns := funcSymbols(pre), funcSymbols(post)
	isFunc := func(sym string) bool {
		b := BaseName(sym)
		return len(preFns[b]) > 0 || len(postFns[b]) > 0
	}
	touched := e.Touched()
	explain := func(fn string) string {
		for _, m := range touched {
			if matches(m, fn) {
				return "edited"
			}
		}
		var via []string
		for n := range inl[fn] {
			for _, m := range touched {
				if matches(m, n) {
					via = append(via, n)
				}
			}
		}
		if len(via) > 0 {
			sort.Strings(via)
			return "inlines " + strings.Join(via, ",")
		}
		return ""
	}
	add := func(sym, how string) {
		why := explain(BaseName(sym))
		res.Reported = append(res.Reported, Reported{Symbol: sym, How: how, Why: why})
		if why == "" {
			mismatch("%s (%s): reported but the patch does not edit it nor a function inlined into it", sym, how)
		}
	}
	for _, f := range cs.Changed {
		add(f.Name, fmt.Sprintf("changed %d->%d bytes", f.PreSize, f.PostSize))
	}
	for _, f := range cs.Added {
		add(f.Name, fmt.Sprintf("added %d bytes", f.PostSize))
	}
	for _, f := range cs.NextBoot {
		add(f.Name, fmt.Sprintf("next boot only (%s)", f.Section))
	}
	for _, r := range cs.Refused {
		how := fmt.Sprintf("refused in %s: %s", r.Section, r.Reason)
		if isFunc(r.Symbol) {
			add(r.Symbol, how)
			continue
		}
		res.Reported = append(res.Reported, Reported{Symbol: r.Symbol, How: how, Why: "data"})
		if e.DataChange != "maybe" {
			mismatch("%s: non-function refusal (%s) but the manifest says the patch changes no data", r.Symbol, how)
		}
	}
	// Every edited function must be there, itself or through its callers.
	want := append(append([]string(nil), e.Functions...), e.NewFunctions...)
	for _, m := range want {
		found := false
		for _, r := range res.Reported {
			if matches(m, BaseName(r.Symbol)) {
				found = true
				break
			}
		}
		if found || e.NoCodeChange != "" {
			continue
		}
		hasSym := false
		for fn := range preFns {
			hasSym = hasSym || matches(m, fn)
		}
		for fn := range postFns {
			hasSym = hasSym || matches(m, fn)
		}
		var callers []string
		for _, r := range res.Reported {
			for n := range inl[BaseName(r.Symbol)] {
				if matches(m, n) {
					callers = append(callers, r.Symbol)
					break
				}
			}
		}
		inlinedSomewhere := false
		for _, set := range inl {
			for n := range set {
				inlinedSomewhere = inlinedSomewhere || matches(m, n)
			}
		}
		switch {
		case hasSym:
			mismatch("%s: edited by the patch, has a symbol, not reported", m)
		case len(callers) > 0:
			// inlined everywhere; its callers stand for it
		case inlinedSomewhere:
			mismatch("%s: edited by the patch and inlined, but no function it is inlined into is reported", m)
		default:
			mismatch("%s: edited by the patch, but neither object has its code (not built in this config?)", m)
		}
	}
	return res
}
