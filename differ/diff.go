package differ

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/livesplice/livesplice/elfobj"
	"golang.org/x/arch/x86/x86asm"
)

// Changeset is what changed between the pre and post builds of one object.
// A function is listed in at most one of Changed, Added and Refused:
// Changed and Added hold only what this cut can ship.
type Changeset struct {
	Changed []Function // in both, code or relocations differ
	Added   []Function // only in post (new functions the changed ones call)
	Refused []Refusal  // what this cut cannot ship, each with a reason
	// Renamed lists post symbols correlated with a pre symbol of another
	// name (renumbered gcc clones and statics); in its own copy of the
	// post object, Diff gave them the pre name, the running kernel's.
	Renamed []Renamed
	// AddedData lists data symbols only in post (new static variables,
	// new compiler statics such as __warned.N).
	AddedData []Data
	// NextBoot lists changed and new functions that only run at boot or
	// module load (__init) or at module unload (__exit): the running
	// kernel has already run them, or never will, so the update does not
	// carry them; they take effect with the next boot.
	NextBoot []Function
	// pre is the pre object Diff was given; post is Diff's own copy of
	// the post object, renamed (Renamed): Extract reads both.
	pre, post *elfobj.File
}

// Data names one data symbol of a changeset.
type Data struct {
	Name, Section string
	Size          int
}

// Function names one function of a changeset.
type Function struct {
	Name, Section     string
	PreSize, PostSize int
}

// Refusal is one change this cut cannot ship.
type Refusal struct {
	Kind                    RefusalKind
	Symbol, Section, Reason string
}

// RefusalKind says what kind of change a refusal is about, for callers
// that count or sort refusals; Reason says it to people.
type RefusalKind int

// The kinds of refusal.
const (
	// RefuseOther: none of the kinds below (an object the differ cannot
	// read as it expects).
	RefuseOther RefusalKind = iota
	// RefuseData: initialised data changed, or data added that no
	// symbol names: the running kernel's copy cannot be replaced.
	RefuseData
	// RefuseLayout: a struct or union layout changed.
	RefuseLayout
	// RefuseSignature: a function's prototype changed and callers that
	// are not replaced remain.
	RefuseSignature
	// RefuseSite: the jump cannot be written safely at the patch site.
	RefuseSite
	// RefuseSpecial: special-section entries the update cannot carry.
	RefuseSpecial
	// RefuseReference: a reference to the running kernel the update
	// module cannot resolve (unexported, anonymous, new static).
	RefuseReference
	// RefuseAmbiguous: several copies of one name.
	RefuseAmbiguous
	// RefuseCode: code changed outside any function symbol.
	RefuseCode
)

var refusalKindNames = [...]string{"other", "data", "layout", "signature", "patch site", "special section", "reference", "ambiguous", "loose code"}

func (k RefusalKind) String() string {
	if int(k) < len(refusalKindNames) {
		return refusalKindNames[k]
	}
	return fmt.Sprintf("refusal kind %d", int(k))
}

// differ holds the state of one Diff call.
type differ struct {
	pre, post *object
	corr      *correlation
	cs        Changeset
	// preTypes and postTypes wait for the types of the pre and post
	// objects, read while the code is compared.
	preTypes, postTypes func() (*typeInfo, error)
}

// Diff compares the pre and post builds of one object.
//
// Diff correlates the symbols of pre and post (see Renamed) and gives
// post symbols, in a copy of post, the names the running kernel has for
// them: Extract then names fix-ups and pre relocations by names that exist
// in the running kernel's kallsyms. pre and post are left unchanged.
func Diff(pre, post *elfobj.File) (*Changeset, error) {
	if pre == nil || post == nil {
		return nil, errors.New("differ: Diff needs both a pre and a post object")
	}
	// The DWARF types of both objects are read from the inputs, which
	// stay unchanged, while the code is compared: about half of a Diff's
	// work, and independent of the rest until compareTypes.
	preTypes, postTypes := readTypesAsync(pre), readTypesAsync(post)
	post = post.Clone()
	decoded := map[string][]insn{} // code decoded in any of the objects below
	object := func(f *elfobj.File) *object {
		o := newObject(f)
		o.decoded = decoded
		return o
	}
	d := &differ{pre: object(pre), cs: Changeset{pre: pre, post: post}, preTypes: preTypes, postTypes: postTypes}
	c := correlate(d.pre, object(post))
	d.cs.Renamed = c.rename()
	d.post = object(post) // indexes by the new names
	d.corr = c
	steps := []func() error{d.compareFunctions, d.compareLooseCode, d.compareData, d.compareTypes}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("differ: %s vs %s: %w", pre.Name, post.Name, err)
		}
	}
	d.checkShippable()
	sortChangeset(&d.cs)
	return &d.cs, nil
}

func (d *differ) refuse(kind RefusalKind, sym, sec, format string, args ...any) {
	d.cs.Refused = append(d.cs.Refused, Refusal{Kind: kind, Symbol: sym, Section: sec, Reason: fmt.Sprintf(format, args...)})
}

// compareFunctions fills Changed, Added and name-level refusals.
func (d *differ) compareFunctions() error {
	for _, name := range sortedNames(d.post.funcs) {
		if _, cold := coldParent(name); cold {
			if err := d.compareOrphanCold(name); err != nil {
				return err
			}
			continue // judged with its parent
		}
		postSyms, preSyms := d.post.funcs[name], d.pre.funcs[name]
		if len(preSyms) == 0 {
			fn := postSyms[0]
			d.cs.Added = append(d.cs.Added, Function{Name: name, Section: fn.Section.Name, PostSize: int(fn.Size)})
			if len(postSyms) > 1 {
				d.refuse(RefuseAmbiguous, name, fn.Section.Name, "new function %s is defined %d times in the object: cannot tell the copies apart", name, len(postSyms))
			}
			continue
		}
		same, err := d.sameCopies(name, preSyms, postSyms)
		if err != nil {
			return err
		}
		if same {
			continue
		}
		if len(preSyms) > 1 || len(postSyms) > 1 {
			d.refuse(RefuseAmbiguous, name, postSyms[0].Section.Name, "function %s is defined %d times in pre and %d in post: cannot tell the copies apart",
				name, len(preSyms), len(postSyms))
			continue
		}
		pre, post := preSyms[0], postSyms[0]
		d.cs.Changed = append(d.cs.Changed, Function{Name: name, Section: post.Section.Name,
			PreSize: int(pre.Size), PostSize: int(post.Size)})
	}
	return nil
}

// sameCopies compares the copies of one function name, pairwise, and
// their cold parts (cold.go).
func (d *differ) sameCopies(name string, pre, post []*elfobj.Symbol) (bool, error) {
	if len(pre) != len(post) {
		return false, nil
	}
	for i := range pre {
		same, err := d.sameFunc(pre[i], post[i])
		if err != nil || !same {
			return same, err
		}
	}
	return d.sameCold(name)
}

// sameFunc compares two functions: masked bytes, then relocations by
// offset, type and target.
func (d *differ) sameFunc(a, b *elfobj.Symbol) (bool, error) {
	ca, ra, err := d.pre.maskedCode(a)
	if err != nil {
		return false, err
	}
	cb, rb, err := d.post.maskedCode(b)
	if err != nil {
		return false, err
	}
	if !bytes.Equal(ca, cb) {
		return false, nil
	}
	ka := relocKeys(d.pre, a.Section, a.Value, ra)
	kb := relocKeys(d.post, b.Section, b.Value, rb)
	return slices.Equal(ka, kb), nil
}

// relocKeys describes relocations independently of layout.
func relocKeys(o *object, sec *elfobj.Section, base uint64, relocs []elfobj.Reloc) []string {
	keys := make([]string, len(relocs))
	for i, r := range relocs {
		keys[i] = relocKey(r.Offset-base, r.Type, o.resolve(sec, r).key(nil))
	}
	sort.Strings(keys)
	return keys
}

// relocKey is one relocation's key: its offset in the function or
// symbol, type and target key.
func relocKey(off uint64, typ elf.R_X86_64, target string) string {
	return "0x" + strconv.FormatUint(off, 16) + " " + typ.String() + " " + target
}

// compareLooseCode refuses changed code that is not inside an STT_FUNC
// symbol (assembly entry points, labels typed NOTYPE).
func (d *differ) compareLooseCode() error {
	for _, sec := range d.post.f.Sections {
		if sec == nil || !sec.Executable() || ignoredSection(sec.Name) || !d.hasLooseCode(sec) {
			continue
		}
		preSec := d.pre.f.Section(sec.Name)
		if preSec != nil && d.sameSection(preSec, sec) {
			continue
		}
		d.refuse(RefuseCode, d.looseName(sec), sec.Name, "code in %s changed outside any function symbol (STT_FUNC): cannot replace it as a function", sec.Name)
	}
	return nil
}

// hasLooseCode reports an executable section with bytes no STT_FUNC covers.
func (d *differ) hasLooseCode(sec *elfobj.Section) bool {
	covered := make([]bool, len(sec.Data))
	for _, syms := range d.post.funcs {
		for _, s := range syms {
			for i := s.Value; s.Section == sec && i < s.Value+s.Size && i < uint64(len(covered)); i++ {
				covered[i] = true
			}
		}
	}
	for i := 0; i < len(covered); {
		if covered[i] {
			i++
			continue
		}
		end := i
		for end < len(covered) && !covered[end] {
			end++
		}
		if !padding(sec.Data[i:end]) {
			return true
		}
		i = end
	}
	return false
}

// padding reports whether b is only what the assembler puts between
// functions to align them: NOPs of any length, int3 and zeros.
func padding(b []byte) bool {
	for len(b) > 0 {
		if b[0] == 0xcc || b[0] == 0 {
			b = b[1:]
			continue
		}
		in, err := x86asm.Decode(b, 64)
		if err != nil || in.Op != x86asm.NOP {
			return false
		}
		b = b[in.Len:]
	}
	return true
}

func (d *differ) looseName(sec *elfobj.Section) string {
	for _, s := range d.post.f.Symbols {
		if s != nil && s.Section == sec && s.Name != "" && !s.IsSection() && !isLocalLabel(s) {
			return s.Name
		}
	}
	return sec.Name
}

// sameSection compares whole sections like functions are compared.
func (d *differ) sameSection(a, b *elfobj.Section) bool {
	if a.Type != b.Type || a.Size != b.Size {
		return false
	}
	if a.Type == elf.SHT_NOBITS {
		return true
	}
	ca, cb := append([]byte(nil), a.Data...), append([]byte(nil), b.Data...)
	for _, r := range a.Relocs {
		zeroField(ca, r.Offset, r.Type)
	}
	for _, r := range b.Relocs {
		zeroField(cb, r.Offset, r.Type)
	}
	return bytes.Equal(ca, cb) && slices.Equal(relocKeys(d.pre, a, 0, a.Relocs), relocKeys(d.post, b, 0, b.Relocs))
}

// compareData refuses changed data and lists new data. Data with symbols
// is compared symbol by symbol, through the correlation (so a renumbered
// static local is compared with its pre self); data no symbol names is
// compared section by section, by name.
func (d *differ) compareData() error {
	for _, sec := range d.post.f.Sections {
		if sec == nil || !sec.Alloc() || sec.Executable() || isContent(sec) || ignoredSection(sec.Name) {
			continue
		}
		syms := d.post.dataSymbols(sec)
		if len(syms) == 0 {
			d.compareAnonData(sec)
			continue
		}
		for _, s := range syms {
			pre := d.corr.toPre[s]
			switch {
			case pre == nil:
				d.cs.AddedData = append(d.cs.AddedData, Data{Name: s.Name, Section: sec.Name, Size: int(s.Size)})
			case !d.corr.sameSym(pre, s):
				d.refuse(RefuseData, s.Name, sec.Name, "%s %s changed: not supported", dataKind(sec), sec.Name)
			}
		}
	}
	return nil
}

// dataSymbols lists the symbols defined in a data section.
func (o *object) dataSymbols(sec *elfobj.Section) []*elfobj.Symbol {
	var out []*elfobj.Symbol
	for _, s := range o.f.Symbols {
		if s != nil && s.Section == sec && s.Name != "" && !s.IsSection() && !isLocalLabel(s) && s.Type != elf.STT_FILE {
			out = append(out, s)
		}
	}
	return out
}

func (d *differ) compareAnonData(sec *elfobj.Section) {
	preSec := d.pre.f.Section(sec.Name)
	switch {
	case preSec == nil && sec.Size == 0:
	case preSec == nil:
		d.refuse(RefuseData, d.looseName(sec), sec.Name, "%s %s added and no symbol names it: not supported", dataKind(sec), sec.Name)
	case !d.sameSection(preSec, sec):
		d.refuse(RefuseData, d.looseName(sec), sec.Name, "%s %s changed (no symbol names it): not supported", dataKind(sec), sec.Name)
	}
}

func dataKind(sec *elfobj.Section) string {
	if sec.Type == elf.SHT_NOBITS {
		return "uninitialised data"
	}
	return "initialised data"
}

// checkShippable moves changed and added functions that cannot be
// shipped to Refused.
func (d *differ) checkShippable() {
	refused := map[string]bool{}
	for _, r := range d.cs.Refused {
		refused[r.Symbol] = true
	}
	d.cs.Changed = d.setNextBoot(d.cs.Changed)
	d.cs.Added = d.setNextBoot(d.cs.Added)
	extracted := d.extractedSet()
	keep := func(fns []Function, changed bool) []Function {
		var out []Function
		for _, fn := range fns {
			rs := d.functionRefusals(fn.Name, changed, extracted)
			d.cs.Refused = append(d.cs.Refused, rs...)
			if len(rs) == 0 && !refused[fn.Name] {
				out = append(out, fn)
			}
		}
		return out
	}
	d.cs.Changed = keep(d.cs.Changed, true)
	d.cs.Added = keep(d.cs.Added, false)
}

// setNextBoot moves the __init and __exit functions of fns to NextBoot
// and returns the others.
func (d *differ) setNextBoot(fns []Function) []Function {
	var out []Function
	for _, fn := range fns {
		if initSection(fn.Section) || exitSection(fn.Section) {
			d.cs.NextBoot = append(d.cs.NextBoot, fn)
			continue
		}
		out = append(out, fn)
	}
	return out
}

func (d *differ) extractedSet() map[string]bool {
	set := map[string]bool{}
	for _, fn := range d.cs.Changed {
		set[fn.Name] = true
	}
	for _, fn := range d.cs.Added {
		set[fn.Name] = true
	}
	return extractedWithCold(d.post, set)
}

// functionRefusals runs every check that decides whether one function
// can be shipped: site safety on pre (changed functions), then what the
// extraction of post needs.
func (d *differ) functionRefusals(name string, changed bool, extracted map[string]bool) []Refusal {
	post := single(d.post.funcs[name])
	if post == nil {
		return []Refusal{{Kind: RefuseAmbiguous, Symbol: name, Reason: fmt.Sprintf("function %s is not a single STT_FUNC symbol in post", name)}}
	}
	if rs := kindRefusals(post, changed); len(rs) > 0 {
		return rs
	}
	var rs []Refusal
	if changed {
		pre := single(d.pre.funcs[name])
		if pre == nil {
			return []Refusal{{Kind: RefuseAmbiguous, Symbol: name, Section: post.Section.Name, Reason: fmt.Sprintf("function %s is not a single STT_FUNC symbol in pre", name)}}
		}
		_, siteRs := siteCheck(d.pre, pre)
		rs = append(rs, siteRs...)
	}
	pol := &dataPolicy{added: addedData(d.post, d.cs.AddedData)}
	p, planRs := planFunction(d.pre, d.post, post, extracted, pol)
	rs = append(rs, planRs...)
	if p != nil {
		rs = append(rs, planCold(d.pre, d.post, p, extracted, pol)...)
	}
	return rs
}

// kindRefusals refuses functions by what they are: __init/__exit code.
func kindRefusals(fn *elfobj.Symbol, changed bool) []Refusal {
	name, sec := fn.Name, fn.Section.Name
	ref := func(reason string) []Refusal {
		return []Refusal{{Kind: RefuseOther, Symbol: name, Section: sec, Reason: reason}}
	}
	switch {
	case initSection(sec) && changed:
		return ref("__init function changed: it already ran")
	case initSection(sec):
		return ref("new __init function: it would never run")
	case exitSection(sec):
		return ref("__exit function changed: not supported (discarded from the built-in kernel)")
	}
	return nil
}

func single(syms []*elfobj.Symbol) *elfobj.Symbol {
	if len(syms) != 1 {
		return nil
	}
	return syms[0]
}

func sortedNames(m map[string][]*elfobj.Symbol) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func sortChangeset(cs *Changeset) {
	byName := func(a, b Function) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(cs.Changed, byName)
	slices.SortFunc(cs.Added, byName)
	slices.SortFunc(cs.NextBoot, byName)
	slices.SortFunc(cs.AddedData, func(a, b Data) int { return strings.Compare(a.Name, b.Name) })
	slices.SortStableFunc(cs.Refused, func(a, b Refusal) int { return strings.Compare(a.Symbol, b.Symbol) })
}
