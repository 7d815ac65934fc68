package differ

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/livesplice/livesplice/elfobj"
)

// Type rules (compareTypes), from the DWARF of the pre and post objects:
//
//   - any struct or union (or typedef of an anonymous one) defined in
//     both whose size, members, member offsets or member types changed is
//     refused: code that stays and data already allocated in the running
//     kernel use the old layout;
//   - a function whose return or parameter types changed is refused when
//     it is global (callers in other objects cannot be seen), or, for a
//     static one whose code changed, when a pre function that is not
//     replaced calls it or data holds its address.
//
// Objects without DWARF in both builds are not compared; DWARF in only
// one of them is refused (the builds differ in a way the differ cannot
// classify).

// layout is one struct/union layout.
type layout struct {
	size    int64
	members []member
}

type member struct {
	name      string
	off       int64
	bitOffset int64
	typ       string
}

// signature is one function's prototype.
type signature struct {
	text     string
	external bool
}

type typeInfo struct {
	layouts map[string][]layout
	sigs    map[string][]signature
}

func (d *differ) compareTypes() error {
	pre, err := readTypes(d.pre.f)
	if err != nil {
		return err
	}
	post, err := readTypes(d.post.f)
	if err != nil {
		return err
	}
	switch {
	case pre == nil && post == nil:
		return nil
	case pre == nil || post == nil:
		d.refuse(RefuseOther, d.post.f.Name, ".debug_info", "only one of the pre and post objects has DWARF debug info: cannot compare struct layouts and signatures")
		return nil
	}
	for _, name := range sortedKeys(post.layouts) {
		a, b := pre.layouts[name], post.layouts[name]
		if len(a) == 0 || len(b) == 0 || !sameLayouts(a[1:], a[0]) || !sameLayouts(b[1:], b[0]) {
			continue // new, gone, or ambiguous in one object
		}
		if diffs := layoutDiff(name, a[0], b[0]); len(diffs) > 0 {
			d.refuse(RefuseLayout, name, ".debug_info", "layout of %s changed (%s): code that is not replaced and data already allocated in the running kernel use the old layout",
				name, strings.Join(diffs, "; "))
		}
	}
	d.compareSignatures(pre, post)
	return nil
}

func (d *differ) compareSignatures(pre, post *typeInfo) {
	changed := map[string]bool{}
	for _, fn := range d.cs.Changed {
		changed[fn.Name] = true
	}
	for _, name := range sortedKeys(post.sigs) {
		a, b := pre.sigs[name], post.sigs[name]
		if len(a) != 1 || len(b) != 1 || a[0].text == b[0].text {
			continue
		}
		sec := ".debug_info"
		if fn := single(d.post.funcs[name]); fn != nil {
			sec = fn.Section.Name
		}
		change := fmt.Sprintf("signature of %s changed from %s to %s", name, a[0].text, b[0].text)
		if a[0].external || b[0].external {
			d.refuse(RefuseSignature, name, sec, "%s: it is global, and callers in other objects, which are not replaced, would pass the old arguments", change)
			continue
		}
		if !changedClone(name, changed) {
			continue
		}
		if users := d.oldUsers(name, changed); len(users) > 0 {
			d.refuse(RefuseSignature, name, sec, "%s: %s, which %s not replaced, would pass the old arguments", change, strings.Join(users, ", "), isAre(len(users)))
		}
	}
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// calls reports whether symbol s is function name or one of its clones.
func calls(s *elfobj.Symbol, name string) bool {
	return s != nil && (s.Name == name || strings.HasPrefix(s.Name, name+"."))
}

func changedClone(name string, changed map[string]bool) bool {
	for c := range changed {
		if c == name || strings.HasPrefix(c, name+".") {
			return true
		}
	}
	return false
}

// oldUsers lists the pre functions that call name (or a clone of it)
// and are not replaced, and the data sections that hold its address.
func (d *differ) oldUsers(name string, changed map[string]bool) []string {
	seen := map[string]bool{}
	var out []string
	for _, sec := range d.pre.f.Sections {
		if sec == nil || !sec.Alloc() || ignoredSection(sec.Name) {
			continue
		}
		for _, r := range sec.Relocs {
			t := d.pre.resolve(sec, r)
			if t.kind != tNamed || !calls(t.sym, name) {
				continue
			}
			user := "data in " + sec.Name
			if sec.Executable() {
				cov := d.pre.f.Covering(sec, r.Offset)
				if cov == nil || calls(cov, name) || changed[cov.Name] {
					continue
				}
				user = cov.Name
			}
			if !seen[user] {
				seen[user] = true
				out = append(out, user)
			}
		}
	}
	sort.Strings(out)
	return out
}

func sameLayouts(ls []layout, l layout) bool {
	for _, x := range ls {
		if len(layoutDiff("", x, l)) > 0 {
			return false
		}
	}
	return true
}

// layoutDiff describes how layout b differs from a.
func layoutDiff(name string, a, b layout) []string {
	var out []string
	if a.size != b.size {
		out = append(out, fmt.Sprintf("%s changed size %d -> %d", name, a.size, b.size))
	}
	am, bm := map[string]member{}, map[string]member{}
	for _, m := range a.members {
		am[m.name] = m
	}
	for _, m := range b.members {
		bm[m.name] = m
	}
	for _, m := range a.members {
		n, ok := bm[m.name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("member %s removed (was at offset %d)", m.name, m.off))
		case n.off != m.off || n.bitOffset != m.bitOffset:
			out = append(out, fmt.Sprintf("member %s moved from offset %d to %d", m.name, m.off, n.off))
		case n.typ != m.typ:
			out = append(out, fmt.Sprintf("member %s changed type %s -> %s", m.name, m.typ, n.typ))
		}
	}
	for _, m := range b.members {
		if _, ok := am[m.name]; !ok {
			out = append(out, fmt.Sprintf("member %s added at offset %d", m.name, m.off))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readTypes reads struct layouts and function signatures from f's DWARF;
// nil without DWARF.
func readTypes(f *elfobj.File) (*typeInfo, error) {
	d, err := dwarfOf(f)
	if d == nil || err != nil {
		return nil, err
	}
	ti := &typeInfo{layouts: map[string][]layout{}, sigs: map[string][]signature{}}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: reading DWARF: %w", f.Name, err)
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagTypedef:
			if e.Val(dwarf.AttrDeclaration) != nil {
				continue
			}
			name, kind, l, ok := layoutOf(d, e)
			if ok {
				ti.layouts[kind+" "+name] = append(ti.layouts[kind+" "+name], l)
			}
		case dwarf.TagSubprogram:
			sig, name, err := signatureOf(d, r, e)
			if err != nil {
				return nil, fmt.Errorf("%s: reading DWARF: %w", f.Name, err)
			}
			if name != "" && e.Val(dwarf.AttrDeclaration) == nil {
				ti.sigs[name] = append(ti.sigs[name], sig)
			}
		}
	}
	return ti, nil
}

func layoutOf(d *dwarf.Data, e *dwarf.Entry) (string, string, layout, bool) {
	t, err := d.Type(e.Offset)
	if err != nil {
		return "", "", layout{}, false
	}
	name := ""
	if td, ok := t.(*dwarf.TypedefType); ok {
		st, ok := td.Type.(*dwarf.StructType)
		if !ok || st.StructName != "" {
			return "", "", layout{}, false
		}
		name, t = td.Name, st
	}
	st, ok := t.(*dwarf.StructType)
	if !ok || st.Incomplete {
		return "", "", layout{}, false
	}
	kind := st.Kind
	if name == "" {
		name = st.StructName
	} else {
		kind = "typedef " + kind
	}
	if name == "" {
		return "", "", layout{}, false
	}
	l := layout{size: st.ByteSize}
	for i, f := range st.Field {
		fname := f.Name
		if fname == "" {
			fname = fmt.Sprintf("(anonymous #%d)", i)
		}
		l.members = append(l.members, member{name: fname, off: f.ByteOffset, bitOffset: f.DataBitOffset + f.BitOffset, typ: typeString(f.Type)})
	}
	return name, kind, l, true
}

func typeString(t dwarf.Type) string {
	if t == nil {
		return "void"
	}
	if st, ok := t.(*dwarf.StructType); ok && st.StructName == "" {
		return st.Defn()
	}
	return t.String()
}

// signatureOf reads a subprogram entry and its children (parameters);
// the reader is left after them.
func signatureOf(d *dwarf.Data, r *dwarf.Reader, e *dwarf.Entry) (signature, string, error) {
	name, _ := e.Val(dwarf.AttrName).(string)
	ext, _ := e.Val(dwarf.AttrExternal).(bool)
	ret := "void"
	if off, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
		if t, err := d.Type(off); err == nil {
			ret = typeString(t)
		}
	}
	var params []string
	if e.Children {
		for {
			c, err := r.Next()
			if err != nil {
				return signature{}, "", err
			}
			if c == nil || c.Tag == 0 {
				break
			}
			switch c.Tag {
			case dwarf.TagFormalParameter:
				p := "?"
				if off, ok := c.Val(dwarf.AttrType).(dwarf.Offset); ok {
					if t, err := d.Type(off); err == nil {
						p = typeString(t)
					}
				}
				params = append(params, p)
			case dwarf.TagUnspecifiedParameters:
				params = append(params, "...")
			}
			if c.Children {
				r.SkipChildren()
			}
		}
	}
	return signature{text: fmt.Sprintf("%s (%s)", ret, strings.Join(params, ", ")), external: ext}, name, nil
}

// dwarfOf builds debug/dwarf data from f's .debug_* sections with their
// relocations applied (section-relative, as in a relocatable object).
func dwarfOf(f *elfobj.File) (*dwarf.Data, error) {
	get := func(name string) ([]byte, error) {
		sec := f.Section(name)
		if sec == nil || sec.Type == elf.SHT_NOBITS {
			return nil, nil
		}
		b := append([]byte(nil), sec.Data...)
		for _, r := range sec.Relocs {
			v := r.Addend
			if r.Sym != nil {
				v += int64(r.Sym.Value)
			}
			switch r.Type {
			case elf.R_X86_64_32, elf.R_X86_64_32S:
				if r.Offset+4 > uint64(len(b)) {
					return nil, fmt.Errorf("%s: relocation at %#x outside %s", f.Name, r.Offset, name)
				}
				binary.LittleEndian.PutUint32(b[r.Offset:], uint32(v))
			case elf.R_X86_64_64:
				if r.Offset+8 > uint64(len(b)) {
					return nil, fmt.Errorf("%s: relocation at %#x outside %s", f.Name, r.Offset, name)
				}
				binary.LittleEndian.PutUint64(b[r.Offset:], uint64(v))
			}
		}
		return b, nil
	}
	info, err := get(".debug_info")
	if info == nil || err != nil {
		return nil, err
	}
	var secs [8][]byte
	for i, n := range []string{".debug_abbrev", ".debug_aranges", ".debug_frame", ".debug_info", ".debug_line", ".debug_pubnames", ".debug_ranges", ".debug_str"} {
		if secs[i], err = get(n); err != nil {
			return nil, err
		}
	}
	d, err := dwarf.New(secs[0], secs[1], secs[2], secs[3], secs[4], secs[5], secs[6], secs[7])
	if err != nil {
		return nil, fmt.Errorf("%s: DWARF: %w", f.Name, err)
	}
	for _, n := range []string{".debug_addr", ".debug_line_str", ".debug_str_offsets", ".debug_rnglists", ".debug_loclists"} {
		b, err := get(n)
		if err != nil {
			return nil, err
		}
		if b != nil {
			if err := d.AddSection(n, b); err != nil {
				return nil, fmt.Errorf("%s: DWARF %s: %w", f.Name, n, err)
			}
		}
	}
	return d, nil
}
