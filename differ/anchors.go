package differ

import (
	"debug/elf"
	"sort"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// anchors returns the pre functions whose code locates, on the target, the
// statics the replacement needs and the replaced functions' pre code does
// not refer to. Run-pre matching derives symbol addresses from the pre
// code it compares; a static only the new code uses would otherwise have
// to be unique in kallsyms. A static function anchors itself (its code
// finds it); a static variable is anchored by the smallest function that
// refers to it, unless an anchor chosen already does. __init code is never
// an anchor: it is gone from the running kernel.
func (x *extractor) anchors() ([]pack.Function, error) {
	covered := map[string]bool{}
	for _, r := range x.out.Functions {
		for _, f := range append([]pack.Function{r}, r.Cold...) {
			covered[f.Name] = true
			for _, rel := range f.PreRelocs {
				covered[rel.Symbol] = true
			}
		}
	}
	var funcs, data []*elfobj.Symbol
	seen := map[string]bool{}
	for _, fx := range x.out.Fixups {
		if covered[fx.Target] || seen[fx.Target] {
			continue
		}
		seen[fx.Target] = true
		s := x.pre.localDefinition(fx.Target)
		switch {
		case s == nil:
		case s.Type == elf.STT_FUNC:
			funcs = append(funcs, s)
		default:
			data = append(data, s)
		}
	}
	var out []pack.Function
	add := func(fn *elfobj.Symbol) error {
		r, err := x.preFunction(fn)
		if err != nil {
			return err
		}
		covered[fn.Name] = true
		for _, rel := range r.PreRelocs {
			covered[rel.Symbol] = true
		}
		out = append(out, r)
		return nil
	}
	for _, fn := range funcs {
		if !initSection(fn.Section.Name) {
			if err := add(fn); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range data {
		if covered[d.Name] {
			continue
		}
		if fn := x.pre.smallestUser(d); fn != nil {
			if err := add(fn); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// localDefinition returns the local symbol called name the object
// defines, if exactly one.
func (o *object) localDefinition(name string) *elfobj.Symbol {
	var found *elfobj.Symbol
	for _, s := range o.f.Symbols {
		if s == nil || s.Name != name || !s.Defined() || s.Bind != elf.STB_LOCAL || s.IsSection() {
			continue
		}
		if found != nil {
			return nil
		}
		found = s
	}
	return found
}

// smallestUser returns the smallest function (not __init) whose code
// refers to sym.
func (o *object) smallestUser(sym *elfobj.Symbol) *elfobj.Symbol {
	var users []*elfobj.Symbol
	for _, fns := range o.funcs {
		for _, fn := range fns {
			if initSection(fn.Section.Name) || len(fns) != 1 {
				continue
			}
			for _, r := range fn.Section.RelocsIn(fn.Value, fn.Value+fn.Size) {
				if t := o.resolve(fn.Section, r); t.kind == tNamed && t.sym == sym {
					users = append(users, fn)
					break
				}
			}
		}
	}
	sort.Slice(users, func(i, j int) bool {
		if users[i].Size != users[j].Size {
			return users[i].Size < users[j].Size
		}
		return users[i].Name < users[j].Name
	})
	if len(users) == 0 {
		return nil
	}
	return users[0]
}
