package differ

import (
	"cmp"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strconv"
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
	pre, err := d.preTypes()
	if err != nil {
		return err
	}
	post, err := d.postTypes()
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
	if a.size == b.size && slices.Equal(a.members, b.members) {
		return nil // the common case, without building maps
	}
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

// readTypesAsync runs readTypes(f) in a goroutine of its own; the
// function it returns waits for the result. f must not change meanwhile.
func readTypesAsync(f *elfobj.File) func() (*typeInfo, error) {
	type result struct {
		ti  *typeInfo
		err error
	}
	ch := make(chan result, 1) // the goroutine never blocks, even if nobody waits
	go func() {
		ti, err := readTypes(f)
		ch <- result{ti, err}
	}()
	var r *result
	return func() (*typeInfo, error) {
		if r == nil {
			v := <-ch
			r = &v
		}
		return r.ti, r.err
	}
}

// readTypes reads struct layouts and function signatures from f's DWARF;
// nil without DWARF. One pass over the entries (dieReader) keeps what
// naming types needs (typeDIE); types are then named from those, not
// through debug/dwarf's type graph, which cost most of a Diff and its
// memory.
func readTypes(f *elfobj.File) (*typeInfo, error) {
	r, err := dwarfOf(f)
	if r == nil || err != nil {
		return nil, err
	}
	n := &typeNamer{}
	var layouts []*typeDIE // struct, union and typedef definitions, in order
	type sigEntry struct {
		name     string
		external bool
		die      *typeDIE
	}
	var sigs []sigEntry
	// stack holds, per open level of children, the type entry they
	// belong to (nil for other entries' children).
	var stack []*typeDIE
	for {
		e, err := r.next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.tag == 0 {
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		var parent *typeDIE
		if len(stack) > 0 {
			parent = stack[len(stack)-1]
		}
		var t *typeDIE
		switch e.tag {
		case dwarf.TagMember, dwarf.TagEnumerator, dwarf.TagSubrangeType, dwarf.TagFormalParameter, dwarf.TagUnspecifiedParameters:
			if parent != nil {
				parent.kids = append(parent.kids, n.newDIE(e))
			}
		case dwarf.TagSubprogram:
			t = n.newDIE(e)
			if t.name != "" && !e.decl {
				sigs = append(sigs, sigEntry{t.name, e.external, t})
			}
			if e.children {
				// Its parameters, then nothing more: the body's entries
				// (blocks, variables, inlined calls: most of a kernel
				// object's DWARF) describe no layout or signature that
				// code outside it can see.
				if err := n.skipBody(r, t); err != nil {
					return nil, err
				}
				continue
			}
		case dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagTypedef, dwarf.TagEnumerationType, dwarf.TagClassType,
			dwarf.TagBaseType, dwarf.TagPointerType, dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType,
			dwarf.TagArrayType, dwarf.TagSubroutineType, dwarf.TagUnspecifiedType:
			t = n.newDIE(e)
			n.add(t)
			if (e.tag == dwarf.TagStructType || e.tag == dwarf.TagUnionType || e.tag == dwarf.TagTypedef) && !t.decl {
				layouts = append(layouts, t)
			}
		}
		if e.children {
			stack = append(stack, t)
		}
	}
	n.index()
	ti := &typeInfo{layouts: map[string][]layout{}, sigs: map[string][]signature{}}
	for _, t := range layouts {
		if name, kind, l, ok := n.layoutOf(t); ok {
			ti.layouts[kind+" "+name] = append(ti.layouts[kind+" "+name], l)
		}
	}
	for _, s := range sigs {
		ti.sigs[s.name] = append(ti.sigs[s.name], signature{text: n.typeOf(s.die) + " (" + n.params(s.die) + ")", external: s.external})
	}
	return ti, nil
}

// skipBody reads the parameters of the subprogram r just read into t and
// leaves r after its children, jumping there through DW_AT_sibling when
// it has one.
func (n *typeNamer) skipBody(r *dieReader, t *typeDIE) error {
	sibling, hasSibling := r.die.sibling, r.die.hasSib
	for {
		c, err := r.next()
		if err != nil {
			return err
		}
		if c == nil || c.tag == 0 {
			return nil
		}
		if c.tag == dwarf.TagFormalParameter || c.tag == dwarf.TagUnspecifiedParameters {
			t.kids = append(t.kids, n.newDIE(c))
			if err := r.skipChildren(); err != nil {
				return err
			}
			continue
		}
		if hasSibling {
			return r.seek(sibling)
		}
		if err := r.skipChildren(); err != nil {
			return err
		}
	}
}

// typeDIE is what naming a type needs of one DWARF entry.
type typeDIE struct {
	tag       dwarf.Tag
	offset    dwarf.Offset
	name      string
	typ       dwarf.Offset // AttrType, 0 without
	hasType   bool
	decl      bool
	size      int64 // AttrByteSize
	off, bits int64 // members: byte and bit offset
	// value is an enumerator's DW_AT_const_value, a subrange's count
	// (a string: "" without one).
	value any
	kids  []*typeDIE
	// described is what typeOf names the type t itself (memoised):
	// state 1 while describing it, 2 once described.
	described string
	state     uint8
}

// count is a subrange's element count, "" when unknown.
func (t *typeDIE) count() string {
	s, _ := t.value.(string)
	return s
}

// newDIE returns the typeDIE of entry e, allocated in blocks.
func (n *typeNamer) newDIE(e *die) *typeDIE {
	if len(n.block) == cap(n.block) {
		n.block = make([]typeDIE, 0, 256)
	}
	n.block = n.block[:len(n.block)+1]
	t := &n.block[len(n.block)-1]
	*t = typeDIE{tag: e.tag, offset: e.off, decl: e.decl, name: string(e.name), typ: e.typ, hasType: e.hasType, size: e.byteSize}
	switch e.tag {
	case dwarf.TagMember:
		t.off, t.bits = e.memberLoc, e.bitOffset
	case dwarf.TagEnumerator:
		t.value = e.constValue
	case dwarf.TagSubrangeType:
		count := ""
		switch c, ub := e.count, e.upperBound; {
		case c != nil:
			count = fmt.Sprint(c)
		case ub != nil:
			if v, ok := ub.(int64); ok {
				count = strconv.FormatInt(v+1, 10)
			} else {
				count = "?"
			}
		}
		t.value = count
	}
	return t
}

// typeNamer names the types of one DWARF, memoised in their typeDIEs.
type typeNamer struct {
	dies  []*typeDIE     // type entries by offset (index sorts them)
	offs  []dwarf.Offset // their offsets, for lookup
	block []typeDIE      // where newDIE allocates
}

func (n *typeNamer) add(t *typeDIE) { n.dies = append(n.dies, t) }

// index sorts the type entries by offset, for lookup (the reader reads
// them in order: normally they are sorted already).
func (n *typeNamer) index() {
	byOff := func(a, b *typeDIE) int { return cmp.Compare(a.offset, b.offset) }
	if !slices.IsSortedFunc(n.dies, byOff) {
		slices.SortStableFunc(n.dies, byOff)
	}
	n.offs = make([]dwarf.Offset, len(n.dies))
	for i, t := range n.dies {
		n.offs[i] = t.offset
	}
}

// lookup returns the (first) type entry at off, or nil.
func (n *typeNamer) lookup(off dwarf.Offset) *typeDIE {
	i, ok := slices.BinarySearch(n.offs, off)
	if !ok {
		return nil
	}
	return n.dies[i]
}

// typeOf names the type t's AttrType points to, "void" without one.
func (n *typeNamer) typeOf(t *typeDIE) string {
	if !t.hasType {
		return "void"
	}
	d := n.lookup(t.typ)
	switch {
	case d == nil:
		return "?"
	case d.state == 2:
		return d.described
	case d.state == 1:
		return "(recursive)"
	}
	d.state = 1
	d.described = n.describe(d)
	d.state = 2
	return d.described
}

// describe names a type: "struct sk_buff", "*const char", "[16]u8",
// "func(*struct file, int) long", an anonymous struct or union by its
// members.
func (n *typeNamer) describe(t *typeDIE) string {
	switch t.tag {
	case dwarf.TagBaseType, dwarf.TagTypedef, dwarf.TagUnspecifiedType:
		return t.name
	case dwarf.TagPointerType:
		return "*" + n.typeOf(t)
	case dwarf.TagConstType:
		return "const " + n.typeOf(t)
	case dwarf.TagVolatileType:
		return "volatile " + n.typeOf(t)
	case dwarf.TagRestrictType:
		return "restrict " + n.typeOf(t)
	case dwarf.TagArrayType:
		dims := ""
		for _, k := range t.kids {
			if k.tag == dwarf.TagSubrangeType {
				dims += "[" + k.count() + "]"
			}
		}
		return dims + n.typeOf(t)
	case dwarf.TagSubroutineType:
		return "func(" + n.params(t) + ") " + n.typeOf(t)
	}
	kind := kindName(t.tag)
	if t.name != "" {
		return kind + " " + t.name
	}
	var b strings.Builder
	b.WriteString(kind)
	b.WriteString(" {")
	sep := ""
	for _, k := range t.kids {
		switch k.tag {
		case dwarf.TagMember:
			b.WriteString(sep)
			b.WriteString(k.name)
			b.WriteByte(' ')
			b.WriteString(n.typeOf(k))
			b.WriteByte('@')
			b.WriteString(strconv.FormatInt(k.off, 10))
		case dwarf.TagEnumerator:
			b.WriteString(sep)
			fmt.Fprintf(&b, "%s=%v", k.name, k.value)
		default:
			continue
		}
		sep = "; "
	}
	b.WriteByte('}')
	return b.String()
}

// params lists the parameter types of a subprogram or subroutine type,
// "..." for variadic ones.
func (n *typeNamer) params(t *typeDIE) string {
	var b strings.Builder
	for _, k := range t.kids {
		var p string
		switch k.tag {
		case dwarf.TagFormalParameter:
			p = n.typeOf(k)
		case dwarf.TagUnspecifiedParameters:
			p = "..."
		default:
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// kindName is the C keyword of a struct, union, enum or class type.
func kindName(tag dwarf.Tag) string {
	switch tag {
	case dwarf.TagStructType:
		return "struct"
	case dwarf.TagUnionType:
		return "union"
	case dwarf.TagEnumerationType:
		return "enum"
	case dwarf.TagClassType:
		return "class"
	}
	return ""
}

// layoutOf returns the layout a struct, union, or typedef of an
// anonymous struct or union defines, with its name and kind.
func (n *typeNamer) layoutOf(t *typeDIE) (string, string, layout, bool) {
	name, kind := t.name, ""
	if t.tag == dwarf.TagTypedef {
		u := n.lookup(t.typ)
		if !t.hasType || name == "" || u == nil || u.name != "" || u.decl || (u.tag != dwarf.TagStructType && u.tag != dwarf.TagUnionType) {
			return "", "", layout{}, false
		}
		t, kind = u, "typedef "
	}
	if name == "" {
		return "", "", layout{}, false
	}
	if t.tag == dwarf.TagStructType || t.tag == dwarf.TagUnionType {
		kind += kindName(t.tag)
	}
	l := layout{size: t.size, members: make([]member, 0, len(t.kids))}
	i := 0
	for _, k := range t.kids {
		if k.tag != dwarf.TagMember {
			continue
		}
		fname := k.name
		if fname == "" {
			fname = fmt.Sprintf("(anonymous #%d)", i)
		}
		l.members = append(l.members, member{name: fname, off: k.off, bitOffset: k.bits, typ: n.typeOf(k)})
		i++
	}
	return name, kind, l, true
}

// dwarfOf returns a reader of f's DWARF entries, the .debug_* sections
// with their relocations applied (section-relative, as in a relocatable
// object); nil without .debug_info.
func dwarfOf(f *elfobj.File) (*dieReader, error) {
	get := func(name string) ([]byte, error) {
		sec := f.Section(name)
		if sec == nil || sec.Type == elf.SHT_NOBITS {
			return nil, nil
		}
		if len(sec.Relocs) == 0 {
			return sec.Data, nil // read only, like every section here
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
	var secs [4][]byte
	for i, n := range []string{".debug_abbrev", ".debug_str", ".debug_line_str", ".debug_str_offsets"} {
		if secs[i], err = get(n); err != nil {
			return nil, err
		}
	}
	return newDIEReader(f.Name, info, secs[0], secs[1], secs[2], secs[3]), nil
}
